"""Agent runs for the fault matrix, and the checks every run gets.

Every run goes through :meth:`Session.run`: ``lab.run_agent`` with the resource's parameters
and a ``sitecustomize`` on PYTHONPATH that installs a Python audit hook in the agent process,
logging any attempt to start a process (``subprocess.Popen``, ``os.system``, ``os.exec*``,
``os.posix_spawn``, ``os.fork``, ``pty.spawn``). The agents never start one, so any entry is a
failure: with it, "never a shell" holds whatever the shell would have been.

:meth:`Session.run_killed` SIGKILLs the agent's process group right after its n-th EC2 call:
call n+1 of the node is black-holed by the lab (it is logged the moment it arrives, and never
reaches moto), and as soon as the call log shows it, the agent is killed.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import AgentResult, Lab

from .world import Resource, make_resource, wait_clean

TESTS_DIR = Path(__file__).resolve().parent.parent
LIB_DIR = TESTS_DIR.parent / "lib"
AUDIT_ENV = "IPF_FAULTS_AUDIT_LOG"
MARKER_ENV = "IPF_FAULTS_RUN"

_SITECUSTOMIZE = f'''\
"""Installed by tests/faults: log every attempt of this process to start another one."""
import os
import sys

_LOG = os.environ.get("{AUDIT_ENV}")
_EVENTS = frozenset((
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "pty.spawn",
))


def _audit(event, args):
    if event in _EVENTS:
        try:
            fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (event + " " + repr(args)[:300] + "\\n").encode("utf-8", "replace"))
            finally:
                os.close(fd)
        except OSError:
            pass


if _LOG:
    sys.addaudithook(_audit)
'''

_audit_dir: Path | None = None
_audit_lock = threading.Lock()


def audit_dir() -> Path:
    """A directory holding the auditing sitecustomize.py (one per test process)."""
    global _audit_dir  # noqa: PLW0603 - written once, shared by every run of the process
    with _audit_lock:
        if _audit_dir is None:
            path = Path(tempfile.mkdtemp(prefix="ipf-faults-audit-"))
            (path / "sitecustomize.py").write_text(_SITECUSTOMIZE)
            _audit_dir = path
        return _audit_dir


@dataclass(frozen=True)
class Expect:
    """What a run must give: one of ``rcs``; when it fails (rc not 0/7), an exit reason matching
    ``reason``; when it succeeds despite a fault, a logged warning matching ``warn``."""

    rcs: frozenset[int]
    reason: str | None = None
    warn: str | None = None

    def describe(self) -> str:
        return "/".join(str(rc) for rc in sorted(self.rcs))


def expect(*rcs: int, reason: str | None = None, warn: str | None = None) -> Expect:
    return Expect(frozenset(rcs), reason, warn)


@dataclass
class Run:
    node: str
    action: str
    result: AgentResult
    timeout: float  # seconds (OCF_RESKEY_CRM_meta_timeout)
    spawned: list[str] = field(default_factory=list)
    killed_after: int | None = None  # run_killed: the number of calls that had completed

    @property
    def rc(self) -> int:
        return self.result.rc

    def brief(self) -> str:
        reason = self.result.exit_reason or ""
        return f"{self.node} {self.action} rc={self.rc} {self.result.duration:.1f}s {reason[:160]}"


@dataclass
class SubRow:
    """A row a scenario reports besides its own (fuzzing: one per parameter)."""

    name: str
    rc: str  # what the table shows in the exit code column
    problems: list[str]
    duration: float
    timeout: float


class CaseFailure(AssertionError):
    """A check of the scenario failed (the row is FAIL, with this message)."""


class Session:
    """One case's agent runs on one lab; collects the problems the checks find."""

    def __init__(self, lab: Lab, workdir: Path, python: str = sys.executable) -> None:
        self.lab = lab
        self.workdir = workdir
        self.python = python
        self.problems: list[str] = []
        self.runs: list[Run] = []
        self.resources: list[Resource] = []
        self.subrows: list[SubRow] = []  # rows of their own (fuzzing: one per parameter)
        workdir.mkdir(parents=True, exist_ok=True)

    def resource(self, agent: str, index: int = 0) -> Resource:
        """A new resource of ``agent`` in the lab; every node stops it when the case ends."""
        res = make_resource(self.lab, agent, self.workdir, index)
        self.resources.append(res)
        return res

    # -- running -------------------------------------------------------------------------------

    def _env(self, res: Resource, extra: Mapping[str, str] | None) -> tuple[dict[str, str], Path]:
        log = self.workdir / f"audit-{secrets.token_hex(6)}.log"
        venv = Path(self.python).absolute() == Path(sys.executable).absolute()
        pythonpath = f"{LIB_DIR}:{audit_dir()}" if venv else str(audit_dir())
        env = {**res.env(), "PYTHONPATH": pythonpath, AUDIT_ENV: str(log)}
        env.update(extra or {})
        return env, log

    def run(
        self,
        node: str,
        res: Resource,
        action: str,
        *,
        timeout_ms: int = 20000,
        interval_ms: int | None = None,
        params: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        agent: str | Path | None = None,
    ) -> Run:
        """Run one action the way Pacemaker does (monitor: recurring unless interval_ms=0).
        ``agent``: another executable of the resource's agent (e.g. from a copy of the tree)."""
        if action == "monitor" and interval_ms is None:
            interval_ms = 10000
        env, log = self._env(res, extra_env)
        result = self.lab.run_agent(
            node,
            agent or res.agent,
            action,
            dict(params if params is not None else res.params),
            timeout_ms=timeout_ms,
            interval_ms=interval_ms or None,
            python=self.python,
            extra_env=env,
        )
        run = Run(node, action, result, timeout_ms / 1000, spawned=_read_audit(log))
        self.runs.append(run)
        return run

    def run_killed(
        self,
        node: str,
        res: Resource,
        action: str,
        after_calls: int,
        *,
        last: bool = False,
        timeout_ms: int = 20000,
    ) -> Run:
        """Run ``action`` and SIGKILL it right after its ``after_calls``-th EC2 call completed.

        Call ``after_calls + 1`` is black-holed and the agent is killed the moment the lab logs
        it. With ``last`` there is no further call to hold: the agent is killed as soon as
        ``after_calls`` calls are logged (it may have finished by then).
        """
        lab = self.lab
        lab.reset_calls()
        if not last:
            lab.set_fault(
                "*",
                "blackhole",
                rate=1.0 / (after_calls + 1),
                count=after_calls + 1,
                delay=60,
                node=node,
            )
        marker = secrets.token_hex(8)
        env, log = self._env(res, {MARKER_ENV: marker})
        box: list[AgentResult] = []

        def go() -> None:
            box.append(
                lab.run_agent(
                    node,
                    res.agent,
                    action,
                    res.params,
                    timeout_ms=timeout_ms,
                    python=self.python,
                    extra_env=env,
                )
            )

        thread = threading.Thread(target=go, name=f"agent-{node}-{action}")
        thread.start()
        killed_after = None
        try:
            while thread.is_alive():
                calls = lab.calls(node)
                held = any(c.fault == "blackhole" for c in calls)
                done = [c for c in calls if c.fault != "blackhole"]
                if held or (last and len(done) >= after_calls):
                    pid = _find_process(marker)
                    if pid is not None:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(os.getpgid(pid), signal.SIGKILL)
                        killed_after = len(done)
                    break
                time.sleep(0.01)
        finally:
            thread.join(timeout_ms / 1000 + 10)
            lab.clear_faults()
        run = Run(node, action, box[0], timeout_ms / 1000, spawned=_read_audit(log))
        run.killed_after = killed_after
        self.runs.append(run)
        return run

    # -- checking ------------------------------------------------------------------------------

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def require(self, condition: bool, message: str) -> None:
        if not condition:
            self.fail(message)

    def check(self, run: Run, want: Expect, res: Resource | None = None, what: str = "") -> Run:
        """The checks of every run; problems are collected, not raised."""
        label = what or f"{run.node} {run.action}"
        for problem in run_problems(run, want):
            self.fail(f"{label}: {problem}")
        if res is not None and run.action == "stop" and run.rc == 0:
            left = wait_clean(self.lab, res, run.node)
            if left:
                self.fail(f"{label}: left after a successful stop: {', '.join(left)}")
        return run

    def must(self, run: Run, want: Expect, res: Resource | None = None, what: str = "") -> Run:
        """Like check, but a failing step ends the scenario (its later steps would mislead)."""
        before = len(self.problems)
        self.check(run, want, res, what)
        if len(self.problems) > before:
            raise CaseFailure("; ".join(self.problems[before:]))
        return run


def run_problems(run: Run, want: Expect) -> list[str]:
    """What is wrong with one agent run, judged against ``want``."""
    result = run.result
    problems: list[str] = []
    reason = result.exit_reason or ""
    if result.timed_out or result.duration >= run.timeout:
        problems.append(
            f"took {result.duration:.1f}s of its {run.timeout:.0f}s timeout"
            + (" (killed by the timeout)" if result.timed_out else "")
        )
    if "Traceback" in result.stderr:
        problems.append("a traceback on stderr")
    if run.spawned:
        problems.append(f"started a process: {run.spawned[0]}")
    if run.action in ("start", "stop") and result.rc == 7:
        problems.append(f"{run.action} returned 7 (not running), which only monitor may")
    if result.rc not in want.rcs:
        problems.append(
            f"rc {result.rc}, expected {want.describe()} ({reason[:200] or 'no reason'})"
        )
    if result.rc not in (0, 7):
        if not reason.strip():
            problems.append(f"rc {result.rc} without an exit reason")
        elif want.reason and not re.search(want.reason, reason):
            problems.append(f"exit reason does not match /{want.reason}/: {reason[:240]}")
    elif want.warn and not re.search(want.warn, result.stderr):
        problems.append(f"rc {result.rc} without a warning matching /{want.warn}/ in the log")
    return problems


def _read_audit(log: Path) -> list[str]:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    log.unlink()
    return lines


def _find_process(marker: str, timeout: float = 5.0) -> int | None:
    """The pid of the process whose environment holds MARKER_ENV=marker."""
    needle = f"{MARKER_ENV}={marker}".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                return int(entry)
        time.sleep(0.01)
    return None


def parallel(*jobs: Any) -> list[Any]:
    """Run the callables at the same moment (a barrier releases them together); their results."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def wrap(index: int) -> None:
        try:
            barrier.wait()
            results[index] = jobs[index]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
