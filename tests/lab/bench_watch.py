"""The cost of watching (issue 16, part 4): the CPU of many resources' monitors over time.

``python -m lab.bench_watch`` (``make bench-watch``) starts, on node a of a lab, 20
aws-overlayip resources (3 route tables each) and 10 aws-secip resources configured as
crm-examples/ say (``monitor_api=deep``; a monitor every 10 s, and a deep monitor with
OCF_CHECK_LEVEL=10 every 120 s), then runs their monitors as Pacemaker's schedule would: each
operation at its own interval from a staggered first run, as real processes in the node (at
most ``--parallel`` at once, Pacemaker's node-action-limit on two cores), for ``--duration``
seconds (600 by default; a few seconds for a smoke run). It is not the lab cluster: the
monitors are started by this schedule, not by pacemaker-execd.

It prints, per kind of monitor (shallow: OS side only; deep: with the AWS check), the runs, the
median and mean CPU per run and the EC2 requests; the total CPU of the agents' processes
divided by the wall time (average cores); and the CPU of a bare Python start in the same node,
with each monitor's ratio to it. ``--routing-role`` measures the aws-overlayip resources with a
``routing_table_role`` (a shared VPC): the role, its trust policy and both identity policies are
declared in the lab's STS and IAM (:func:`routing_role`), and each deep monitor of those then
assumes the role (STS AssumeRole) and reads the route tables with its credentials.
``--param k=v`` adds a parameter to every aws-overlayip resource, ``--monitor-api true``
measures the old configuration (every monitor asks EC2).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .harness import Lab

DEEP_ENV = {"OCF_RESKEY_OCF_CHECK_LEVEL": "10"}  # how Pacemaker passes the op's attribute
AGENT_PYTHON = "/usr/bin/python3"  # the agents' shebang: what Pacemaker runs
ROUTING_ROLE_NAME = "ipfailover-routing"
ROUTE_TABLE_ACTIONS = ("ec2:DescribeRouteTables", "ec2:CreateRoute", "ec2:ReplaceRoute")


@dataclass
class Kind:
    """The measured runs of one kind of monitor."""

    cpu: list[float] = field(default_factory=list)
    failed: int = 0


@dataclass
class WatchResult:
    duration: float
    bare_cpu: float
    kinds: dict[str, Kind]
    ec2_calls: dict[str, int]
    resources: int
    interval: float
    deep_interval: float
    monitor_api: str
    python: str = ""
    bare_runs: int = 0
    sts_calls: dict[str, int] = field(default_factory=dict)
    routing_role: str = ""

    @property
    def total_cpu(self) -> float:
        return sum(sum(k.cpu) for k in self.kinds.values())

    @property
    def cores(self) -> float:
        return self.total_cpu / self.duration if self.duration > 0 else 0.0


def _resources(
    lab: Lab, overlay: int, secip: int, monitor_api: str, extra: dict[str, str]
) -> list[tuple[str, str, dict[str, str]]]:
    """(name, agent, params) of the resources: overlay IPs 192.168.100.x, secondary IPs
    10.0.1.100+ (node a's subnet)."""
    found = []
    for n in range(overlay):
        params = {
            "ip": f"192.168.100.{10 + n}",
            "routing_table": ",".join(lab.route_tables),
            "interface": "eth0",
            "endpoint_url": lab.endpoint_url,
            "monitor_api": monitor_api,
            **extra,
        }
        found.append((f"overlay{n}", "aws-overlayip", params))
    for n in range(secip):
        params = {"ip": f"10.0.1.{100 + n}", "endpoint_url": lab.endpoint_url}
        found.append((f"secip{n}", "aws-secip", {**params, "monitor_api": monitor_api}))
    return found


def routing_role(lab: Lab) -> dict[str, str]:
    """Declare a routing role in the lab's STS and IAM (in the nodes' account, the policies
    kept short: what costs CPU is the same as in a shared VPC, one AssumeRole and the route
    table calls with the session's credentials). Its trust policy names the nodes' instance
    role and its identity policy allows the route table calls (enforced on its sessions); the
    nodes' own policy, enforced from now on, allows sts:AssumeRole on it besides their EC2
    calls. Returns the aws-overlayip parameters that use it."""
    arn = f"arn:aws:iam::{lab.account_id}:role/{ROUTING_ROLE_NAME}"
    routes = {
        "Version": "2012-10-17",
        "Statement": {"Effect": "Allow", "Action": list(ROUTE_TABLE_ACTIONS), "Resource": "*"},
    }
    lab.set_role(arn, lab.nodes_trust(), routes)
    lab.enforce_policy(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
                {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": arn},
            ],
        }
    )
    return {"routing_table_role": arn, "sts_endpoint_url": lab.endpoint_url}


def watch(
    lab: Lab,
    *,
    duration: float,
    overlay: int = 20,
    secip: int = 10,
    interval: float = 10.0,
    deep_interval: float = 120.0,
    monitor_api: str = "deep",
    parallel: int = 4,
    extra: Optional[dict[str, str]] = None,
    python: str = sys.executable,
    log: Any = print,
) -> WatchResult:
    """Start the resources on node a, run their monitors on schedule, return the figures."""
    resources = _resources(lab, overlay, secip, monitor_api, dict(extra or {}))
    for name, agent, params in resources:
        result = lab.run_agent("a", agent, "start", params, timeout_ms=60000, python=python)
        if result.rc != 0:
            raise RuntimeError(f"start of {name} ({agent}) failed: {result.exit_reason}")
    log(f"started {len(resources)} resources on node a")

    # The schedule, as Pacemaker's for recurring operations: each monitor of each resource runs
    # again one interval after its previous run ended (never two at once), the first runs
    # staggered over the interval; at most ``parallel`` processes at once (node-action-limit).
    kinds = {"shallow": Kind(), "deep": Kind()}
    bare: list[float] = []  # a bare Python start every interval, under the same load
    lock = threading.Lock()
    slots = threading.Semaphore(parallel)
    stop = threading.Event()
    count = len(resources)

    def bare_python() -> None:
        due = 0.0
        while due < duration and not stop.wait(max(0.0, began + due - time.monotonic())):
            with slots:
                cpu = lab.run_process("a", [python, "-c", "pass"]).cpu_seconds
            with lock:
                bare.append(cpu)
            due += interval

    def operation(kind: str, index: int) -> None:
        _, agent, params = resources[index]
        every = interval if kind == "shallow" else deep_interval
        due = every * (index + 0.5) / count
        while due < duration and not stop.wait(max(0.0, began + due - time.monotonic())):
            with slots:
                result = lab.run_agent(
                    "a",
                    agent,
                    "monitor",
                    params,
                    interval_ms=int(every * 1000),
                    timeout_ms=20000 if kind == "shallow" else 30000,
                    extra_env=DEEP_ENV if kind == "deep" else None,
                    python=python,
                )
            with lock:
                kinds[kind].cpu.append(result.cpu_seconds)
                if result.rc != 0:
                    kinds[kind].failed += 1
            due = time.monotonic() - began + every

    lab.reset_calls()
    began = time.monotonic()
    threads = [
        threading.Thread(target=operation, args=(kind, i), daemon=True)
        for i in range(count)
        for kind in ("shallow", "deep")
    ]
    threads.append(threading.Thread(target=bare_python, daemon=True))
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    finally:
        stop.set()
    elapsed = time.monotonic() - began
    by_action = _count(lab.calls(node="a"))
    sts = _count(lab.calls(node="a", service="sts"))
    return WatchResult(
        duration=elapsed,
        bare_cpu=statistics.median(bare),
        bare_runs=len(bare),
        kinds=kinds,
        ec2_calls=by_action,
        resources=count,
        interval=interval,
        deep_interval=deep_interval,
        monitor_api=monitor_api,
        python=python,
        sts_calls=sts,
        routing_role=(extra or {}).get("routing_table_role", ""),
    )


def _count(calls: list[Any]) -> dict[str, int]:
    by_action: dict[str, int] = {}
    for call in calls:
        by_action[call.action] = by_action.get(call.action, 0) + 1
    return by_action


def table(result: WatchResult) -> str:
    lines = [
        f"{result.resources} resources, monitor_api={result.monitor_api}, monitor every "
        f"{result.interval:g} s, deep monitor (OCF_CHECK_LEVEL=10) every "
        f"{result.deep_interval:g} s; {result.duration:.0f} s measured; agents run by "
        f"{result.python}"
        + (
            f"; aws-overlayip with routing_table_role {result.routing_role}"
            if result.routing_role
            else "; no routing role"
        ),
        "",
        "| monitor | runs | failed | CPU median | CPU mean | x bare Python |",
        "|---|---|---|---|---|---|",
    ]
    for name, kind in result.kinds.items():
        if not kind.cpu:
            lines.append(f"| {name} | 0 | - | - | - | - |")
            continue
        median = statistics.median(kind.cpu)
        mean = statistics.fmean(kind.cpu)
        lines.append(
            f"| {name} | {len(kind.cpu)} | {kind.failed} | {median * 1000:.0f} ms | "
            f"{mean * 1000:.0f} ms | {median / result.bare_cpu:.1f} |"
        )
    lines += [
        f"| bare `python -c pass` | {result.bare_runs} | - | {result.bare_cpu * 1000:.0f} ms "
        "| - | 1.0 |",
        "",
        f"agents' CPU: {result.total_cpu:.1f} s in {result.duration:.0f} s = "
        f"**{result.cores:.3f} cores** on average ("
        + ", ".join(
            f"{name} {len(kind.cpu)} x {statistics.fmean(kind.cpu) * 1000:.0f} ms = "
            f"{sum(kind.cpu) / result.duration:.3f}"
            for name, kind in result.kinds.items()
            if kind.cpu and result.duration > 0
        )
        + ")",
        "EC2 requests: "
        + (", ".join(f"{a} {n}" for a, n in sorted(result.ec2_calls.items())) or "none"),
        "STS requests: "
        + (", ".join(f"{a} {n}" for a, n in sorted(result.sts_calls.items())) or "none"),
    ]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.bench_watch", description=__doc__)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--overlay", type=int, default=20, help="aws-overlayip resources")
    parser.add_argument("--secip", type=int, default=10, help="aws-secip resources")
    parser.add_argument("--interval", type=float, default=10.0, help="monitor interval, s")
    parser.add_argument("--deep-interval", type=float, default=120.0, help="deep monitor, s")
    parser.add_argument("--monitor-api", default="deep", help="true, deep or false")
    parser.add_argument("--parallel", type=int, default=4, help="monitors at once (default 4)")
    parser.add_argument(
        "--python",
        default=AGENT_PYTHON if Path(AGENT_PYTHON).exists() else sys.executable,
        help=f"the interpreter that runs the agents (default {AGENT_PYTHON}, their shebang)",
    )
    parser.add_argument(
        "--routing-role",
        action="store_true",
        help="the aws-overlayip resources with a routing_table_role, declared in the lab's STS",
    )
    parser.add_argument(
        "--param", action="append", default=[], help="k=v for every aws-overlayip resource"
    )
    args = parser.parse_args(argv)
    # SIGTERM ends the run like Ctrl-C: the lab's server and namespaces are cleaned up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    extra = dict(p.split("=", 1) for p in args.param)
    with (
        tempfile.TemporaryDirectory(prefix="bench-watch-") as workdir,
        Lab(Path(workdir), nodes=("a", "b")) as lab,
    ):
        if args.routing_role:
            extra = {**routing_role(lab), **extra}
        result = watch(
            lab,
            duration=args.duration,
            overlay=args.overlay,
            secip=args.secip,
            interval=args.interval,
            deep_interval=args.deep_interval,
            monitor_api=args.monitor_api,
            parallel=args.parallel,
            extra=extra,
            python=args.python,
        )
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
