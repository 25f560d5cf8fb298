"""The proxy for the AWS APIs: its URL with the credentials of ``proxy_credentials_file``, and
what a proxy's refusal means.

The credentials file holds one line ``user:password`` (taken as it is: no percent-encoding, the
user up to the first ``:``, the password the rest, both printable ASCII and not empty, as
botocore sends them; a final newline is ignored). It must be a
regular file owned by root and readable by no one else (mode 0600 or 0400): anything else is
refused with exit 2, a fault of this node's files (another node may have it right), and the
reason names the path, never the content.

A proxy answers a request it will not carry with a status: 407 (Proxy Authentication Required:
the user or password is wrong, or missing) or 403 (the proxy's rules forbid the destination).
Either is a denied permission (4) on the first answer, not network trouble to retry until the
deadline. With an https endpoint the status arrives in the answer to CONNECT, which http.client
reports only as the text of an OSError ("Tunnel connection failed: 407 ..."), the one place the
status exists; with an http endpoint it is the HTTP status of the response itself.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Optional
from urllib.parse import quote

from ipfailover.config.params import LRM_PLACEHOLDER, AwsSettings
from ipfailover.config.syntax import credentials_problem
from ocf_shim import ArgsError, PermError

# http.client's HTTPConnection._tunnel: "Tunnel connection failed: %d %s" (every supported Python)
_TUNNEL_STATUS = re.compile(r"Tunnel connection failed: ([0-9]{3})")
REFUSALS = (403, 407)
MAX_FILE = 4096


def proxy_url(settings: AwsSettings) -> Optional[str]:
    """The proxy URL botocore gets: the ``proxy`` parameter, with the user and password of
    ``proxy_credentials_file`` when that is set (percent-encoded: botocore decodes them)."""
    if not settings.proxy:
        return None
    if settings.proxy == LRM_PLACEHOLDER:
        raise ArgsError(
            "the CIB secret of parameter 'proxy' cannot be read on this node (pacemaker-execd "
            "passed 'lrm://'): copy it here with 'cibsecret sync' from a node that has it"
        )
    if not settings.proxy_credentials_file:
        return settings.proxy
    user, password = read_credentials(settings.proxy_credentials_file)
    scheme, _, rest = settings.proxy.partition("://")
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"


def read_credentials(path: str) -> tuple[str, str]:
    """``(user, password)`` from a root-only file; :class:`ArgsError` (2) naming the path when it
    is missing, unreadable, not a regular file, not root's, open to group or others, or not one
    ``user:password`` line."""
    what = f"the proxy credentials file {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ArgsError(f"{what} does not exist on this node") from None
    except OSError as exc:
        raise ArgsError(f"{what} cannot be read on this node: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ArgsError(f"{what} is not a regular file")
        if info.st_uid != 0:
            raise ArgsError(
                f"{what} is owned by uid {info.st_uid}, not root: chown root:root {path}"
            )
        if info.st_mode & 0o077:
            raise ArgsError(
                f"{what} has mode {stat.S_IMODE(info.st_mode):04o}: group and others may read "
                f"or change it; chmod 600 {path}"
            )
        content = os.read(fd, MAX_FILE + 1)
    except OSError as exc:
        raise ArgsError(f"{what} cannot be read on this node: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return _parse_credentials(content, what)


def _parse_credentials(content: bytes, what: str) -> tuple[str, str]:
    """One ``user:password`` line (nothing of it in any message)."""
    if len(content) > MAX_FILE:
        raise ArgsError(f"{what} is larger than {MAX_FILE} bytes: it holds one user:password line")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise ArgsError(f"{what} is not UTF-8 text") from None
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    user, colon, password = text.partition(":")
    if not colon or not user:
        raise ArgsError(f"{what} does not hold one line user:password")
    if not text.isprintable():
        raise ArgsError(
            f"{what} holds more than one line or a control character: it holds one line "
            "user:password"
        )
    problem = credentials_problem(user, password)
    if problem:
        raise ArgsError(f"{what}: {problem}")
    return user, password


def refusal(status: int, doing: str) -> PermError:
    """The error for a proxy's 407 or 403 answer while ``doing`` something."""
    if status == 407:
        return PermError(
            f"{doing}: the proxy refused the credentials (407 Proxy Authentication Required): "
            "check the user and password of the proxy parameter or of proxy_credentials_file"
        )
    return PermError(
        f"{doing}: the proxy does not allow the connection ({status}): allow the AWS API "
        "endpoint in the proxy's rules"
    )


def tunnel_status(exc: BaseException) -> Optional[int]:
    """The status a proxy answered to CONNECT with, when it refused (403 or 407), found in the
    exception or the exceptions it wraps (botocore's ``error``, urllib3's ``original_error``,
    ``args``, the cause and context)."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError):
            match = _TUNNEL_STATUS.search(str(item))
            if match and int(match.group(1)) in REFUSALS:
                return int(match.group(1))
        kwargs = getattr(item, "kwargs", None)
        todo.extend(kwargs.values() if isinstance(kwargs, dict) else ())
        todo.extend((getattr(item, "original_error", None), item.__cause__, item.__context__))
        todo.extend(item.args)
    return None
