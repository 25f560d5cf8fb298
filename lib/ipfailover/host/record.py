"""What an agent recorded on this node about what it configured: small JSON files in HA_RSCTMP.

aws-eni records the ENI's MAC and addresses (so stop and monitor work without EC2); aws-secip
records that its start added the address (so stop knows the address is its own to remove, not
the node's own address). The directory is the resource agents' runtime directory (tmpfs, gone
after a reboot, as the OS configuration is), writable by root only, but a record is still treated
as untrusted input: it is written without following symlinks (a temporary file created
exclusively in the directory, then renamed over the record) and read only when it is a small
regular file. Whatever is found (a symlink, a FIFO, a directory, a huge file, bytes that are not
UTF-8, JSON nested thousands deep, numbers with thousands of digits, NaN, a list instead of an
object) reads as "no record", with a warning: never an exception, never a hang.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat

from ocf_shim import get_log

# No tempfile (writes only) or typing on the read path: monitors read records (issue 16).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Optional

log = get_log("ipfailover")

STATE_DIR_DEFAULT = "/run/resource-agents"  # what ocf-shellfuncs sets HA_RSCTMP to
MAX_SIZE = 64 * 1024  # a record is a few hundred bytes
MAX_NUMBER_DIGITS = 32  # no field of a record is a number of more digits


class DamagedRecord(ValueError):
    """The content of a record is not what an agent writes."""


def state_dir(environ: Mapping[str, str]) -> str:
    return environ.get("HA_RSCTMP") or STATE_DIR_DEFAULT


def path_in(environ: Mapping[str, str], name: str) -> str:
    """The path of the record ``name`` (a plain file name) in this node's state directory."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a record name: {name!r}")
    return os.path.join(state_dir(environ), name)


def write(path: str, data: Mapping[str, Any]) -> bool:
    """Write ``data`` as the record at ``path``, atomically; False (with a warning) if it failed.

    The temporary file is created with O_EXCL in the record's directory (mkstemp), so no symlink
    planted there is followed; ``os.replace`` renames it over whatever ``path`` is (a symlink
    there is replaced, not followed).
    """
    directory = os.path.dirname(path) or "."
    temporary: Optional[str] = None
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        import tempfile

        fd, temporary = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory
        )
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(dict(data), handle, allow_nan=False)
        os.replace(temporary, path)
        temporary = None
        return True
    except (OSError, ValueError, TypeError) as exc:
        log.warning("could not write the record %s: %s", path, exc)
        return False
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def _reject_constant(name: str) -> Any:
    raise DamagedRecord(f"{name} is not a number an agent writes")


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS:
        raise DamagedRecord(f"a number of {len(text)} digits")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS:
        raise DamagedRecord(f"a number of {len(text)} characters")
    return float(text)


def _read_bytes(path: str) -> Optional[bytes]:
    """The bytes of the regular file at ``path``; None when there is none (FileNotFoundError)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)  # a FIFO opens at once (O_NONBLOCK); a symlink fails (ELOOP)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DamagedRecord("not a regular file")
        if info.st_size > MAX_SIZE:
            raise DamagedRecord(f"{info.st_size} bytes, more than a record ever holds")
        chunks = []
        size = 0
        while size <= MAX_SIZE:
            chunk = os.read(fd, MAX_SIZE + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_SIZE:
            raise DamagedRecord("larger than a record ever is")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read(path: str) -> Optional[dict[str, Any]]:
    """The JSON object recorded at ``path``; None when there is none or it is unusable (warning).

    Callers still check every field they use (``DamagedRecord`` from their own checks should be
    reported with :func:`ignored`).
    """
    try:
        raw = _read_bytes(path)
        text = raw.decode("utf-8") if raw is not None else ""
        data = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_bounded_int,
            parse_float=_bounded_float,
        )
    except FileNotFoundError:
        return None
    except RecursionError:
        ignored(path, "nested too deeply")
        return None
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError included
        ignored(path, str(exc) or type(exc).__name__)
        return None
    if not isinstance(data, dict):
        ignored(path, f"a JSON {type(data).__name__}, not an object")
        return None
    return data


def ignored(path: str, why: str) -> None:
    log.warning("ignoring the record %s: %s", path, why[:200])


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove the record %s: %s", path, exc)


def names(environ: Mapping[str, str], prefix: str) -> list[str]:
    """The paths of the records whose names start with ``prefix`` and end in ``.json``."""
    directory = state_dir(environ)
    try:
        found = os.listdir(directory)
    except OSError:
        return []
    return [
        os.path.join(directory, name)
        for name in sorted(found)
        if name.startswith(prefix) and name.endswith(".json")
    ]


def text(data: Mapping[str, Any], key: str) -> str:
    """A string field; DamagedRecord when missing or of another type."""
    value = data.get(key)
    if not isinstance(value, str):
        raise DamagedRecord(f"{key!r} is not a string")
    return value


def texts(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """A list-of-strings field (missing: empty); DamagedRecord when of another type."""
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DamagedRecord(f"{key!r} is not a list of strings")
    return tuple(value)


def integer(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DamagedRecord(f"{key!r} is not an integer")
    return value
