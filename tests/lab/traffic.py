"""Traffic through the data plane: the probe client in the client namespace, services in plain node
namespaces, and what the client saw around a fault (the outage), as plain data.

The processes are lab/netprobe.py (standard library only). Every process started here runs in
its own process group, is bounded in time, and is killed by its PID (group) on stop/close.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .harness import Lab

NETPROBE = Path(__file__).resolve().parent / "netprobe.py"
SERVICE_PORT = 8080
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Sample:
    t: float  # time.time() when the request started
    ms: float  # its duration
    node: Optional[str]  # who answered (None: no answer)
    error: Optional[str]


def read_samples(path: Path) -> list[Sample]:
    samples = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line being written
        if "t" in row:
            samples.append(Sample(row["t"], row["ms"], row["node"], row["error"]))
    return samples


def service_argv(node: str, python: str = sys.executable, port: int = SERVICE_PORT) -> list[str]:
    """The command of the service of `node` (to run inside the node)."""
    return [python, "-I", str(NETPROBE), "serve", "--name", node, "--port", str(port)]


def _kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _wait_listening(
    namespace: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0
) -> None:
    """Wait until something listens on TCP `port` in `namespace` (the service has bound)."""
    deadline = time.monotonic() + timeout
    argv = ["ip", "netns", "exec", namespace, "ss", "-Hltn", f"sport = :{port}"]
    while True:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5.0, check=False)
        if out.stdout.strip():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"the service in {namespace} exited with {proc.returncode}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing listens on port {port} in {namespace} after {timeout}s")
        time.sleep(0.02)


class Probe:
    """The client: asks `target`:8080 every `interval` seconds from the client namespace."""

    def __init__(
        self,
        lab: Lab,
        target: str,
        out: Path,
        *,
        interval: float = 0.05,
        timeout: float = 0.1,
        max_seconds: float = 600.0,
        max_requests: int = 20000,
        python: str = sys.executable,
    ) -> None:
        self.lab = lab
        self.target = target
        self.out = out
        self.argv = [
            "ip",
            "netns",
            "exec",
            lab.netns("client"),
            python,
            "-I",
            str(NETPROBE),
            "probe",
            "--target",
            target,
            "--port",
            str(SERVICE_PORT),
            "--interval",
            str(interval),
            "--timeout",
            str(timeout),
            "--max-seconds",
            str(max_seconds),
            "--max-requests",
            str(max_requests),
            "--out",
            str(out),
        ]
        self.max_seconds = max_seconds
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Probe:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text("")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"PATH": CLEAN_PATH, "LC_ALL": "C.UTF-8"},
            start_new_session=True,
        )

    def stop(self) -> list[Sample]:
        """Stop the client (SIGTERM, then SIGKILL) and return everything it recorded."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _kill_group(proc, signal.SIGTERM)
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.wait(5.0)
        return self.samples()

    def samples(self) -> list[Sample]:
        return read_samples(self.out)

    def wait_for_answers(self, node: str, count: int = 3, timeout: float = 30.0) -> float:
        """Wait until the last `count` requests were all answered by `node`; return when the
        first of them started."""
        deadline = time.monotonic() + timeout
        while True:
            last = self.samples()[-count:]
            if len(last) == count and all(s.node == node for s in last):
                return last[0].t
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the probe client exited with {self.proc.returncode}")
            if time.monotonic() >= deadline:
                seen = {s.node or s.error for s in last}
                raise TimeoutError(f"no steady answers from {node} after {timeout}s (last: {seen})")
            time.sleep(0.05)


class Services:
    """The service in plain node namespaces (`ip netns exec`), for labs without a cluster."""

    def __init__(self, lab: Lab, nodes: Sequence[str], python: str = sys.executable) -> None:
        self.lab = lab
        self.nodes = list(nodes)
        self.python = python
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> Services:
        for node in self.nodes:
            self.procs[node] = subprocess.Popen(
                ["ip", "netns", "exec", self.lab.netns(node), *service_argv(node, self.python)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={"PATH": CLEAN_PATH, "LC_ALL": "C.UTF-8"},
                start_new_session=True,
            )
        try:
            for node, proc in self.procs.items():
                _wait_listening(self.lab.netns(node), SERVICE_PORT, proc)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            _kill_group(proc)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)
        self.procs.clear()


@dataclass(frozen=True)
class Outage:
    """What the client saw from a fault on, until the new node answered for good."""

    fault: float  # time.time() of the fault
    old: Optional[str]
    new: str
    first_new: Optional[float]  # start of the first request the new node answered after the fault
    steady: Optional[float]  # start of the final run of answers from the new node (to the end)
    longest_silence: Optional[float]  # longest time without any answer, up to `steady`
    failed: int  # requests without an answer between the fault and `steady`
    answered_old: int  # requests the old node answered after the fault
    relapses: int  # times the answers stopped again after the new node had answered
    stray: int  # answers from a third node, or from the old node once the new one answered

    @property
    def ended(self) -> bool:
        return self.steady is not None

    @property
    def observed(self) -> bool:
        """The client saw the service unavailable at least once."""
        return self.failed > 0

    @property
    def seconds(self) -> Optional[float]:
        """From the fault until the new node answers for good."""
        return None if self.steady is None else self.steady - self.fault

    @property
    def gap(self) -> Optional[float]:
        return self.longest_silence


def measure(samples: Sequence[Sample], fault: float, new: str, old: Optional[str]) -> Outage:
    """The outage the client saw: `samples` in time order, the fault at `fault`."""
    after = [s for s in samples if s.t >= fault]
    first_new = next((s for s in after if s.node == new), None)
    steady = None
    for sample in reversed(after):
        if sample.node != new:
            break
        steady = sample
    until = steady.t if steady is not None else float("inf")
    window = [s for s in after if s.t < until]
    answered = [s.t for s in samples if s.node is not None and s.t <= until]
    silences = [b - a for a, b in zip(answered, answered[1:]) if b >= fault]
    if steady is None and answered:
        silences.append((after[-1].t if after else fault) - answered[-1])
    relapses = 0
    if first_new is not None:
        previous: Optional[str] = new
        for s in window:
            if s.t > first_new.t and s.node is None and previous is not None:
                relapses += 1
            previous = s.node
    return Outage(
        fault=fault,
        old=old,
        new=new,
        first_new=first_new.t if first_new is not None else None,
        steady=until if steady is not None else None,
        longest_silence=max(silences) if silences else None,
        failed=sum(1 for s in window if s.node is None),
        answered_old=sum(1 for s in after if s.node is not None and s.node == old),
        relapses=relapses,
        stray=sum(
            1
            for s in after
            if s.node not in (None, old, new)
            or (s.node == old and first_new is not None and s.t > first_new.t)
        ),
    )
