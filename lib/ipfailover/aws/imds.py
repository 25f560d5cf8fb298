"""IMDSv2 client: the instance's identity, network interfaces and region.

Plain ``http.client``, so it is cheap to import and never goes through a proxy (the metadata
service is link-local; a proxy could only answer for another machine). The session token is
fetched lazily, cached for the life of the process, fetched again once when the service answers
401 (expired or rotated), and a 403 on the token request means the operator disabled IMDS.
Throttling (429) and server errors (5xx) are transient: retried a few times with short waits.
"""

from __future__ import annotations

import http.client
import os
import socket
import time
from collections.abc import Callable
from typing import Optional
from urllib.parse import urlsplit

from ocf_shim import ArgsError, Deadline, GenericError

DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_TTL_SECONDS = 300
CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 1.0
ATTEMPTS = 3
THROTTLED = 429  # the metadata service limits requests per instance: transient


class ImdsNotFound(GenericError):
    """The metadata service has no such path (404)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"the instance metadata service has no {path}")
        self.path = path


class Imds:
    def __init__(
        self,
        deadline: Deadline,
        endpoint: Optional[str] = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        url = endpoint or os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or DEFAULT_ENDPOINT
        parts = urlsplit(url)
        try:
            port = parts.port or 80
        except ValueError:  # a port out of range or not a number
            port = 0
        if parts.scheme != "http" or not parts.hostname or not port:
            raise ArgsError(f"instance metadata endpoint {url!r} is not an http:// URL")
        self._host = parts.hostname
        self._port = port
        self._deadline = deadline
        self._sleep = sleep
        self._token: Optional[str] = None
        self.requests = 0

    def get(self, path: str) -> str:
        """The text at ``/latest/<path>``; raises :class:`ImdsNotFound` on 404."""
        for refetched in (False, True):
            status, body = self._request(
                "GET", "/latest/" + path, {"X-aws-ec2-metadata-token": self._get_token()}
            )
            if status == 200:
                return body
            if status == 404:
                raise ImdsNotFound(path)
            if status == 401 and not refetched:
                self._token = None  # expired or rotated: one more try with a fresh token
                continue
            break
        raise GenericError(f"instance metadata service answered HTTP {status} for {path}")

    def get_optional(self, path: str) -> Optional[str]:
        try:
            return self.get(path)
        except ImdsNotFound:
            return None

    def _get_token(self) -> str:
        if self._token is None:
            status, body = self._request(
                "PUT",
                "/latest/api/token",
                {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)},
            )
            if status == 403:
                raise ArgsError(
                    "the instance metadata service is disabled on this instance (token request "
                    "forbidden): enable it with HttpEndpoint=enabled "
                    "(modify-instance-metadata-options)"
                )
            if status != 200 or not body or len(body) > 512 or not body.isprintable():
                raise GenericError(
                    f"instance metadata service gave no usable token (HTTP {status})"
                )
            self._token = body
        return self._token

    def _request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
        """One HTTP exchange, retried on connection trouble, 429 (IMDS throttling) and 5xx
        within a small bound."""
        last = ""
        for attempt in range(ATTEMPTS):
            self._deadline.check("asking the instance metadata service")
            timeout = min(READ_TIMEOUT, max(0.1, self._deadline.remaining()))
            conn = http.client.HTTPConnection(
                self._host, self._port, timeout=min(CONNECT_TIMEOUT, timeout)
            )
            try:
                conn.connect()
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                conn.request(method, path, headers=headers)
                response = conn.getresponse()
                raw = response.read(65536)
                self.requests += 1
                if response.status < 500 and response.status != THROTTLED:
                    try:
                        return response.status, raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raise GenericError(
                            f"instance metadata service returned undecodable data for {path}"
                        ) from None
                last = f"HTTP {response.status}"
            except (OSError, http.client.HTTPException) as exc:
                last = _describe(exc)
            finally:
                conn.close()
            if attempt + 1 < ATTEMPTS:
                self._deadline.sleep(
                    0.05 * (attempt + 1), "waiting for the instance metadata service", self._sleep
                )
        raise GenericError(
            f"instance metadata service at {self._host} did not answer {path} ({last}) "
            f"after {ATTEMPTS} attempts"
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}"
