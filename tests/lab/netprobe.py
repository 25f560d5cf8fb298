"""The data plane's service and client: a tiny TCP service that answers with the node's name, and
a client that asks it every 50 ms and records who answered.

Standalone (standard library only, no package imports): run as a script with any python3,
inside a node or the client namespace.

    netprobe.py serve --name a [--port 8080] [--max-seconds 7200]
    netprobe.py probe --target 10.0.1.50 [--port 8080] [--interval 0.05] [--timeout 0.2]
                      [--max-seconds 600] [--max-requests 20000] --out FILE

The service listens on 0.0.0.0: it answers for an address only when the kernel delivers the
packet locally, that is when the node has the address configured *and* the VPC (the lab's data
plane) forwards it there. An answer naming a node therefore proves both halves of a failover.

The client writes one JSON line per request: {"t": start (time.time()), "ms": duration,
"node": the answer or null, "error": null or what went wrong}, and a last line {"end": reason}.
It stops on SIGTERM/SIGINT, after --max-seconds or after --max-requests, whichever comes first.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import signal
import socket
import sys
import time
from typing import Any, Optional

DEFAULT_PORT = 8080
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """SIGTERM when the process that started us exits (Linux); best effort."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def serve(name: str, port: int, max_seconds: float) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    answer = (name + "\n").encode()
    deadline = time.monotonic() + max_seconds
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))  # every address the node has, on purpose
        sock.listen(128)
        sock.settimeout(1.0)
        while time.monotonic() < deadline:
            try:
                conn, _ = sock.accept()
            except socket.timeout:
                continue
            with conn:
                try:
                    conn.settimeout(1.0)
                    conn.sendall(answer)
                except OSError:
                    pass
    return 0


def ask(target: str, port: int, timeout: float) -> tuple[Optional[str], Optional[str]]:
    """One request: (the node that answered, None) or (None, what went wrong)."""
    try:
        with socket.create_connection((target, port), timeout=timeout) as conn:
            data = b""
            while not data.endswith(b"\n") and len(data) < 256:
                chunk = conn.recv(256)
                if not chunk:
                    break
                data += chunk
    except socket.timeout:
        return None, "timeout"
    except ConnectionRefusedError:
        return None, "refused"
    except OSError as err:
        return None, type(err).__name__ + (f" {err.errno}" if err.errno else "")
    text = data.decode(errors="replace").strip()
    return (text, None) if text else (None, "empty answer")


def probe(
    target: str,
    port: int,
    *,
    interval: float,
    timeout: float,
    max_seconds: float,
    max_requests: int,
    out: Any,
) -> int:
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append("signal"))
    signal.signal(signal.SIGINT, lambda *_: stopping.append("signal"))
    began = time.monotonic()
    reason = "max-requests"
    for _ in range(max_requests):
        if stopping:
            reason = "stopped"
            break
        if time.monotonic() - began >= max_seconds:
            reason = "max-seconds"
            break
        start_wall, start = time.time(), time.monotonic()
        node, error = ask(target, port, timeout)
        duration = time.monotonic() - start
        record = {"t": start_wall, "ms": round(duration * 1000, 2), "node": node, "error": error}
        out.write(json.dumps(record) + "\n")
        out.flush()
        pause = interval - duration
        if pause > 0:
            time.sleep(pause)
    out.write(json.dumps({"end": reason}) + "\n")
    out.flush()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--name", required=True)
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument("--max-seconds", type=float, default=7200.0)
    p = sub.add_parser("probe")
    p.add_argument("--target", required=True)
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--timeout", type=float, default=0.2)
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("--max-requests", type=int, default=20000)
    p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    die_with_parent()
    if args.command == "serve":
        return serve(args.name, args.port, args.max_seconds)
    with open(args.out, "a", encoding="utf-8") as out:
        return probe(
            args.target,
            args.port,
            interval=args.interval,
            timeout=args.timeout,
            max_seconds=args.max_seconds,
            max_requests=args.max_requests,
            out=out,
        )


if __name__ == "__main__":
    sys.exit(main())
