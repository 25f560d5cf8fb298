"""The client's outage with our agents and with the incumbents, in the same cluster (issue 16).

``python -m lab.compare`` (``make demo-compare``), as root: the cluster part of the demo
(cluster.scenarios.FailoverLab: two nodes fenced by fence_aws, the VPC data plane, a service in
each node, a client asking the service IP every 50 ms, EC2's throttling at AWS's figures) runs
each scenario (planned move, crash with fencing) with our agent and then with what the SUSE and
Red Hat guides configure for the same address:

- an overlay IP: ours ``aws-overlayip`` (crm-examples/aws-overlayip.crm) against
  ``aws-vpc-move-ip`` (the SUSE guide's primitive: start/stop timeout 180 s, monitor every 60 s;
  the parameters lab.incumbents gives it: the lab's AWS CLI, the route's target by ENI);
- a secondary private IP: ours ``aws-secip`` (crm-examples/aws-secip.crm) against the Red Hat
  guide's group of ``awsvip`` (the address in AWS) and ``IPaddr2`` (the address in the OS);
- an Elastic IP on a secondary private IP, the client asking the public address (the lab's VPC
  translates it to the private address it is associated with, lab.dataplane): ours
  ``aws-secip`` with ``elastic_ip_allocation_id`` (crm-examples/aws-secip.crm, rsc_ip_web)
  against the Red Hat guide's group with ``awseip`` added as its last member (allocation_id,
  elastic_ip, and private_ip_address: the group's secondary address; the guide leaves it out,
  which puts the EIP on the node's primary address). One EIP, one address for both.

The same cluster, client, throttling and route tables for both; the incumbents reach the lab
through the AWS CLI wrapper of lab.incumbents (credentials from the node's IMDS). Printed: the
demo's outage table for each, then the comparison (ours / theirs; for a crash also the part
after fencing, where detection and fencing are the same for both), and the lab's Corosync
token next to the 30 s the SAP guides recommend. ``--png PATH`` (default
docs/outage-compare.png; needs matplotlib, the ``plot`` extra) draws, per scenario, the
client's requests over time (answered, failed) with the cluster's events marked, ours above
theirs, stamped with the commit and the date.

``--scenarios move,crash`` and ``--kinds overlay,secondary,eip`` narrow it.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from . import incumbents
from .demo import cluster_missing
from .harness import Lab
from .traffic import Sample, read_samples

if TYPE_CHECKING:
    from cluster.scenarios import Case, Result

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PNG = REPO / "docs" / "outage-compare.png"
SAP_GUIDES_TOKEN_S = 30.0
KINDS = ("overlay", "secondary", "eip")
OURS = {"overlay": "aws-overlayip", "secondary": "aws-secip", "eip": "aws-secip+eip"}
THEIRS = {"overlay": incumbents.MOVE_IP, "secondary": "awsvip+IPaddr2", "eip": "awsvip+awseip"}


@dataclass
class Pair:
    kind: str
    scenario: str
    ours: Result
    theirs: Result
    ours_samples: list[Sample]
    theirs_samples: list[Sample]


def theirs_case(kind: str, lab: Lab, cli: incumbents.AwsCli, ours: Case) -> Case:
    """The incumbents' resource for the address of our `ours` case (a cluster.scenarios.Case
    whose `agent` names the kind of address, so the scenarios check AWS and the OS the same)."""
    from cluster.scenarios import OVERLAY_TABLES, Case

    address = ours.address
    if kind == "overlay":
        tables = lab.route_tables[: len(OVERLAY_TABLES)]
        routes = lab.route_targets(f"{address}/32", tables)
        if any(target is None for target in routes.values()):
            missing = [t for t, target in routes.items() if target is None]
            incumbents.create_routes(cli, lab, "a", address, missing)
        params = incumbents.move_ip_params(cli, address, tables)
        crm = (
            f"primitive rsc_vip_HA1_HDB00 ocf:heartbeat:{incumbents.MOVE_IP} params "
            + " ".join(f"{k}={v}" for k, v in params.items())
            + " op start timeout=180s interval=0s op stop timeout=180s interval=0s"
            " op monitor timeout=60s interval=60s\n"
        )
        return Case("aws-overlayip", "rsc_vip_HA1_HDB00", crm, address, "ReplaceRoute")
    params = incumbents.awsvip_params(cli, address)
    crm = (
        f"primitive rsc_awsvip_app ocf:heartbeat:{incumbents.AWSVIP} params "
        + " ".join(f"{k}={v}" for k, v in params.items())
        + " op start timeout=30s interval=0s op stop timeout=30s interval=0s"
        " op monitor timeout=30s interval=20s\n"
        f"primitive rsc_ipaddr2_app ocf:heartbeat:IPaddr2 params ip={address} cidr_netmask=24"
        " nic=eth0 op monitor timeout=20s interval=10s\n"
        "group grp_ip_app rsc_awsvip_app rsc_ipaddr2_app\n"
    )
    # the group's last member: its start is the end of the group's start
    return Case("aws-secip", "rsc_ipaddr2_app", crm, address, "AssignPrivateIpAddresses")


def eip_cases(lab: Lab, cli: incumbents.AwsCli) -> tuple[Case, Case]:
    """Ours (the example's rsc_ip_web) and theirs for one Elastic IP on one secondary address."""
    from cluster.examples import instantiate, with_params
    from cluster.scenarios import Case

    allocation = lab.allocate_eip()
    found = lab.ec2().describe_addresses(AllocationIds=[allocation])["Addresses"]
    public = str(found[0]["PublicIp"])
    crm = instantiate(
        "aws-secip.crm", {"eipalloc-0123456789abcdef0": allocation}, only=["rsc_ip_web"]
    )
    crm = with_params(crm, {"endpoint_url": lab.endpoint_url})
    address = "10.0.1.51"  # the example's
    ours = Case("aws-secip", "rsc_ip_web", crm, address, "AssociateAddress", elastic_ip=public)
    vip = incumbents.awsvip_params(cli, address)
    eip = incumbents.awseip_params(cli, public, allocation, address)
    ops = " op start timeout=30s interval=0s op stop timeout=30s interval=0s"
    theirs_crm = (
        f"primitive rsc_awsvip_web ocf:heartbeat:{incumbents.AWSVIP} params "
        + " ".join(f"{k}={v}" for k, v in vip.items())
        + ops
        + " op monitor timeout=30s interval=20s\n"
        f"primitive rsc_ipaddr2_web ocf:heartbeat:IPaddr2 params ip={address} cidr_netmask=24"
        " nic=eth0 op monitor timeout=20s interval=10s\n"
        f"primitive rsc_awseip_web ocf:heartbeat:{incumbents.AWSEIP} params "
        + " ".join(f"{k}={v}" for k, v in eip.items())
        + ops
        + " op monitor timeout=30s interval=20s\n"
        "group grp_ip_web rsc_awsvip_web rsc_ipaddr2_web rsc_awseip_web\n"
    )
    # the group's last member: its start is the end of the group's start
    theirs = Case(
        "aws-secip", "rsc_awseip_web", theirs_crm, address, "AssociateAddress", elastic_ip=public
    )
    return ours, theirs


# ---- figures -----------------------------------------------------------------------------------


def handed_over(result: Result) -> Optional[float]:
    """Seconds from the fault to where the agents' part begins, the same event for both: for
    a crash, fence_aws's success; for a planned move, Pacemaker initiating the stop on the old
    node (how long Pacemaker takes to react to the standby depends on the machine's load, not
    on the agents)."""
    if result.scenario == "move":
        for event in result.timeline:
            if event.text.endswith(f": stop on {result.old} initiated"):
                return event.time - result.fault
        return None
    return result.first(f"{result.old} fenced")


def agents_part(result: Result) -> Optional[float]:
    """Seconds from `handed_over` to the end of the client's outage."""
    begins = handed_over(result)
    seconds = result.outage.seconds
    if begins is None or seconds is None:
        return None
    return seconds - begins


def _ratio(ours: Optional[float], theirs: Optional[float]) -> Optional[float]:
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs


def _s(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _x(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def comparison(pairs: Sequence[Pair], token_ms: int) -> str:
    from cluster.scenarios import TITLES

    head = (
        f"{'address':<10} {'scenario':<27} {'ours':<14} {'theirs':<15} {'outage':>15} "
        f"{'ratio':>6}  {'gap':>13} {'agents part':>15} {'ratio':>6}  goal"
    )
    lines = [head, "-" * len(head)]
    for p in pairs:
        o, t = p.ours, p.theirs
        whole = _ratio(o.outage.seconds, t.outage.seconds)
        po, pt = agents_part(o), agents_part(t)
        part = _ratio(po, pt)
        goal = part is not None and part <= 0.3
        checks = "" if o.ok and t.ok else "; CHECKS FAILED"
        lines.append(
            f"{p.kind:<10} {TITLES[p.scenario]:<27} {o.agent:<14} {t.agent:<15} "
            f"{_s(o.outage.seconds):>7}/{_s(t.outage.seconds):<7} {_x(whole):>6}  "
            f"{_s(o.outage.gap):>6}/{_s(t.outage.gap):<6} {_s(po):>7}/{_s(pt):<7} "
            f"{_x(part):>6}  {'met' if goal else 'MISSED'} (agents' part <= 0.3x){checks}"
        )
    lines += [
        "outage (ours/theirs): from the fault (standby, or the crash) until the new node answers",
        "for good, as the client sees it; gap: the longest time without any answer; agents' part:",
        "from the moment the agents take over (a crash: fence_aws's success; a planned move:",
        "Pacemaker initiating the stop on a, which it does just as late for both) to the end of",
        "the outage; ratio: ours / theirs.",
        f"Corosync token in the lab: {token_ms / 1000:g} s; the SAP on AWS guides (SUSE, Red Hat) "
        f"recommend {SAP_GUIDES_TOKEN_S:g} s. Detecting a crash takes about the token plus",
        f"the consensus timeout (1.2 x token): {2.2 * token_ms / 1000:.1f} s here, "
        f"{2.2 * SAP_GUIDES_TOKEN_S:.0f} s with the guides' settings, the same for both.",
    ]
    return "\n".join(lines)


def stamp() -> str:
    """The commit (with '+changes' when the tree differs from it) and the UTC date."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown commit", ""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"commit {commit}{'+changes' if dirty else ''}, {now}"


def _marks(r: Result) -> list[tuple[float, str, str]]:
    """(seconds after the fault, label, colour) of the events drawn: the fault, Pacemaker
    initiating the stop on the old node, the fencing, the start(s) on the new node returning."""
    marks = [(0.0, "standby" if r.scenario == "move" else "crash", "black")]
    stop = None
    for event in r.timeline:
        at = event.time - r.fault
        if event.text.endswith(f": stop on {r.old} initiated") and stop is None:
            stop = at
            marks.append((at, "stop", "tab:orange"))
        elif event.text.startswith(f"{r.old} fenced"):
            marks.append((at, "fenced", "tab:red"))
        elif event.text.endswith(f": start on {r.new}: ok"):
            marks.append((at, "start", "tab:green"))
    return marks


def draw(pairs: Sequence[Pair], path: Path) -> None:
    # imported by name: matplotlib is the `plot` extra, absent where only the tests are installed
    # (mypy included)
    importlib.import_module("matplotlib").use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")

    from cluster.scenarios import TITLES

    # a column per scenario, two rows per kind of address (ours above theirs)
    kinds = list(dict.fromkeys(p.kind for p in pairs))
    scenarios = list(dict.fromkeys(p.scenario for p in pairs))
    fig, axes = plt.subplots(
        2 * len(kinds),
        len(scenarios),
        figsize=(5.2 * len(scenarios), 2.75 * len(kinds) + 0.5),
        squeeze=False,
        sharey=True,
    )
    for p in pairs:
        top, column = 2 * kinds.index(p.kind), scenarios.index(p.scenario)
        rows = ((p.ours, p.ours_samples), (p.theirs, p.theirs_samples))
        # one time axis per scenario: ours and theirs at the same scale, every mark shown
        times = [r.outage.seconds or 0.0 for r, _ in rows]
        times += [at for r, _ in rows for at, _, _ in _marks(r)]
        end = max(times) * 1.05 + 1.0
        for row, (result, samples) in enumerate(rows):
            ax = axes[top + row][column]
            fault = result.fault
            shown = [s for s in samples if -2.0 <= s.t - fault <= end]
            ok = [s.t - fault for s in shown if s.node is not None]
            bad = [s.t - fault for s in shown if s.node is None]
            ax.scatter(ok, [1] * len(ok), s=4, color="tab:blue", label="answered")
            ax.scatter(bad, [0] * len(bad), s=4, color="tab:red", label="failed")
            for at, label, colour in _marks(result):
                ax.axvline(at, color=colour, linewidth=0.8, linestyle="--")
                ax.text(at, 0.5, f" {label}", rotation=90, fontsize=7, color=colour, va="center")
            seconds = result.outage.seconds
            ax.set_title(
                f"{result.agent}: {TITLES[p.scenario]}\n"
                f"outage {_s(seconds)}, agents' part {_s(agents_part(result))}",
                fontsize=8,
            )
            ax.set_xlim(-2.0, end)
            ax.set_ylim(-0.5, 1.5)
            ax.set_yticks([0, 1], ["failed", "answered"])
            ax.tick_params(labelsize=7)
            if top + row == 2 * len(kinds) - 1:
                ax.set_xlabel("seconds after the fault", fontsize=8)
    fig.suptitle(
        "client requests (every 50 ms) during failover: per address, ours above the incumbents",
        fontsize=10,
    )
    fig.text(0.99, 0.005, stamp(), ha="right", va="bottom", fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.02, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- running -----------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", default="move,crash", help="comma-separated: move, crash")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated: " + ", ".join(KINDS)
    )
    parser.add_argument("--png", default=str(DEFAULT_PNG), help="the picture ('' for none)")
    args = parser.parse_args(argv)
    scenarios = [s for s in args.scenarios.split(",") if s]
    kinds = [k for k in args.kinds.split(",") if k]
    if set(scenarios) - {"move", "crash"} or set(kinds) - set(KINDS):
        parser.error("unknown scenario or kind")
    why = cluster_missing() or incumbents.missing()
    if why is not None:
        print(f"cannot run the comparison: {why}")
        return 1
    if args.png:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            print("the picture needs matplotlib: pip install -e '.[plot]' (or --png '')")
            return 1
    from cluster.scenarios import FailoverLab, format_checks, format_table, format_timeline

    began = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {message}", flush=True)

    pairs: list[Pair] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ipfailover-compare-") as tmp:
        workdir = Path(tmp)
        with FailoverLab(workdir, say=say) as world:
            lab, cluster = world.world
            cli = incumbents.install_cli(lab)
            token_ms = cluster.token_ms
            for kind in kinds:
                if kind == "eip":
                    ours_eip, theirs_eip = eip_cases(lab, cli)
                    world.cases[OURS[kind]] = ours_eip
                    world.cases[THEIRS[kind]] = theirs_eip
                else:
                    ours_case = world.case(OURS[kind])
                    world.cases[THEIRS[kind]] = theirs_case(kind, lab, cli, ours_case)
                for scenario in scenarios:
                    results = []
                    for name in (OURS[kind], THEIRS[kind]):
                        try:
                            result = world.run(name, scenario)
                        except Exception as err:
                            say(f"   {name} {scenario}: {type(err).__name__}: {err}")
                            failed.append(f"{name} {scenario}")
                            break
                        print(format_timeline(result))
                        print(format_checks(result), flush=True)
                        if not result.ok:
                            failed.append(f"{name} {scenario}")
                        results.append(result)
                    if len(results) == 2:
                        samples = [
                            read_samples(workdir / f"probe-{n}-{scenario}.jsonl")
                            for n in (OURS[kind], THEIRS[kind])
                        ]
                        pairs.append(
                            Pair(kind, scenario, results[0], results[1], samples[0], samples[1])
                        )
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print("\nclient-observed outages, ours:")
    print(format_table([p.ours for p in pairs]))
    print("\nthe same with the incumbents, as the SUSE and Red Hat guides configure them:")
    print(format_table([p.theirs for p in pairs]))
    print(f"\nside by side (load average at the end: {load}):")
    print(comparison(pairs, token_ms))
    if args.png and pairs:
        path = Path(args.png)
        draw(pairs, path)
        print(f"\npicture: {path}")
    print("\ncomparison done" if not failed else f"\nFAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
