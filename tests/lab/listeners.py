"""The lab server's transport: werkzeug servers whose connections a fault can reset, and one
listener per address (the host's API port, each node's EC2, IMDS and HTTPS addresses)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from . import netns

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class DropConnection(ConnectionError):
    """Raised by an app to end the connection without an answer (werkzeug treats it as dropped)."""


class Handler(WSGIRequestHandler):
    timeout = 120  # bound for clients that connect and never send a request

    def make_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().make_environ()
        environ["lab.handler"] = self
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LabHTTPServer(ThreadedWSGIServer):
    """A threaded werkzeug server on a socket we created, able to reset connections."""

    def __init__(
        self,
        sock: socket.socket,
        app: WSGIApp,
        refuses: Callable[[], bool],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(
            host, port, app, handler=Handler, fd=sock.fileno(), ssl_context=ssl_context
        )
        sock.close()  # werkzeug keeps its own duplicate of the descriptor
        self.refuses = refuses
        self._reset: set[socket.socket] = set()
        self._reset_lock = threading.Lock()

    def mark_reset(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._reset_lock:
            self._reset.add(conn)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self.refuses():
            self.mark_reset(request)
            return False
        return True

    def shutdown_request(self, request: Any) -> None:
        with self._reset_lock:
            reset = request in self._reset
            self._reset.discard(request)
        if reset:
            self.close_request(request)  # SO_LINGER 0: the close sends RST
        else:
            super().shutdown_request(request)


@dataclass
class Listener:
    node: str
    kind: str
    server: LabHTTPServer
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def open_socket(host: str, port: int, ns: str | None) -> socket.socket:
    """A listening TCP socket on host:port, created inside ns when given."""
    ctx = netns.entered(ns) if ns else contextlib.nullcontext()
    with ctx:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
    return sock


def serve(
    node: str,
    kind: str,
    sock: socket.socket,
    app: WSGIApp,
    refuses: Callable[[], bool],
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> Listener:
    server = LabHTTPServer(sock, app, refuses, ssl_context)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        daemon=True,
        name=f"{kind}-{node}",
    )
    thread.start()
    return Listener(node, kind, server, thread)


def never() -> bool:
    return False
