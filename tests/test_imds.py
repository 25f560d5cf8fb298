"""The IMDSv2 client against a scripted metadata server on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ipfailover.aws import instance as node
from ipfailover.aws.imds import Imds, ImdsNotFound
from ocf_shim import OCF, Deadline, OCFError


class Script:
    """Queued answers per method; once a queue is empty, the default answer."""

    def __init__(self) -> None:
        self.put: list[tuple[int, bytes]] = []
        self.get: list[tuple[int, bytes]] = []
        self.data: dict[str, str] = {}
        self.log: list[tuple[str, str, str | None]] = []
        self.tokens = 0


@pytest.fixture
def imds() -> Iterator[tuple[Script, str]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            script.log.append(("PUT", self.path, None))
            if script.put:
                self._answer(*script.put.pop(0))
                return
            script.tokens += 1
            self._answer(200, f"token-{script.tokens}".encode())

        def do_GET(self) -> None:
            token = self.headers.get("X-aws-ec2-metadata-token")
            script.log.append(("GET", self.path, token))
            if script.get:
                self._answer(*script.get.pop(0))
                return
            if token != f"token-{script.tokens}":
                self._answer(401, b"")
                return
            value = script.data.get(self.path.removeprefix("/latest/"))
            self._answer(200, value.encode()) if value is not None else self._answer(404, b"")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield script, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def client(endpoint: str) -> tuple[Imds, list[float]]:
    sleeps: list[float] = []
    return Imds(Deadline(10), endpoint=endpoint, sleep=sleeps.append), sleeps


def test_token_is_fetched_once_and_reused(imds: tuple[Script, str]) -> None:
    script, endpoint = imds
    script.data["meta-data/instance-id"] = "i-0123456789abcdef0"
    script.data["meta-data/placement/region"] = "eu-central-1"
    c, _ = client(endpoint)
    assert node.instance_id(c) == "i-0123456789abcdef0"
    assert node.region(c) == "eu-central-1"
    assert [entry[0] for entry in script.log] == ["PUT", "GET", "GET"]


def test_401_refetches_the_token_once(imds: tuple[Script, str]) -> None:
    script, endpoint = imds
    script.data["meta-data/mac"] = "02:00:00:00:00:01"
    c, _ = client(endpoint)
    assert c.get("meta-data/mac") == "02:00:00:00:00:01"
    script.tokens += 1  # the server rotates its token: the cached one is now stale
    assert c.get("meta-data/mac") == "02:00:00:00:00:01"
    assert [entry[0] for entry in script.log] == ["PUT", "GET", "GET", "PUT", "GET"]


def test_403_on_token_means_imds_disabled(imds: tuple[Script, str]) -> None:
    script, endpoint = imds
    script.put.append((403, b"Forbidden"))
    c, _ = client(endpoint)
    with pytest.raises(OCFError) as info:
        c.get("meta-data/instance-id")
    assert info.value.rc == OCF.ERR_ARGS
    assert len(script.log) == 1


def test_5xx_is_retried_with_short_waits(imds: tuple[Script, str]) -> None:
    script, endpoint = imds
    script.data["meta-data/instance-id"] = "i-0123456789abcdef0"
    script.get += [(503, b""), (503, b"")]
    c, sleeps = client(endpoint)
    assert c.get("meta-data/instance-id") == "i-0123456789abcdef0"
    assert len(sleeps) == 2 and sum(sleeps) < 0.5


def test_endless_5xx_gives_up_after_bounded_attempts(imds: tuple[Script, str]) -> None:
    script, endpoint = imds
    script.get += [(500, b"")] * 10
    c, _ = client(endpoint)
    with pytest.raises(OCFError) as info:
        c.get("meta-data/instance-id")
    assert info.value.rc == OCF.ERR_GENERIC
    assert sum(1 for entry in script.log if entry[0] == "GET") == 3


def test_404_is_not_found(imds: tuple[Script, str]) -> None:
    _, endpoint = imds
    c, _ = client(endpoint)
    with pytest.raises(ImdsNotFound):
        c.get("meta-data/nothing")
    assert c.get_optional("meta-data/nothing") is None


def test_garbage_is_rejected(imds: tuple[Script, str]) -> None:
    script, endpoint = imds
    script.get.append((200, b"\xff\xfe<not an id>"))
    c, _ = client(endpoint)
    with pytest.raises(OCFError) as info:
        node.instance_id(c)
    assert info.value.rc == OCF.ERR_GENERIC
    script.get.append((200, b"not-an-instance-id"))
    with pytest.raises(OCFError):
        node.instance_id(c)


def test_connection_refused_is_bounded() -> None:
    c, sleeps = client("http://127.0.0.1:9")
    with pytest.raises(OCFError) as info:
        c.get("meta-data/instance-id")
    assert info.value.rc == OCF.ERR_GENERIC
    assert "refused" in info.value.reason
    assert len(sleeps) == 2


def test_region_falls_back_to_the_availability_zone(imds: tuple[Script, str]) -> None:
    script, endpoint = imds
    script.data["meta-data/placement/availability-zone"] = "us-gov-west-1b"
    c, _ = client(endpoint)
    assert node.region(c) == "us-gov-west-1"


def test_429_throttling_is_retried_like_5xx(imds: tuple[Script, str]) -> None:
    """IMDS throttles with 429 (per-instance request rate): transient, not an answer."""
    script, endpoint = imds
    script.data["meta-data/instance-id"] = "i-0123456789abcdef0"
    script.put.append((429, b""))
    script.get += [(429, b""), (429, b"")]
    c, sleeps = client(endpoint)
    assert c.get("meta-data/instance-id") == "i-0123456789abcdef0"
    assert [entry[0] for entry in script.log] == ["PUT", "PUT", "GET", "GET", "GET"]
    assert sum(sleeps) < 0.5


def test_endless_429_gives_up_naming_it(imds: tuple[Script, str]) -> None:
    script, endpoint = imds
    script.get += [(429, b"")] * 10
    c, _ = client(endpoint)
    with pytest.raises(OCFError) as info:
        c.get("meta-data/instance-id")
    assert info.value.rc == OCF.ERR_GENERIC
    assert "429" in info.value.reason
    assert sum(1 for entry in script.log if entry[0] == "GET") == 3
