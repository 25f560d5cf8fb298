"""The records agents keep in HA_RSCTMP (aws-eni's ENI facts, aws-secip's "start added it"):
written without following symlinks, read only from a small regular file, and any content at all
reads as "no record" with a warning: never an exception, never a hang. Through the public
functions of ipfailover.record and aws-eni's record functions."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from ipfailover.eni import record as agent
from ipfailover.eni.os_plan import EniFacts
from ipfailover.host import record
from ocf_shim import GenericError, get_log

ENI = "eni-0123456789abcdef0"
ME = "i-0123456789abcdef0"
GOOD = {
    "eni_id": ENI,
    "instance_id": ME,
    "mac": "02:00:00:00:03:01",
    "ipv4s": ["10.0.3.100"],
    "ipv6s": [],
    "subnet_id": "subnet-0123456789abcdef0",
    "subnet_cidr": "10.0.3.0/24",
    "ipv6_cidrs": [],
}


def with_field(key: str, value: Any) -> bytes:
    data = dict(GOOD)
    data[key] = value
    return json.dumps(data).encode()


DAMAGE: dict[str, bytes] = {
    "empty": b"",
    "not json": b"{not json",
    "not utf-8": b'{"eni_id": "\xff\xfe"}',
    "nested deeply": b"[" * 50000 + b"]" * 50000,
    "nested deeply in an object": b'{"eni_id": ' + b"[" * 30000 + b"]" * 30000 + b"}",
    "huge integer": b'{"eni_id": 1' + b"0" * 100000 + b"}",
    "huge float": b'{"eni_id": 1e999999}',
    "NaN": json.dumps(dict(GOOD, eni_id=float("nan"))).encode(),
    "Infinity": b'{"eni_id": Infinity}',
    "a list": b"[1, 2, 3]",
    "a string": b'"eni"',
    "null": b"null",
    "eni_id a list": with_field("eni_id", [ENI]),
    "eni_id an object": with_field("eni_id", {"id": ENI}),
    "eni_id a number": with_field("eni_id", 12),
    "mac a bool": with_field("mac", True),
    "ipv4s a string": with_field("ipv4s", "10.0.3.100"),
    "ipv4s of numbers": with_field("ipv4s", [167969636]),
    "ipv4s nested": with_field("ipv4s", [["10.0.3.100"]]),
    "an address that is none": with_field("ipv4s", ["10.0.3.300"]),
    "too large": json.dumps(dict(GOOD, padding="x" * 200000)).encode(),
}


@pytest.fixture
def warnings(tmp_path: Path) -> Iterator[Callable[[], list[str]]]:
    """The WARNING records of the agents' logger, as written to HA_LOGFILE."""
    logfile = tmp_path / "ha.log"
    log = get_log("ipfailover").configure("test", {"HA_LOGFILE": str(logfile)})
    try:
        yield lambda: [line for line in logfile.read_text().splitlines() if "WARNING" in line]
    finally:
        log.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return Path(agent.record_path({"HA_RSCTMP": str(tmp_path / "rsc")}, ENI, ME))


def in_time(function: Callable[[], Any], seconds: float = 10.0) -> Any:
    """``function()`` in a thread; fails (instead of hanging the suite) if it blocks."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            result.append(function())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked"
    assert not errors, errors
    return result[0]


def test_round_trip(path: Path) -> None:
    facts = EniFacts.from_json(GOOD)
    agent.save_record(str(path), facts, ME)
    assert agent.load_record(str(path)) == facts
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_any_content_is_ignored_with_a_warning(
    path: Path, damage: str, warnings: Callable[[], list[str]]
) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(DAMAGE[damage])
    assert in_time(lambda: agent.load_record(str(path))) is None
    assert len(warnings()) == 1


def test_a_record_of_another_eni_is_ignored(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(with_field("eni_id", "eni-0fedcba9876543210"))
    assert agent.load_record(str(path), ENI) is None
    assert agent.any_record({"HA_RSCTMP": str(path.parent)}, ENI) is None


@pytest.mark.parametrize("damage", ["nested deeply", "huge integer", "NaN", "not utf-8"])
def test_read_never_raises(path: Path, damage: str) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(DAMAGE[damage])
    assert in_time(lambda: record.read(str(path))) is None


def test_a_fifo_is_not_read(path: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes: never."""
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    assert in_time(lambda: agent.load_record(str(path))) is None
    assert in_time(lambda: agent.any_record({"HA_RSCTMP": str(path.parent)}, ENI)) is None


def test_a_directory_is_not_read_and_not_written_over(path: Path) -> None:
    path.mkdir(parents=True)
    assert in_time(lambda: agent.load_record(str(path))) is None
    in_time(lambda: agent.save_record(str(path), EniFacts.from_json(GOOD), ME))
    assert path.is_dir()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_a_symlink_is_not_followed_when_reading(path: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(GOOD))
    path.parent.mkdir(parents=True)
    path.symlink_to(elsewhere)
    assert agent.load_record(str(path)) is None


def test_writing_follows_no_symlink(path: Path, tmp_path: Path) -> None:
    """Symlinks planted at the record and at any name a temporary file could get (the old
    writer used ``<record>.<pid>.tmp``) are replaced or left, never written through."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    path.parent.mkdir(parents=True)
    path.symlink_to(victim)
    planted = Path(f"{path}.{os.getpid()}.tmp")
    planted.symlink_to(victim)
    facts = EniFacts.from_json(GOOD)
    agent.save_record(str(path), facts, ME)
    assert victim.read_text() == "precious"
    assert path.is_file()
    assert not path.is_symlink()
    assert agent.load_record(str(path)) == facts


def test_write_failure_is_a_warning(tmp_path: Path, warnings: Callable[[], list[str]]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    target = str(blocker / "rsc" / "record.json")  # its directory cannot exist
    assert record.write(target, {"a": 1}) is False
    assert len(warnings()) == 1


def test_any_record_refuses_records_that_disagree(tmp_path: Path) -> None:
    """When this instance's id is unknown, a record of another instance is used only when all
    records agree about the ENI; otherwise "cannot tell" (1), never a guess."""
    env = {"HA_RSCTMP": str(tmp_path)}
    facts = EniFacts.from_json(GOOD)
    agent.save_record(agent.record_path(env, ENI, ME), facts, ME)
    other = "i-0fedcba9876543210"
    agent.save_record(agent.record_path(env, ENI, other), facts, other)
    assert agent.any_record(env, ENI) == facts
    changed = EniFacts.from_json(dict(GOOD, ipv4s=["10.0.3.101"]))
    agent.save_record(agent.record_path(env, ENI, other), changed, other)
    with pytest.raises(GenericError):
        agent.any_record(env, ENI)
