"""The benchmark: our agents and the incumbents side by side, as whole processes in the lab.

``python -m lab.bench`` (``make bench``) runs, in one lab and one run, every action (meta-data,
validate-all, probe, start, monitor, stop; and for ours the syntax check alone: validate-all at
OCF_CHECK_LEVEL=0, "syntax check", and with a malformed parameter, "bad input") of our agents and
of Debian's resource-agents ``aws-vpc-move-ip`` (monapi=true, lookup_type=NetworkInterfaceId),
``awsvip`` and ``awseip`` (wired in by lab.incumbents), each ``--runs`` times, and prints per
action the median, min and max wall time, the CPU time and peak RSS of the process (with its
children: the incumbents' AWS CLI processes), the EC2 API calls it made (the lab's call log,
CLI calls included), the IMDS requests and the AWS CLI processes it started; the ratio ours /
theirs per comparable row;
and ours / floor against two floors measured in the same run (before every case, so they span
it): a bare Python process, and one that only imports botocore and makes one DescribeRouteTables
call.

Start is a real takeover: the other node held the address (put there by the same agent) just
before. awsvip and awseip are one resource group for the "secondary IP + Elastic IP" rows: their
actions back to back (stop in reverse order), summed; their own rows follow the group's.

Peak RSS comes from GNU time (/usr/bin/time) inside the node: the harness's wait4() figure
includes the bench process's own RSS (a child inherits its parent's high-water mark through
fork and exec), so without GNU time the column is only an upper bound and says so.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from . import incumbents
from .harness import AGENTS_DIR, AgentResult, Lab

FLOOR_BOTOCORE = """
import botocore.session
from botocore.config import Config
session = botocore.session.get_session()
client = session.create_client("ec2", region_name="{region}", endpoint_url="{endpoint}",
    config=Config(retries={{"total_max_attempts": 1}}))
client.describe_route_tables(RouteTableIds=["{table}"])
"""
GNU_TIME = Path("/usr/bin/time")
ACTIONS = (
    "meta-data",
    "validate-all",
    "syntax check",
    "bad input",
    "probe",
    "start",
    "monitor",
    "stop",
)
# Rows of ours only: the incumbents have no syntax-only check.
OURS_ONLY = ("syntax check", "bad input")
EXPECTED_RC = {
    "meta-data": 0,
    "validate-all": 0,
    "syntax check": 0,  # validate-all at OCF_CHECK_LEVEL=0 (crm_resource --validate=0)
    "bad input": 6,  # validate-all with a malformed parameter: the syntax check alone
    "probe": 7,
    "start": 0,
    "monitor": 0,
    "stop": 0,
}
# The malformed parameter of our agents' "bad input" row (the incumbents have no such row).
BAD_INPUT = {
    "aws-overlayip": ("ip", "192.168.1000.10"),
    "aws-secip": ("ip", "10.0.1.1000"),
    "aws-eni": ("eni_id", "eni-not-hex"),
}
OURS = ("aws-overlayip", "aws-secip", "aws-eni")
MONITOR_INTERVAL_MS = 10000


@dataclass(frozen=True)
class Sample:
    """One measured process (or a group's processes back to back, summed)."""

    wall: float
    cpu: float
    rss_mb: float
    ec2: int
    imds: int
    cli: int
    rc: int
    ec2_actions: tuple[str, ...] = ()

    @staticmethod
    def total(samples: Sequence[Sample]) -> Sample:
        """A group's action: the members one after the other; rc is the first non-zero one."""
        return Sample(
            wall=sum(s.wall for s in samples),
            cpu=sum(s.cpu for s in samples),
            rss_mb=max(s.rss_mb for s in samples),
            ec2=sum(s.ec2 for s in samples),
            imds=sum(s.imds for s in samples),
            cli=sum(s.cli for s in samples),
            rc=next((s.rc for s in samples if s.rc != 0), 0),
            ec2_actions=tuple(a for s in samples for a in s.ec2_actions),
        )


@dataclass
class Row:
    agent: str
    case: str
    action: str
    role: str = "ours"  # ours, theirs, member (of a group), floor
    expected_rc: Optional[int] = None
    samples: list[Sample] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    def median(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def rcs(self) -> list[int]:
        return sorted({s.rc for s in self.samples})

    @property
    def rc_ok(self) -> bool:
        return self.expected_rc is None or self.rcs == [self.expected_rc]

    def to_json(self) -> dict[str, Any]:
        walls = [s.wall for s in self.samples]
        return {
            "agent": self.agent,
            "case": self.case,
            "action": self.action,
            "role": self.role,
            "runs": len(self.samples),
            "wall_s": {
                "median": statistics.median(walls),
                "min": min(walls),
                "max": max(walls),
                "samples": walls,
            },
            "cpu_s": {
                "median": statistics.median(s.cpu for s in self.samples),
                "samples": [s.cpu for s in self.samples],
            },
            "rss_mb": {"max": max(s.rss_mb for s in self.samples)},
            "ec2_calls": {
                "max": max(s.ec2 for s in self.samples),
                "last_run": list(self.samples[-1].ec2_actions),
            },
            "imds_requests": {"max": max(s.imds for s in self.samples)},
            "cli_processes": {"max": max(s.cli for s in self.samples)},
            "rcs": self.rcs,
            "expected_rc": self.expected_rc,
            "rc_ok": self.rc_ok,
        }


@dataclass(frozen=True)
class Member:
    """One agent with its parameters, as a resource."""

    agent: str
    path: Path
    params: dict[str, str]
    python: str = sys.executable  # the interpreter; /bin/sh for the incumbents
    timeout_ms: int = 20000


@dataclass(frozen=True)
class Case:
    """What one row label measures: one agent, or a group of agents (a resource group)."""

    agent: str
    name: str
    members: tuple[Member, ...]
    role: str  # ours or theirs


@dataclass(frozen=True)
class Section:
    title: str
    cases: tuple[Case, ...]

    @property
    def ours(self) -> Optional[Case]:
        return next((c for c in self.cases if c.role == "ours"), None)

    @property
    def theirs(self) -> Optional[Case]:
        return next((c for c in self.cases if c.role == "theirs"), None)


class Meter:
    """Runs agents and processes in the lab and measures them.

    Wall and CPU time come from the harness (wait4 on the process: its children included);
    peak RSS from GNU time inside the namespace, which forks the measured command afresh, so
    the figure is the command's own (and its children's), not the bench process's.
    """

    def __init__(self, lab: Lab, workdir: Path, cli: Optional[incumbents.AwsCli]) -> None:
        self.lab = lab
        self.cli = cli
        self.gnu_time = GNU_TIME.exists()
        self._out = workdir / "rusage"

    def _prefix(self) -> tuple[str, ...]:
        if not self.gnu_time:
            return ()
        self._out.unlink(missing_ok=True)
        return (str(GNU_TIME), "-q", "-f", "rusage %M", "-o", str(self._out))

    def _sample(self, node: str, result: AgentResult) -> Sample:
        rss_kb = result.max_rss_kb
        if self.gnu_time:
            try:
                last = self._out.read_text().split()
                rss_kb = int(last[-1]) if last[-2:-1] == ["rusage"] else rss_kb
            except (OSError, ValueError, IndexError):
                pass  # killed before GNU time could write: keep the harness's figure
        calls = self.lab.calls(node)
        return Sample(
            wall=result.duration,
            cpu=result.cpu_seconds,
            rss_mb=rss_kb / 1024,
            ec2=len(calls),
            imds=len(self.lab.calls(node, service="imds")),
            cli=len(self.cli.invocations()) if self.cli else 0,
            rc=result.rc,
            ec2_actions=tuple(c.action for c in calls),
        )

    def _reset(self) -> None:
        self.lab.reset_calls()
        if self.cli:
            self.cli.reset()

    def agent(
        self,
        node: str,
        member: Member,
        action: str,
        interval_ms: Optional[int],
        extra_env: Optional[dict[str, str]] = None,
    ) -> Sample:
        self._reset()
        result = self.lab.run_agent(
            node,
            member.path,
            action,
            member.params,
            timeout_ms=member.timeout_ms,
            interval_ms=interval_ms,
            python=member.python,
            extra_env=extra_env,
            wrapper=self._prefix(),
        )
        if result.timed_out:
            raise RuntimeError(f"{member.agent} {action} on {node} timed out: {result.stderr}")
        return self._sample(node, result)

    def process(self, node: str, argv: Sequence[str]) -> tuple[Sample, AgentResult]:
        self._reset()
        result = self.lab.run_process(node, [*self._prefix(), *argv])
        return self._sample(node, result), result


# ---- what is measured ----------------------------------------------------------------------


def _plural(count: int) -> str:
    return f"{count} route table{'s' if count > 1 else ''}"


def sections(
    lab: Lab,
    agents: Sequence[str],
    tables: Sequence[int],
    cli: Optional[incumbents.AwsCli],
) -> list[Section]:
    """The comparisons to run, with their resources set up (routes, EIPs) where needed."""
    common = {"endpoint_url": lab.endpoint_url}
    result: list[Section] = []

    def ours(agent: str, name: str, params: dict[str, str]) -> Case:
        return Case(agent, name, (Member(agent, AGENTS_DIR / agent, params),), "ours")

    def theirs(agent: str, params: dict[str, str]) -> Member:
        return Member(
            agent,
            incumbents.agent_path(agent),
            params,
            python=incumbents.SHELL,
            timeout_ms=incumbents.TIMEOUT_MS[agent],
        )

    for count in tables:
        cases = []
        if "aws-overlayip" in agents:
            params = {
                "ip": f"192.168.{100 + count}.10",
                "routing_table": ",".join(lab.route_tables[:count]),
                "source_dest_check": "disable",
                **common,
            }
            cases.append(ours("aws-overlayip", _plural(count), params))
        if incumbents.MOVE_IP in agents and cli is not None:
            ip = f"192.168.{110 + count}.10"
            incumbents.create_routes(cli, lab, "b", ip, lab.route_tables[:count])
            params = incumbents.move_ip_params(cli, ip, lab.route_tables[:count])
            member = theirs(incumbents.MOVE_IP, params)
            cases.append(Case(incumbents.MOVE_IP, _plural(count), (member,), "theirs"))
        if cases:
            result.append(Section(f"overlay IP, {_plural(count)}", tuple(cases)))

    cases = []
    if "aws-secip" in agents:
        cases.append(ours("aws-secip", "IPv4", {"ip": "10.0.1.100", **common}))
    if incumbents.AWSVIP in agents and cli is not None:
        member = theirs(incumbents.AWSVIP, incumbents.awsvip_params(cli, "10.0.1.110"))
        cases.append(Case(incumbents.AWSVIP, "IPv4", (member,), "theirs"))
    if cases:
        result.append(Section("secondary private IP", tuple(cases)))

    cases = []
    if "aws-secip" in agents:
        params = {"ip": "10.0.1.101", "elastic_ip_allocation_id": lab.allocate_eip(), **common}
        cases.append(ours("aws-secip", "IPv4 + EIP", params))
    if incumbents.AWSEIP in agents and cli is not None:
        ip = "10.0.1.111"
        allocation = lab.allocate_eip()
        public_ip = incumbents.eip_public_ip(cli, lab, "a", allocation)
        group = (
            theirs(incumbents.AWSVIP, incumbents.awsvip_params(cli, ip)),
            theirs(incumbents.AWSEIP, incumbents.awseip_params(cli, public_ip, allocation, ip)),
        )
        cases.append(Case("awsvip+awseip", "IPv4 + EIP", group, "theirs"))
    if cases:
        result.append(Section("secondary private IP + Elastic IP", tuple(cases)))

    if "aws-eni" in agents:
        eni = lab.create_eni(subnet="c")
        case = ours("aws-eni", "device 1", {"eni_id": eni.id, **common})
        result.append(Section("whole ENI (no incumbent)", (case,)))
    return result


def measure(
    meter: Meter,
    rows: dict[tuple[str, str, str], Row],
    case: Case,
    runs: int,
    progress: Callable[[str], None] = lambda _: None,
) -> None:
    grouped = len(case.members) > 1

    def row(agent: str, action: str, role: str) -> Row:
        key = (agent, case.name, action)
        return rows.setdefault(key, Row(agent, case.name, action, role, EXPECTED_RC[action]))

    def run(node: str, action: str, record: bool = True) -> None:
        probe = action == "probe"
        verb = {"probe": "monitor", **dict.fromkeys(OURS_ONLY, "validate-all")}.get(action, action)
        interval = MONITOR_INTERVAL_MS if verb == "monitor" and not probe else None
        members = list(reversed(case.members) if action == "stop" else case.members)
        if action in OURS_ONLY and case.role != "ours":
            return
        if action == "bad input":
            name, value = BAD_INPUT[case.agent]
            members = [replace(m, params={**m.params, name: value}) for m in case.members]
        level = {"OCF_CHECK_LEVEL": "0"} if action == "syntax check" else None
        samples = []
        for member in members:
            sample = meter.agent(node, member, verb, interval, level)
            samples.append(sample)
            if record and grouped:
                row(member.agent, action, "member").add(sample)
        if record:
            row(case.agent, action, case.role).add(Sample.total(samples))

    for number in range(1, runs + 1):
        progress(f"  run {number}/{runs}")
        run("a", "meta-data")
        run("a", "validate-all")
        run("a", "syntax check")
        run("a", "bad input")
        run("b", "start", record=False)  # b holds it, so a's start is a takeover
        run("a", "probe")  # a probe on a node that does not hold it
        run("a", "start")
        run("a", "monitor")
        run("a", "stop")
        run("b", "stop", record=False)


def floor_rows() -> list[Row]:
    return [
        Row("floor", "python -c pass", "-", "floor"),
        Row("floor", "botocore + 1 call", "-", "floor"),
    ]


def sample_floors(lab: Lab, meter: Meter, floors: list[Row], runs: int) -> None:
    """Add `runs` samples to each floor. Called before every case, so that the floors span the
    whole run: a machine whose speed drifts (a shared VM) does not skew the ratios."""
    bare, boto = floors
    script = FLOOR_BOTOCORE.format(
        region=lab.region, endpoint=lab.endpoint_url, table=lab.route_tables[0]
    )
    for _ in range(runs):
        bare.add(meter.process("a", [sys.executable, "-c", "pass"])[0])
        sample, result = meter.process("a", [sys.executable, "-c", script])
        if result.rc != 0:
            raise RuntimeError(f"botocore floor failed: {result.stderr[-500:]}")
        boto.add(sample)


# ---- output ----------------------------------------------------------------------------------


@dataclass
class Report:
    floors: list[Row]
    sections: list[Section]
    rows: dict[tuple[str, str, str], Row]
    notes: list[str] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)

    def section_rows(self, section: Section) -> list[Row]:
        """Per action: ours, theirs, then the members of their group."""
        ordered = []
        for action in ACTIONS:
            for case in section.cases:
                agents = [case.agent]
                if len(case.members) > 1:
                    agents += [m.agent for m in case.members]
                for agent in agents:
                    found = self.rows.get((agent, case.name, action))
                    if found is not None:
                        ordered.append(found)
        return ordered

    def ratio_theirs(self, section: Section, row: Row) -> Optional[float]:
        ours, theirs = section.ours, section.theirs
        if ours is None or theirs is None or row.role != "ours":
            return None
        other = self.rows.get((theirs.agent, theirs.name, row.action))
        return row.median() / other.median() if other else None

    def ratio_floor(self, row: Row, index: int) -> float:
        return row.median() / self.floors[index].median()

    def to_json(self) -> dict[str, Any]:
        def with_ratios(section: Optional[Section], row: Row) -> dict[str, Any]:
            data = row.to_json()
            data["ours_over_theirs"] = self.ratio_theirs(section, row) if section else None
            data["over_python_floor"] = self.ratio_floor(row, 0)
            data["over_botocore_floor"] = self.ratio_floor(row, 1)
            return data

        return {
            **self.header,
            "floors": [with_ratios(None, row) for row in self.floors],
            "sections": [
                {
                    "title": section.title,
                    "ours": section.ours.agent if section.ours else None,
                    "theirs": section.theirs.agent if section.theirs else None,
                    "rows": [with_ratios(section, row) for row in self.section_rows(section)],
                }
                for section in self.sections
            ],
            "notes": self.notes,
        }


COLUMNS = (
    f"  {'action':<13}{'agent':<18}{'median':>8}{'min':>7}{'max':>7}{'cpu':>7}{'rss MB':>8}"
    f"{'ec2':>5}{'imds':>5}{'cli':>4}{'rc':>5}{'ours/theirs':>13}{'/python':>9}{'/botocore':>10}"
)


def _line(report: Report, section: Optional[Section], row: Row, first: bool) -> str:
    walls = [s.wall for s in row.samples]
    ratio = report.ratio_theirs(section, row) if section else None
    rc = ",".join(map(str, row.rcs)) + ("" if row.rc_ok else "!")
    label = row.action if first else ""
    agent = ("  " + row.agent) if row.role == "member" else row.agent
    if row.role == "floor":
        label, agent = "floor", row.case
    return (
        f"  {label:<13.13}{agent:<18}{statistics.median(walls):>7.3f}s{min(walls):>7.3f}"
        f"{max(walls):>7.3f}{statistics.median(s.cpu for s in row.samples):>7.3f}"
        f"{max(s.rss_mb for s in row.samples):>8.1f}{max(s.ec2 for s in row.samples):>5}"
        f"{max(s.imds for s in row.samples):>5}{max(s.cli for s in row.samples):>4}{rc:>5}"
        f"{(f'{ratio:.2f}' if ratio is not None else ''):>13}"
        f"{report.ratio_floor(row, 0):>9.1f}{report.ratio_floor(row, 1):>10.2f}"
    )


def table(report: Report) -> str:
    lines = ["floors", COLUMNS]
    lines += [_line(report, None, row, True) for row in report.floors]
    for section in report.sections:
        names = " vs ".join(c.agent for c in section.cases)
        lines += ["", f"{section.title}: {names}", COLUMNS]
        previous = ""
        for row in report.section_rows(section):
            lines.append(_line(report, section, row, row.action != previous))
            previous = row.action
    return "\n".join(lines)


AWSEIP_LAB_GAP = (
    "awseip's monitor greps DescribeInstances for the Elastic IP; the lab's DescribeInstances "
    "(moto) shows an EIP association only on a primary private IP, not on the secondary one "
    "it is on here, so awseip sees 'not running': its start then re-associates (+3 s sleep) and "
    "its stop skips DescribeAddresses + DisassociateAddress (-3 s sleep). On AWS both differ."
)
LEGEND = """\
median/min/max: wall time of the whole process (s); cpu: median user+system time, children
included; rss MB: peak resident set size (max over runs); ec2: EC2 API calls the node made
(AWS CLI calls included); imds: IMDS requests; cli: AWS CLI processes started; rc: exit codes
seen ("!" = not the expected one: probe 7, everything else 0); ours/theirs: median over the
incumbent's median for the same action; /python, /botocore: median over the floors' medians.
A group (awsvip+awseip) is its members' actions back to back, summed (rss: the larger)."""


def _select(requested: Sequence[str]) -> tuple[list[str], list[str]]:
    known = (*OURS, *incumbents.INCUMBENTS)
    unknown = [a for a in requested if a not in known]
    if unknown:
        raise SystemExit(f"unknown agent(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    notes = []
    agents = list(requested) or list(known)
    why = incumbents.missing()
    if why and any(a in incumbents.INCUMBENTS for a in agents):
        if requested:
            raise SystemExit(f"cannot run the incumbents: {why}")
        notes.append(f"incumbents skipped: {why}")
        agents = [a for a in agents if a not in incumbents.INCUMBENTS]
    return agents, notes


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each action")
    parser.add_argument("--tables", default="1,3", help="route table counts for overlay IPs")
    parser.add_argument("--detach-delay", type=float, default=1.0)
    parser.add_argument("--attach-delay", type=float, default=0.0)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(
        "agents",
        nargs="*",
        help=f"agents to measure (default all): {', '.join((*OURS, *incumbents.INCUMBENTS))}",
    )
    args = parser.parse_args(argv)
    tables = [int(t) for t in args.tables.split(",") if t]
    if not tables or any(t < 1 or t > 3 for t in tables):
        parser.error("--tables takes counts from 1 to 3 (the lab has 3 route tables)")
    agents, notes = _select(args.agents)
    # As installed (the RPM ships byte code): without it, and with PYTHONDONTWRITEBYTECODE set,
    # every agent process would compile every module it imports.
    compileall.compile_dir(str(AGENTS_DIR.parent / "lib"), quiet=1)
    rows: dict[tuple[str, str, str], Row] = {}
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="ipfailover-bench-") as workdir,
        Lab(Path(workdir), detach_delay=args.detach_delay, attach_delay=args.attach_delay) as lab,
    ):
        wanted = any(a in incumbents.INCUMBENTS for a in agents)
        cli = incumbents.install_cli(lab) if wanted else None
        meter = Meter(lab, Path(workdir), cli)
        if not meter.gnu_time:
            notes.append(
                f"{GNU_TIME} is missing (Debian package time): rss MB is the harness's figure, "
                "which includes the bench process's own peak RSS (an upper bound)"
            )
        print(
            f"lab: {lab.start_seconds:.1f}s to start; {args.runs} runs per action; ENI detach "
            f"{args.detach_delay}s, attach {args.attach_delay}s; secondary IP assignment "
            f"{lab.timing().assign_delay}s; load average {load_before[0]:.2f}",
            flush=True,
        )
        base = floor_rows()
        chosen = sections(lab, agents, tables, cli)
        for section in chosen:
            for case in section.cases:
                print(f"measuring {case.agent} ({case.name}) ...", flush=True)
                sample_floors(lab, meter, base, args.runs)
                measure(meter, rows, case, args.runs)
    load_after = os.getloadavg()
    report = Report(base, chosen, rows, notes)
    report.header = {
        "runs": args.runs,
        "tables": tables,
        "python": sys.executable,
        "rss_from_gnu_time": meter.gnu_time,
        "load_average": {"before": load_before[0], "after": load_after[0]},
    }
    print()
    print(table(report))
    print()
    print(LEGEND)
    print(f"load average (1 min): {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    for note in notes:
        print(f"note: {note}")
    for row in rows.values():
        if not row.rc_ok:
            print(f"unexpected exit code: {row.agent} ({row.case}) {row.action}: {row.rcs}")
    eip_monitor = rows.get((incumbents.AWSEIP, "IPv4 + EIP", "monitor"))
    if eip_monitor is not None and not eip_monitor.rc_ok:
        print(f"note: {AWSEIP_LAB_GAP}")
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
