"""The benchmark: every action of every agent, as whole processes in the lab.

``python -m lab.bench`` (``make bench``) prints, per agent and action, the median, min and max
wall time, the CPU time and peak RSS of the agent process and the EC2 API calls it made, plus
two floors measured in the same run: a bare Python process, and one that only imports botocore
and makes one DescribeRouteTables call. Start is measured as a real takeover: the other node
held the address just before.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .harness import AGENTS_DIR, AgentResult, Lab

FLOOR_BOTOCORE = """
import botocore.session
from botocore.config import Config
session = botocore.session.get_session()
client = session.create_client("ec2", region_name="{region}", endpoint_url="{endpoint}",
    config=Config(retries={{"total_max_attempts": 1}}))
client.describe_route_tables(RouteTableIds=["{table}"])
"""


@dataclass
class Row:
    agent: str
    case: str
    action: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    rcs: set[int] = field(default_factory=set)

    def add(self, result: AgentResult, calls: int) -> None:
        self.wall.append(result.duration)
        self.cpu.append(result.cpu_seconds)
        self.rss_mb.append(result.max_rss_kb / 1024)
        self.calls.append(calls)
        self.rcs.add(result.rc)


@dataclass
class Case:
    agent: str
    name: str
    params: dict[str, str]


def cases(lab: Lab, agents: Sequence[str]) -> list[Case]:
    result = []
    common = {"endpoint_url": lab.endpoint_url}
    if "aws-overlayip" in agents:
        for count in (1, 3):
            result.append(
                Case(
                    "aws-overlayip",
                    f"{count} table{'s' if count > 1 else ''}",
                    {
                        "ip": f"192.168.{100 + count}.10",
                        "routing_table": ",".join(lab.route_tables[:count]),
                        "source_dest_check": "disable",
                        **common,
                    },
                )
            )
    if "aws-secip" in agents:
        result.append(Case("aws-secip", "IPv4", {"ip": "10.0.1.100", **common}))
    if "aws-eni" in agents:
        eni = lab.create_eni(subnet="c")
        result.append(Case("aws-eni", "device 1", {"eni_id": eni.id, **common}))
    return result


def measure(lab: Lab, rows: dict[tuple[str, str, str], Row], case: Case, runs: int) -> None:
    def run(node: str, action: str, record: bool = True, probe: bool = False) -> AgentResult:
        lab.reset_calls()
        interval = 10000 if action == "monitor" and not probe else None
        result = lab.run_agent(node, case.agent, action, case.params, interval_ms=interval)
        if record:
            key = (case.agent, case.name, "probe" if probe else action)
            rows.setdefault(key, Row(*key)).add(result, len(lab.calls(node)))
        return result

    for _ in range(runs):
        run("a", "meta-data")
        run("a", "validate-all")
        run("b", "start", record=False)  # b holds it, so a's start is a takeover
        run("a", "monitor", probe=True)  # a probe on a node that does not hold it
        run("a", "start")
        run("a", "monitor")
        run("a", "stop")
        run("b", "stop", record=False)


def floors(lab: Lab, runs: int) -> list[Row]:
    bare = Row("floor", "python -c pass", "-")
    boto = Row("floor", "botocore + 1 call", "-")
    script = FLOOR_BOTOCORE.format(
        region=lab.region, endpoint=lab.endpoint_url, table=lab.route_tables[0]
    )
    for _ in range(runs):
        bare.add(lab.run_process("a", [sys.executable, "-c", "pass"]), 0)
        lab.reset_calls()
        result = lab.run_process("a", [sys.executable, "-c", script])
        if result.rc != 0:
            raise RuntimeError(f"botocore floor failed: {result.stderr[-500:]}")
        boto.add(result, len(lab.calls("a")))
    return [bare, boto]


def table(rows: Sequence[Row], reference: Optional[Row]) -> str:
    med = statistics.median
    lines = [
        f"{'agent':<14} {'case':<18} {'action':<13} {'median':>7} {'min':>6} {'max':>6} "
        f"{'cpu':>6} {'rss MB':>7} {'calls':>5} {'/floor':>6}  rc",
    ]
    for row in rows:
        ratio = f"{med(row.wall) / med(reference.wall):.2f}" if reference and row.calls else ""
        lines.append(
            f"{row.agent:<14} {row.case:<18} {row.action:<13} {med(row.wall):>6.3f}s "
            f"{min(row.wall):>5.3f} {max(row.wall):>5.3f} {med(row.cpu):>5.3f}s "
            f"{max(row.rss_mb):>7.1f} {max(row.calls):>5} {ratio:>6}  "
            f"{','.join(map(str, sorted(row.rcs)))}"
        )
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--detach-delay", type=float, default=1.0)
    parser.add_argument("--attach-delay", type=float, default=0.0)
    parser.add_argument("agents", nargs="*")
    args = parser.parse_args(argv)
    agents = args.agents or [p.name for p in sorted(AGENTS_DIR.iterdir()) if p.is_file()]
    rows: dict[tuple[str, str, str], Row] = {}
    with (
        tempfile.TemporaryDirectory(prefix="ipfailover-bench-") as workdir,
        Lab(Path(workdir), detach_delay=args.detach_delay, attach_delay=args.attach_delay) as lab,
    ):
        print(
            f"lab: {lab.start_seconds:.1f}s to start; {args.runs} runs per action; ENI detach "
            f"{args.detach_delay}s, attach {args.attach_delay}s; secondary IP assignment "
            f"{lab.timing().assign_delay}s",
            flush=True,
        )
        base = floors(lab, args.runs)
        for case in cases(lab, agents):
            print(f"measuring {case.agent} ({case.name}) ...", flush=True)
            measure(lab, rows, case, args.runs)
    print()
    print(table([*base, *rows.values()], base[1]))
    print("\n/floor: median wall time over the botocore floor (rows that call the API)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
