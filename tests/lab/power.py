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

Only processes in the lab's own node namespaces are ever signalled, by PID.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass

from . import netns

LOG = logging.getLogger("lab.power")
KILL_ROUNDS = 50
KERNEL_RULES = frozenset({0, 32766, 32767})
KERNEL_TABLES = frozenset({"local", "main", "default", "255", "254", "253"})


@dataclass
class PowerState:
    state: str = "running"
    offs: int = 0  # power cuts so far
    boots: int = 0  # boots after a power cut so far
    changed: float = 0.0  # time.time() of the last transition

    def to_json(self) -> dict[str, object]:
        return asdict(self)


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
