"""Instance power in the lab: what a node's namespace goes through when EC2 stops or starts it.

The lab server watches the node instances' states in moto (after every StopInstances,
StartInstances, TerminateInstances call, and on every tick) and acts on each transition:

- running -> anything else (stopped, terminated; fence_aws's "off"): the power is cut. Every
  process whose network namespace is the node's is SIGKILLed (a cluster node's PID 1 with all
  its daemons and agents, services, commands run in the node), and every link but `lo` is set
  down. The moto state (attached ENIs, assigned addresses, routes) stays, as on EC2.
- not running -> running (fence_aws's "on"): the node boots. Its network is what a fresh
  instance has: eth0 with its primary address and the default route, every other link down
  without addresses, no policy rules or extra routing tables. Nothing is started in it (a
  cluster node does not start its cluster stack at boot; `Cluster.start_node` does).

What EC2 does at a scheduled event's NotBefore (``Lab.schedule_event_action``; the lab server's
ticker starts it when its time comes, in a thread of its own):

1. a graceful shutdown of the node's OS, as an ACPI power-button press makes systemd do: SIGTERM
   to the node's init (every process of the node's network namespace that is PID 1 of its own
   PID namespace: a cluster node's `nodeinit`, which stops pacemakerd, waits for it to stop the
   resources, then stops corosync); a node without such an init gets SIGTERM on every process;
2. the OS has halted once no process is left in the namespace; if that takes longer than the
   grace period, the hard stop comes anyway (a crash, for the cluster);
3. the hard stop, by kind: ``system-reboot`` and ``instance-reboot`` cut the power and boot the
   node at once (the instance stays `running` in EC2); ``instance-stop``,
   ``instance-retirement`` (EBS-backed: stopped), ``spot-stop`` and ``spot-hibernate`` stop the
   instance in EC2 and ``spot-terminate`` terminates it (the power watch above cuts the node);
4. with an `event_id`, that event leaves the node's ``events/maintenance/scheduled``.

EC2 documents no exact grace period: its user guide says it hard-reboots an instance that "does
not cleanly shut down within a few minutes" (older versions said four minutes, see "Reboot your
instance", https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-reboot.html), and a
stop can stay in `stopping` until forced (``StopInstances --force``, "Methods for stopping an
instance"). The lab's default, DEFAULT_GRACE, is those four minutes; tests choose shorter ones.
Spot interruptions give the same graceful shutdown at the notice's time.

Only processes in the lab's own node namespaces are ever signalled, by PID.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from . import netns

LOG = logging.getLogger("lab.power")
KILL_ROUNDS = 50
KERNEL_RULES = frozenset({0, 32766, 32767})
KERNEL_TABLES = frozenset({"local", "main", "default", "255", "254", "253"})
DEFAULT_GRACE = 240.0  # seconds from the ACPI shutdown to the hard stop (see the module doc)
HALT_POLL = 0.05
# event kind -> what the hard stop does to the instance
EVENT_KINDS = {
    "system-reboot": "reboot",
    "instance-reboot": "reboot",
    "instance-stop": "stop",
    "instance-retirement": "stop",
    "spot-stop": "stop",
    "spot-hibernate": "stop",
    "spot-terminate": "terminate",
}


@dataclass
class PowerState:
    state: str = "running"
    offs: int = 0  # power cuts so far
    boots: int = 0  # boots after a power cut so far
    changed: float = 0.0  # time.time() of the last transition
    shutdowns: int = 0  # graceful shutdowns begun by an event action so far

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class EventAction:
    """What EC2 does to a node at `at` (time.time()) for an event of `kind` (see the module doc).

    `phase`: scheduled, shutting-down, done (cancelled by teardown, failed on a lab error: the
    server's log says why); the times are time.time() of the steps, None until they happen;
    `graceful`: whether the OS halted within the grace period (None until the hard stop)."""

    node: str
    at: float
    kind: str
    grace: float = DEFAULT_GRACE
    event_id: Optional[str] = None
    phase: str = "scheduled"
    shutdown: Optional[float] = None  # SIGTERM sent
    halted: Optional[float] = None  # no process left (None: the grace period ran out)
    hard_stop: Optional[float] = None  # power cut / EC2 stop or terminate
    booted: Optional[float] = None  # reboots: the node booted again
    graceful: Optional[bool] = None
    signalled: list[int] = field(default_factory=list)  # PIDs sent SIGTERM

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; one of {', '.join(EVENT_KINDS)}")
        if not self.grace >= 0:
            raise ValueError(f"grace must be a number of seconds >= 0, not {self.grace!r}")

    @property
    def effect(self) -> str:
        return EVENT_KINDS[self.kind]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventAction:
        return cls(**data)


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(netns.NETNS_DIR / name).st_ino
    except OSError:
        return None


def processes_in_netns(name: str) -> list[int]:
    """Host PIDs of the processes whose network namespace is the named one."""
    inode = netns_inode(name)
    if inode is None:
        return []
    wanted = f"net:[{inode}]"
    own = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == own:
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry}/ns/net") == wanted:
                found.append(int(entry))
    return found


def kill_all(name: str) -> int:
    """SIGKILL every process of the namespace until none is left (children forked meanwhile
    included); return how many were signalled."""
    signalled: set[int] = set()
    for _ in range(KILL_ROUNDS):
        pids = processes_in_netns(name)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            signalled.add(pid)
        time.sleep(0.01)
    return len(signalled)


def init_processes(name: str) -> list[int]:
    """Host PIDs of the namespace's init processes: PID 1 of their own PID namespace."""
    found = []
    for pid in processes_in_netns(name):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            # NSpid: the PID in each PID namespace, from the host's to the innermost
            nspid = [line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")]
            if nspid and len(nspid[0]) > 1 and nspid[0][-1] == "1":
                found.append(pid)
    return found


def shutdown(name: str, grace: float, action: EventAction | None = None) -> bool:
    """The graceful part of an event action: SIGTERM the node's init (or, without one, every
    process), wait up to `grace` seconds for every process of the namespace to be gone; return
    whether they were (the OS halted)."""
    pids = init_processes(name) or processes_in_netns(name)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if action is not None:
        action.signalled = pids
    LOG.info("shutdown %s: SIGTERM to %s", name, pids)
    deadline = time.monotonic() + grace
    while processes_in_netns(name):
        if time.monotonic() >= deadline:
            LOG.info("shutdown %s: not halted after %.1fs: hard stop", name, grace)
            return False
        time.sleep(HALT_POLL)
    return True


def _links(name: str) -> list[dict[str, object]]:
    out = netns.ip("-json", "link", "show", netns=name)
    links: list[dict[str, object]] = json.loads(out) if out.strip() else []
    return links


def power_off(name: str) -> int:
    """Cut the power of the node whose namespace is `name`: kill its processes, links down."""
    killed = kill_all(name)
    links = [str(link["ifname"]) for link in _links(name)]
    commands = [f"link set {ifname} down" for ifname in links if ifname != "lo"]
    with contextlib.suppress(netns.IpError):
        netns.ip("-force", "-batch", "-", netns=name, stdin="\n".join(commands))
    LOG.info("power off %s: %d processes killed", name, killed)
    return killed


def boot(name: str, address: str, prefixlen: int, gateway: str) -> None:
    """Give the namespace the network of a freshly booted instance (see the module doc)."""
    commands = []
    for link in _links(name):
        ifname = link["ifname"]
        if ifname == "lo":
            continue
        commands += [f"link set {ifname} down", f"addr flush dev {ifname}"]
    for family in ("-4", "-6"):
        family_commands = []
        out = netns.ip(family, "-json", "rule", "show", netns=name)
        for rule in json.loads(out) if out.strip() else []:
            if int(rule.get("priority", 0)) not in KERNEL_RULES:
                family_commands.append(f"rule del priority {rule['priority']}")
        out = netns.ip(family, "-json", "route", "show", "table", "all", netns=name)
        tables = {str(r.get("table", "main")) for r in (json.loads(out) if out.strip() else [])}
        family_commands += [f"route flush table {t}" for t in sorted(tables - KERNEL_TABLES)]
        if family_commands:
            with contextlib.suppress(netns.IpError):
                batch = "\n".join(family_commands)
                netns.ip(family, "-force", "-batch", "-", netns=name, stdin=batch)
    commands += [
        f"addr add {address}/{prefixlen} dev eth0",
        "link set eth0 up",
        f"route replace default via {gateway} dev eth0",
    ]
    netns.ip("-force", "-batch", "-", netns=name, stdin="\n".join(commands))
    LOG.info("boot %s", name)
