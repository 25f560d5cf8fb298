"""What the lab hands back (nodes, subnets, ENIs, calls, agent results), its paths, and
the polling helper every lab and cluster test uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO = TESTS_DIR.parent
AGENTS_DIR = REPO / "agents"
LIB_DIR = REPO / "lib"
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
EXIT_REASON_PREFIX = "ocf-exit-reason:"


class LabError(RuntimeError):
    """The lab could not do what was asked (server answer, namespace or process trouble)."""


@dataclass(frozen=True)
class Subnet:
    name: str
    id: str
    cidr: str
    ipv6_cidr: str
    az: str


@dataclass(frozen=True)
class Node:
    name: str
    netns: str
    instance_id: str
    eni_id: str
    mac: str
    ip: str
    subnet: str
    subnet_id: str
    az: str
    access_key_id: str


@dataclass(frozen=True)
class Eni:
    id: str
    mac: str
    ip: str
    secondary_ips: tuple[str, ...]
    subnet: str
    subnet_id: str
    az: str


@dataclass(frozen=True)
class Client:
    """The data plane's client namespace (Lab(dataplane=True)): its subnet and address."""

    subnet_id: str
    cidr: str
    ip: str
    gateway: str
    route_table: str
    netns: str


@dataclass(frozen=True)
class PowerInfo:
    state: str  # the instance's state: running, stopped...
    offs: int  # power cuts the lab made in the node so far
    boots: int  # boots after a power cut so far
    changed: float  # time.time() of the last transition
    shutdowns: int = 0  # graceful shutdowns begun by an event action (lab.power) so far


@dataclass(frozen=True)
class Call:
    action: str
    node: str
    time: float
    status: int | None
    fault: str | None = None
    error_code: str | None = None
    access_key: str | None = None
    service: str = "ec2"


@dataclass(frozen=True)
class ThrottleCount:
    answered: int
    throttled: int


@dataclass(frozen=True)
class AgentResult:
    rc: int
    stdout: str
    stderr: str
    duration: float
    exit_reason: str | None
    timed_out: bool = False  # killed by the harness after timeout_ms/1000 + 5 s
    killed: bool = False  # killed by the harness on purpose (kill_after)
    cpu_seconds: float = 0.0  # user + system time of the process and its waited-for children
    max_rss_kb: int = 0  # peak resident set size
    argv: tuple[str, ...] = field(default=(), repr=False)


def exit_reason(stderr: str) -> str | None:
    """The text of the last `ocf-exit-reason:` line, as Pacemaker shows it."""
    reason = None
    for line in stderr.splitlines():
        if line.startswith(EXIT_REASON_PREFIX):
            reason = line[len(EXIT_REASON_PREFIX) :]
    return reason


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 5.0,
    interval: float = 0.02,
    what: str = "",
    error: type[Exception] = AssertionError,
) -> Any:
    """Poll predicate until it returns something truthy; return it, or raise ``error`` after
    timeout (tests/cluster passes ClusterError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise error(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)
