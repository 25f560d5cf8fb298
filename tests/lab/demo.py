"""The demo: each agent fails its address over between two simulated EC2 nodes.

``python -m lab.demo`` (``make demo``), as root, in two parts:

1. By hand (about 20 s): for every agent, the actions Pacemaker would run, one by one: a start
   on node a, a crash of a (nothing stops it) with node b taking over, the late stop on a, and
   a planned move back to a; after each step, who owns the address in AWS and in the nodes' OS;
   then a table of the actions' times and API calls.
2. In a real cluster (a minute or two): a two-node Pacemaker/Corosync cluster fenced by
   fence_aws, a VPC data plane that forwards the service IP where AWS says, a service on each
   node and a client asking it every 50 ms. For every agent, configured from crm-examples/: a
   planned move (standby), a crash of the active node (fenced), and a system-reboot that AWS
   schedules for the active node 30 s ahead, with aws-health (the move happens before)
   and without it (the baseline: EC2 shuts the node down at NotBefore); after each, the
   Pacemaker timeline and the checks of the final state; at the end, the outage table and the
   scheduled reboot's outage against its goal (the same agent's planned move + 0.5 s).

``--part by-hand|cluster`` runs one part; ``--scenarios move,crash,crash-in-start,reboot,
reboot-baseline`` chooses the cluster scenarios; agents can be named on the command line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .harness import AGENTS_DIR, AgentResult, Lab

Owner = Callable[[Lab], Optional[str]]


@dataclass
class Scenario:
    agent: str
    what: str
    params: dict[str, str]
    aws_owner: Owner  # node that AWS sends the traffic to
    address: str  # the address to look for on the nodes' links


def _node_of_eni(lab: Lab, eni_id: Optional[str]) -> Optional[str]:
    return next((n.name for n in lab.nodes.values() if n.eni_id == eni_id), None)


def _node_of_instance(lab: Lab, instance_id: Optional[str]) -> Optional[str]:
    return next((n.name for n in lab.nodes.values() if n.instance_id == instance_id), None)


def overlay(lab: Lab) -> Scenario:
    ip = "192.168.100.10"
    tables = lab.route_tables

    def owner(lab: Lab) -> Optional[str]:
        found = set()
        for table in lab.describe_route_tables():
            route = [r for r in table["Routes"] if r.get("DestinationCidrBlock") == f"{ip}/32"]
            found.add(_node_of_eni(lab, route[0].get("NetworkInterfaceId")) if route else None)
        return (
            found.pop()
            if len(found) == 1
            else "split: " + ",".join(map(str, sorted(found, key=str)))
        )

    return Scenario(
        "aws-overlayip",
        f"overlay IP {ip} routed by {len(tables)} route tables",
        {
            "ip": ip,
            "routing_table": ",".join(tables),
            "endpoint_url": lab.endpoint_url,
            "source_dest_check": "disable",
        },
        owner,
        ip,
    )


def secondary(lab: Lab) -> Scenario:
    ip = "10.0.1.100"

    def owner(lab: Lab) -> Optional[str]:
        enis = lab.ec2().describe_network_interfaces(
            Filters=[{"Name": "addresses.private-ip-address", "Values": [ip]}]
        )["NetworkInterfaces"]
        return _node_of_eni(lab, enis[0]["NetworkInterfaceId"]) if enis else None

    return Scenario(
        "aws-secip",
        f"secondary private IP {ip}",
        {"ip": ip, "endpoint_url": lab.endpoint_url},
        owner,
        ip,
    )


def whole_eni(lab: Lab) -> Scenario:
    eni = lab.create_eni(subnet="c")

    def owner(lab: Lab) -> Optional[str]:
        attachment = lab.eni(eni.id).get("Attachment") or {}
        return _node_of_instance(lab, attachment.get("InstanceId"))

    return Scenario(
        "aws-eni",
        f"ENI {eni.id} with {eni.ip}",
        {"eni_id": eni.id, "endpoint_url": lab.endpoint_url},
        owner,
        eni.ip,
    )


class Timeline:
    def __init__(self) -> None:
        self.began = time.monotonic()
        self.rows: list[tuple[str, str, str, int, float, int]] = []

    def run(self, lab: Lab, s: Scenario, node: str, action: str, note: str = "") -> AgentResult:
        lab.reset_calls()
        interval = 10000 if action == "monitor" else None
        result = lab.run_agent(node, s.agent, action, s.params, interval_ms=interval)
        calls = len(lab.calls(node))
        self.rows.append((s.agent, node, action, result.rc, result.duration, calls))
        at = time.monotonic() - self.began
        status = "ok" if result.rc == 0 else f"rc={result.rc}"
        reason = f"  ({result.exit_reason})" if result.exit_reason else ""
        print(
            f"  {at:7.2f}s  {node}: {action:<8} {status:<6} {result.duration:5.2f}s "
            f"{calls:2d} API calls  {note}{reason}",
            flush=True,
        )
        return result

    def state(self, lab: Lab, s: Scenario) -> None:
        print(
            f"             AWS sends {s.address} to: {s.aws_owner(lab) or 'nobody'}; "
            f"configured on: {', '.join(lab.os_owners(s.address)) or 'no node'}",
            flush=True,
        )


def play(lab: Lab, s: Scenario, timeline: Timeline) -> bool:
    print(f"\n== {s.agent}: {s.what}", flush=True)
    expected = [
        ("a", "start", 0, "start on a"),
        ("a", "monitor", 0, ""),
        ("b", "monitor", 7, "b is not running it"),
        ("b", "start", 0, "a has crashed: b takes over"),
        ("a", "monitor", 7, "a learns it lost the address"),
        ("a", "stop", 0, "a's late stop leaves b's address alone"),
        ("b", "monitor", 0, ""),
        ("b", "stop", 0, "planned move back to a"),
        ("a", "start", 0, ""),
        ("a", "monitor", 0, ""),
    ]
    ok = True
    for node, action, want, note in expected:
        result = timeline.run(lab, s, node, action, note)
        if result.rc != want:
            ok = False
            print(f"             expected rc {want}: {result.stderr.strip()[-400:]}", flush=True)
        if action in ("start", "stop"):
            timeline.state(lab, s)
    return ok


def summary(rows: list[tuple[str, str, str, int, float, int]]) -> None:
    print("\naction times (median over the demo's runs):")
    print(f"  {'agent':<15} {'action':<8} {'runs':>4} {'median':>8} {'max':>7} {'API calls':>10}")
    keys = sorted({(r[0], r[2]) for r in rows})
    for agent, action in keys:
        times = sorted(r[4] for r in rows if r[0] == agent and r[2] == action)
        calls = sorted(r[5] for r in rows if r[0] == agent and r[2] == action)
        median = times[len(times) // 2]
        print(
            f"  {agent:<15} {action:<8} {len(times):>4} {median:>7.2f}s {times[-1]:>6.2f}s "
            f"{calls[0]:>4}-{calls[-1]:<5}"
        )


BUILDERS: dict[str, Callable[[Lab], Scenario]] = {
    "aws-overlayip": overlay,
    "aws-secip": secondary,
    "aws-eni": whole_eni,
}


def by_hand(names: list[str], workdir: Path) -> list[str]:
    """Part 1; returns the agents that did not behave."""
    print("starting the lab: simulated EC2, two nodes with their own IMDS ...", flush=True)
    with Lab(workdir) as lab:
        nodes = ", ".join(f"{n.name}={n.instance_id} ({n.ip})" for n in lab.nodes.values())
        print(f"lab up in {lab.start_seconds:.1f}s: {nodes}", flush=True)
        timeline = Timeline()
        results: dict[str, Any] = {}
        for name in names:
            results[name] = play(lab, BUILDERS[name](lab), timeline)
        summary(timeline.rows)
    failed = [name for name, ok in results.items() if not ok]
    print("\nall agents behaved as expected" if not failed else f"\nFAILED: {', '.join(failed)}")
    return failed


CLUSTER_TOOLS = ("corosync", "pacemakerd", "crm", "cibadmin", "nsenter")
FENCE_AWS = Path("/usr/sbin/fence_aws")


def cluster_missing() -> Optional[str]:
    """Why the cluster part cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "the cluster part needs root (network, mount and PID namespaces)"
    missing = [tool for tool in CLUSTER_TOOLS if shutil.which(tool) is None]
    if not FENCE_AWS.exists():
        missing.append("fence_aws")
    if missing:
        return f"missing {', '.join(missing)}: run `make deps` (Debian packages) first"
    return None


def in_cluster(names: list[str], scenarios: list[str], workdir: Path) -> list[str]:
    """Part 2; returns the scenarios whose checks failed."""
    from cluster.scenarios import (
        FailoverLab,
        Result,
        format_checks,
        format_health_goal,
        format_table,
        format_timeline,
    )

    began = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {message}", flush=True)

    results: list[Result] = []
    failed: list[str] = []
    with FailoverLab(workdir, say=say) as world:
        for name in names:
            for scenario in scenarios:
                try:
                    result = world.run(name, scenario)
                except Exception as err:
                    say(f"   {name} {scenario}: {type(err).__name__}: {err}")
                    failed.append(f"{name} {scenario}")
                    continue
                results.append(result)
                print(format_timeline(result))
                print(format_checks(result), flush=True)
                if not result.ok:
                    failed.append(f"{name} {scenario}")
    print("\nclient-observed outages (service IP asked every 50 ms from the client subnet):")
    print(format_table(results))
    goal = format_health_goal(results)
    if goal:
        print("\n" + goal)
    print(
        "lab settings: corosync token 3 s (AWS's guides recommend 30 s, so detection takes "
        "longer on EC2);\nfence_aws with pcmk_delay_max=0 (the example's 45 s matters only in a "
        "fence race); simulated EC2:\nENI attach and detach 1 s each, secondary IP assignment "
        "0.3 s, everything else immediate."
    )
    return failed


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("agents", nargs="*", help="agents to show (default: all installed)")
    parser.add_argument("--part", choices=("all", "by-hand", "cluster"), default="all")
    parser.add_argument(
        "--scenarios",
        default="move,crash,reboot,reboot-baseline",
        help="cluster scenarios, comma-separated: move, crash, crash-in-start, reboot, "
        "reboot-baseline",
    )
    args = parser.parse_args(argv)
    names = args.agents or [n for n in BUILDERS if (AGENTS_DIR / n).exists()]
    scenarios = [s for s in args.scenarios.split(",") if s]
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ipfailover-demo-") as workdir:
        if args.part in ("all", "by-hand"):
            print("== part 1: the agents by hand, as Pacemaker would run them", flush=True)
            failed += by_hand(names, Path(workdir) / "by-hand")
        if args.part in ("all", "cluster"):
            print("\n== part 2: failover in a fenced Pacemaker cluster, with traffic", flush=True)
            why = cluster_missing()
            if why is not None:
                print(f"cannot run the cluster part: {why}")
                return 1
            failed += in_cluster(names, scenarios, Path(workdir) / "cluster")
    print("\ndemo done: everything as expected" if not failed else f"\nFAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
