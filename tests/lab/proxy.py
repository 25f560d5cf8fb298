"""An authenticating HTTP proxy in the lab's VPC namespace: the corporate proxy of a restricted
network, between the nodes and the AWS APIs (standard library only).

It listens on port 3128 of the VPC namespace, so a node reaches it at its subnet's gateway
(``http://10.0.1.1:3128`` from subnet a). Every request must carry ``Proxy-Authorization: Basic``
with one of the proxy's users; otherwise the answer is ``407 Proxy Authentication Required``
with ``Proxy-Authenticate: Basic realm="lab"``, as Squid answers. It carries:

- ``CONNECT host:443`` (a tunnel, for https endpoints such as the regional
  ``ec2.<region>.amazonaws.com``), and
- requests in absolute form (``POST http://127.0.0.1:<port>/ HTTP/1.1``, for the lab's http
  endpoint), one request per connection (``Connection: close`` both ways).

Destinations are the lab's AWS endpoints only: the regional names of EC2 and STS on 443, and
127.0.0.1 on the lab's API port or 443; anything else gets 403, as a proxy's rules answer. The
proxy connects to them *inside the namespace of the node that asked* (found by the client's
address), where the lab server listens on those addresses, so the lab's call log, faults and
IAM still see the right node.

The proxy runs in the process that starts it (the test), in threads, until ``close()``;
``records`` says what it did, one :class:`ProxyRecord` per request, without credentials.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import select
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from . import netns
from .listeners import open_socket

PROXY_PORT = 3128
HEAD_MAX = 65536
IDLE_SECONDS = 30.0
CONNECT_SECONDS = 5.0


@dataclass(frozen=True)
class ProxyRecord:
    """One request to the proxy: ``kind`` "connect" or "forward"; ``status`` what the proxy
    answered (200 a tunnel or a forwarded request, 407 no or wrong credentials, 403 not an
    allowed destination or an unknown client, 400 malformed, 502 upstream unreachable);
    ``user`` the authenticated user (None when not authenticated)."""

    node: str
    kind: str
    target: str
    status: int
    user: str | None
    time: float


class Proxy:
    """See the module's docstring. ``nodes``: client address -> (node name, its namespace)."""

    def __init__(
        self,
        listen_netns: str,
        nodes: Mapping[str, tuple[str, str]],
        users: Mapping[str, str],
        *,
        api_port: int,
        region: str,
        port: int = PROXY_PORT,
    ) -> None:
        self.nodes = dict(nodes)
        self.users = dict(users)
        self.api_port = api_port
        self.hostnames = {f"{service}.{region}.amazonaws.com" for service in ("ec2", "sts")}
        self.port = port
        self.records: list[ProxyRecord] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._open: set[socket.socket] = set()
        self._sock = open_socket("0.0.0.0", port, listen_netns)  # all gateways of the VPC
        self._thread = threading.Thread(target=self._accept, daemon=True, name="lab-proxy")
        self._thread.start()

    # ---- what tests use ------------------------------------------------------------------

    def tunnels(self, node: str | None = None) -> int:
        """CONNECT tunnels the proxy opened (for ``node``, or all)."""
        return self.count("connect", 200, node)

    def forwarded(self, node: str | None = None) -> int:
        """Requests in absolute form the proxy carried."""
        return self.count("forward", 200, node)

    def denied(self, node: str | None = None) -> int:
        """Requests answered 407 (no or wrong credentials)."""
        return sum(self.count(kind, 407, node) for kind in ("connect", "forward"))

    def count(self, kind: str, status: int, node: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.records
                if r.kind == kind and r.status == status and node in (None, r.node)
            )

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(5)
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- serving -------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return
            self._track(conn)
            threading.Thread(
                target=self._serve, args=(conn, peer[0]), daemon=True, name="lab-proxy-conn"
            ).start()

    def _track(self, sock: socket.socket, add: bool = True) -> None:
        with self._lock:
            if add:
                self._open.add(sock)
            else:
                self._open.discard(sock)

    def _record(self, node: str, kind: str, target: str, status: int, user: str | None) -> None:
        with self._lock:
            self.records.append(ProxyRecord(node, kind, target, status, user, time.time()))

    def _serve(self, conn: socket.socket, peer: str) -> None:
        upstream: socket.socket | None = None
        try:
            conn.settimeout(CONNECT_SECONDS)
            head, rest = _read_head(conn)
            if head is None:
                return
            upstream = self._handle(conn, peer, head, rest)
        except OSError:
            pass
        finally:
            for sock in (conn, upstream):
                if sock is not None:
                    self._track(sock, add=False)
                    with contextlib.suppress(OSError):
                        sock.close()

    def _handle(
        self, conn: socket.socket, peer: str, head: bytes, rest: bytes
    ) -> socket.socket | None:
        lines = head.decode("latin-1").split("\r\n")
        request = lines[0].split(" ")
        node, node_netns = self.nodes.get(peer, (peer, ""))
        if len(request) != 3 or not request[2].startswith("HTTP/1."):
            _answer(conn, 400, "Bad Request")
            self._record(node, "?", lines[0][:100], 400, None)
            return None
        method, target, _ = request
        kind = "connect" if method == "CONNECT" else "forward"
        headers = [line.split(":", 1) for line in lines[1:] if ":" in line]
        user = self._authenticated(headers)
        if user is None:
            _answer(
                conn,
                407,
                "Proxy Authentication Required",
                ['Proxy-Authenticate: Basic realm="lab"'],
            )
            self._record(node, kind, target, 407, None)
            return None
        destination = self._destination(kind, target)
        if destination is None or not node_netns:
            _answer(conn, 403, "Forbidden")
            self._record(node, kind, target, 403, user)
            return None
        try:
            with netns.entered(node_netns):
                upstream = socket.create_connection(destination, timeout=CONNECT_SECONDS)
        except OSError:
            _answer(conn, 502, "Bad Gateway")
            self._record(node, kind, target, 502, user)
            return None
        self._track(upstream)
        self._record(node, kind, target, 200, user)
        if kind == "connect":
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            _relay(conn, upstream, self._stop)
        else:
            upstream.sendall(_origin_form(lines, target) + rest)
            _relay(conn, upstream, self._stop, close_response=True)
        return upstream

    def _authenticated(self, headers: list[list[str]]) -> str | None:
        for name, value in headers:
            if name.strip().lower() != "proxy-authorization":
                continue
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() != "basic":
                return None
            try:
                decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, _, password = decoded.partition(":")
            return user if user in self.users and self.users[user] == password else None
        return None

    def _destination(self, kind: str, target: str) -> tuple[str, int] | None:
        """Where the lab answers for ``target``, inside the node's namespace; None: forbidden."""
        if kind == "connect":
            host, _, port_text = target.rpartition(":")
        else:
            parts = urlsplit(target)
            if parts.scheme != "http":
                return None
            host, port_text = parts.hostname or "", str(parts.port or 80)
        if not port_text.isdigit():
            return None
        port = int(port_text)
        if host in self.hostnames and port == 443:
            return ("127.0.0.1", 443)
        if host == "127.0.0.1" and port in (self.api_port, 443):
            return ("127.0.0.1", port)
        return None


def proxy_url(host: str, user: str | None = None, password: str | None = None) -> str:
    """``http://user:password@host:3128``, user and password percent-encoded."""
    if user is None:
        return f"http://{host}:{PROXY_PORT}"
    secret = "" if password is None else ":" + quote(password, safe="")
    return f"http://{quote(user, safe='')}{secret}@{host}:{PROXY_PORT}"


def _read_head(conn: socket.socket) -> tuple[bytes | None, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > HEAD_MAX:
            return None, b""
        chunk = conn.recv(4096)
        if not chunk:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _answer(conn: socket.socket, status: int, reason: str, headers: Sequence[str] = ()) -> None:
    lines = [f"HTTP/1.1 {status} {reason}", *headers, "Content-Length: 0", "Connection: close"]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def _origin_form(lines: list[str], target: str) -> bytes:
    """The request for the server: its path instead of the absolute URL, no proxy headers,
    ``Connection: close``."""
    parts = urlsplit(target)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    method, _, version = lines[0].split(" ")
    kept = [
        line
        for line in lines[1:]
        if line
        and line.split(":", 1)[0].strip().lower()
        not in ("proxy-authorization", "proxy-connection", "connection", "keep-alive")
    ]
    head = [f"{method} {path} {version}", *kept, "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")


def _relay(
    client: socket.socket,
    upstream: socket.socket,
    stop: threading.Event,
    close_response: bool = False,
) -> None:
    """Copy bytes both ways until a side closes (or nothing moves for IDLE_SECONDS).

    ``close_response``: the upstream answer's head gets ``Connection: close`` (one request per
    connection), so the client does not keep the connection for another request.
    """
    client.settimeout(None)
    upstream.settimeout(None)
    pending_head = b"" if close_response else None
    while not stop.is_set():
        readable, _, _ = select.select([client, upstream], [], [], IDLE_SECONDS)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            if sock is client:
                upstream.sendall(data)
                continue
            if pending_head is not None:
                pending_head += data
                if b"\r\n\r\n" not in pending_head:
                    continue
                data, pending_head = _closing(pending_head), None
            client.sendall(data)


def _closing(response: bytes) -> bytes:
    """A response with ``Connection: close`` in its head (any Connection header replaced)."""
    head, _, body = response.partition(b"\r\n\r\n")
    lines = [
        line
        for line in head.split(b"\r\n")
        if line.split(b":", 1)[0].strip().lower() not in (b"connection", b"keep-alive")
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body
