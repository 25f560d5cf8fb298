"""The shim's log: debug as Pacemaker sets it, and no record lost silently, no write that blocks.

Issue 12, classes 7 and 9. Real sockets, FIFOs and pipes in a temporary directory; a call that
would block is interrupted by a SIGALRM after ``PROMPT`` seconds and fails the test (no sleeps).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ocf_shim

LIB = Path(__file__).resolve().parent.parent / "lib"
PROMPT = 2.0  # seconds a log call may take before it counts as blocked

AGENT_SOURCE = """\
import sys

from ocf_shim import OCF, ActionSpec, Agent, Parameter


def act(ctx):
    ctx.log.info("%s done", ctx.action)
    return OCF.SUCCESS


AGENT = Agent(
    "log-agent", "0.1", "A log test agent", "An agent for the log tests.",
    [Parameter("p", "P", "A parameter.", default="x")],
    [ActionSpec("start", 20), ActionSpec("stop", 20), ActionSpec("monitor", 20, interval=10),
     ActionSpec("meta-data", 5)],
    {"start": act, "stop": act, "monitor": act},
)
sys.exit(AGENT.main())
"""


class Blocked(Exception):
    """A log call took longer than PROMPT: it blocked. Not an OSError, which the log takes as a
    failed target."""


@contextlib.contextmanager
def prompt(seconds: float = PROMPT) -> Iterator[None]:
    """Fail with Blocked when the body has not finished after ``seconds`` (interrupts a blocked
    system call); restores pytest-timeout's handler and pending timer."""

    def fire(_signum: int, _frame: object) -> None:
        raise Blocked(f"blocked for {seconds}s")

    previous = signal.signal(signal.SIGALRM, fire)
    armed_at = time.monotonic()
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if old_delay > 0:
            left = old_delay - (time.monotonic() - armed_at)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), old_interval)


@pytest.fixture
def log() -> Iterator[ocf_shim.Log]:
    logger = ocf_shim.get_log("test-shim-log")
    yield logger
    logger.close()


@pytest.fixture
def syslog_at(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The address the log takes for /dev/log (nothing there yet)."""
    address = str(tmp_path / "devlog")
    monkeypatch.setattr("ocf_shim.log.SYSLOG_ADDRESS", address)
    return address


def records(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " tag[1]: " in line]


# -- class 7: debug as Pacemaker sets it ----------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "debug"),
    [
        ({}, False),
        # HA_debug as ocf-shellfuncs' ha_debug reads it: only "0" (and empty) is off.
        ({"HA_debug": "1"}, True),
        ({"HA_debug": "2"}, True),
        ({"HA_debug": "yes"}, True),
        ({"HA_debug": "true"}, True),
        ({"HA_debug": "no"}, True),
        ({"HA_debug": "off"}, True),
        ({"HA_debug": "0"}, False),
        ({"HA_debug": ""}, False),
        # HA_debug set wins over PCMK_debug.
        ({"HA_debug": "0", "PCMK_debug": "yes"}, False),
        ({"HA_debug": "1", "PCMK_debug": "no"}, True),
        # PCMK_debug when HA_debug is unset: a Pacemaker true value ...
        ({"PCMK_debug": "yes"}, True),
        ({"PCMK_debug": "TRUE"}, True),
        ({"PCMK_debug": "on"}, True),
        ({"PCMK_debug": "y"}, True),
        ({"PCMK_debug": "1"}, True),
        ({"HA_debug": "", "PCMK_debug": "1"}, True),
        ({"PCMK_debug": "no"}, False),
        ({"PCMK_debug": "0"}, False),
        ({"PCMK_debug": "false"}, False),
        ({"PCMK_debug": ""}, False),
        # ... or a list of daemons that names pacemaker-execd (the daemon that runs agents).
        ({"PCMK_debug": "pacemaker-execd"}, True),
        ({"PCMK_debug": "pacemaker-controld,pacemaker-execd"}, True),
        ({"PCMK_debug": "pacemakerd, pacemaker-execd"}, True),
        ({"PCMK_debug": "pacemaker-controld,pacemaker-based"}, False),
        ({"PCMK_debug": "pacemaker-execdx"}, False),
    ],
)
def test_debug_as_pacemaker_sets_it(
    log: ocf_shim.Log, tmp_path: Path, environ: dict[str, str], debug: bool
) -> None:
    logfile = tmp_path / "ha.log"
    log.configure("tag[1]", {**environ, "HA_LOGFILE": str(logfile)})
    log.debug("detail")
    log.info("summary")
    text = logfile.read_text()
    assert "INFO: summary" in text
    assert ("DEBUG: detail" in text) is debug


def test_pcmk_debug_reaches_an_agent_process(tmp_path: Path) -> None:
    logfile = tmp_path / "ha.log"
    proc = run_agent(
        tmp_path, "start", {"PCMK_debug": "pacemaker-execd", "HA_LOGFILE": str(logfile)}
    )
    assert proc.returncode == 0, proc.stderr
    assert "DEBUG: start starting" in logfile.read_text()


# -- class 9: syslog never blocks, and a record it cannot take goes elsewhere ---------------------


def fill(address: str) -> list[socket.socket]:
    """Fill the receive queue of the datagram socket bound at ``address``: the senders that did
    it (until a fresh socket's first datagram would block)."""
    senders: list[socket.socket] = []
    for _ in range(1000):
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender.setblocking(False)
        sender.connect(address)
        senders.append(sender)
        try:
            sender.send(b"x")
        except BlockingIOError:
            return senders
        with contextlib.suppress(BlockingIOError):
            while True:
                sender.send(b"x")
    raise AssertionError("could not fill the receive queue")


def test_syslog_with_a_full_queue_does_not_block(
    log: ocf_shim.Log, syslog_at: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(syslog_at)
        senders = fill(syslog_at)
        try:
            log.configure("tag[1]", {"HA_LOGFACILITY": "daemon"})
            with prompt():
                log.warning("queue full")
        finally:
            for sender in senders:
                sender.close()
    assert [line.split(" ", 2)[2] for line in records(capsys.readouterr().err)] == [
        "tag[1]: WARNING: queue full"
    ]


def test_syslog_record_larger_than_a_datagram_falls_back(
    log: ocf_shim.Log, syslog_at: str, capsys: pytest.CaptureFixture[str]
) -> None:
    big = "x" * (512 * 1024)  # more than any default socket send buffer: EMSGSIZE
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(syslog_at)
        server.setblocking(False)
        log.configure("tag[1]", {"HA_LOGFACILITY": "daemon"})
        with prompt():
            log.info("small")
            log.info("%s", big)
        assert server.recv(4096).endswith(b"tag[1]: INFO: small\0")
    lines = records(capsys.readouterr().err)
    assert len(lines) == 1
    assert lines[0].endswith(f"tag[1]: INFO: {big}")


def test_syslog_on_a_stream_socket(
    log: ocf_shim.Log, syslog_at: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(syslog_at)
        server.listen(1)
        server.settimeout(PROMPT)
        log.configure("tag[1]", {"HA_LOGFACILITY": "local3"})
        with prompt():
            log.info("one")
            log.error("two")
        conn, _ = server.accept()
        with conn:
            conn.settimeout(PROMPT)
            data = b""
            while data.count(b"\0") < 2:
                chunk = conn.recv(4096)
                assert chunk, data
                data += chunk
    # NUL-framed, as glibc's syslog() frames records on a stream socket.
    assert data == b"<158>tag[1]: INFO: one\0<155>tag[1]: ERROR: two\0"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("down", ["refused", "gone"])
@pytest.mark.parametrize("with_logfile", [False, True])
def test_syslog_down_falls_back(
    log: ocf_shim.Log,
    syslog_at: str,
    capsys: pytest.CaptureFixture[str],
    down: str,
    with_logfile: bool,
) -> None:
    logfile = Path(syslog_at).parent / "ha.log"
    environ = {"HA_LOGFACILITY": "daemon"}
    if with_logfile:
        environ["HA_LOGFILE"] = str(logfile)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(syslog_at)  # left behind when closed: connecting is refused
    log.configure("tag[1]", environ)
    if down == "gone":
        os.unlink(syslog_at)
    with prompt():
        log.info("still here")
    err = capsys.readouterr().err
    if with_logfile:  # HA_LOGFILE has it; stderr need not
        assert "tag[1]: INFO: still here" in logfile.read_text()
        assert records(err) == []
    else:
        assert [line.split(" ", 2)[2] for line in records(err)] == ["tag[1]: INFO: still here"]


# -- class 9: HA_LOGFILE that is not a regular file -----------------------------------------------


def test_logfile_fifo_without_reader(
    log: ocf_shim.Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    try:
        with prompt():
            log.configure("tag[1]", {"HA_LOGFILE": str(fifo)})
            log.info("nobody reads")
    finally:  # release a blocked open, if any
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    assert [line.split(" ", 2)[2] for line in records(capsys.readouterr().err)] == [
        "tag[1]: INFO: nobody reads"
    ]


def test_logfile_fifo_with_a_reader(
    log: ocf_shim.Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    filler = -1
    try:
        with prompt():
            log.configure("tag[1]", {"HA_LOGFILE": str(fifo)})
            log.info("read")
        assert os.read(reader, 4096).decode().endswith("tag[1]: INFO: read\n")
        filler = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(filler, b"f" * 4096)
        with prompt():
            log.info("pipe full")
    finally:
        log.close()
        if filler >= 0:
            os.close(filler)
        os.close(reader)
    assert [line.split(" ", 2)[2] for line in records(capsys.readouterr().err)] == [
        "tag[1]: INFO: pipe full"
    ]


def test_logfile_directory(
    log: ocf_shim.Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with prompt():
        log.configure("tag[1]", {"HA_LOGFILE": str(tmp_path)})
        log.info("not a file")
    assert [line.split(" ", 2)[2] for line in records(capsys.readouterr().err)] == [
        "tag[1]: INFO: not a file"
    ]


def test_logfile_character_device(log: ocf_shim.Log, capsys: pytest.CaptureFixture[str]) -> None:
    with prompt():
        log.configure("tag[1]", {"HA_LOGFILE": os.devnull})
        log.info("discarded, as asked")
    assert len(log.targets) == 1
    assert capsys.readouterr().err == ""


# -- agent processes ------------------------------------------------------------------------------


def run_agent(
    tmp_path: Path, action: str, environ: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "log-agent"
    script.write_text(AGENT_SOURCE)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(LIB), "OCF_ROOT": "/usr/lib/ocf", **environ}
    return subprocess.run(
        [sys.executable, str(script), action],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
    )


@pytest.mark.parametrize("action", ["start", "monitor"])
def test_agent_with_a_fifo_logfile_without_reader(tmp_path: Path, action: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    try:
        proc = run_agent(tmp_path, action, {"HA_LOGFILE": str(fifo), "HA_debug": "1"})
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    assert proc.returncode == 0, proc.stderr
    assert f"INFO: {action} done" in proc.stderr


def test_watchdog_is_armed_before_the_first_record(tmp_path: Path) -> None:
    """stderr (the only log target) is a full pipe: the first record blocks, and the watchdog
    still ends the action with 1 around its deadline instead of hanging past Pacemaker's timeout."""
    script = tmp_path / "log-agent"
    script.write_text(AGENT_SOURCE)
    read_end, write_end = os.pipe()
    # A second open file description of the same pipe: O_NONBLOCK on it leaves the agent's
    # stderr blocking.
    filler = os.open(f"/proc/self/fd/{write_end}", os.O_WRONLY | os.O_NONBLOCK)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(filler, b"f" * 4096)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(LIB),
        "OCF_ROOT": "/usr/lib/ocf",
        "HA_debug": "1",
        "OCF_RESKEY_CRM_meta_timeout": "2000",
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(script), "start"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=write_end,
    )
    try:
        rc = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for fd in (filler, write_end, read_end):
            os.close(fd)
    assert rc == 1
    assert time.monotonic() - started < 10
