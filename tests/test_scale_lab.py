"""Failover at scale, the part small enough for the suite (issue 16; `make bench-scale` runs
the rest): one aws-overlayip start taking over an address routed by 100 route tables while
EC2's ReplaceRoute bucket runs dry. Asserted: no failure, one ReplaceRoute answered per table
(retries of throttled calls, never repeats of answered ones), one DescribeRouteTables for all
tables plus the final check, every table routing to the new node. Not timed (the benchmark
prints the time against the bucket's bound). Unit tests: `together` (a start's two EC2 reads at
once), and how the benchmark reads Pacemaker's throttle modes and
says which limit bound a run.
"""

from __future__ import annotations

import threading

import pytest

from ipfailover.runtime import together
from lab import Lab
from lab.bench_scale import (
    ClusterRun,
    many_tables_start,
    modes_from,
    monitors_between,
    start_durations,
)
from lab.throttle import Limit, ThrottleModel
from ocf_shim import ConfigError, GenericError


def test_start_with_100_route_tables_drains_the_bucket_without_failing(lab: Lab) -> None:
    # 20 tokens and 40 a second: 80 of the 100 calls wait for the refill (about 2 s)
    lab.set_throttle(ThrottleModel(limits={"ReplaceRoute": Limit(20, 40)}))
    ip = "192.168.200.10"
    run = many_tables_start(lab, count=100, ip=ip)
    assert run.rc == 0, run.exit_reason
    assert run.calls["ReplaceRoute"] == 100
    assert run.throttled > 0  # the bucket did bind
    assert run.calls.get("CreateRoute", 0) == 0
    assert run.calls["DescribeRouteTables"] <= 2
    assert run.bucket_floor == ThrottleModel(limits={"ReplaceRoute": Limit(20, 40)}).floor(
        "ReplaceRoute", 100
    )
    targets = lab.route_targets(f"{ip}/32", run.table_ids)
    assert len(targets) == 100
    assert set(targets.values()) == {lab.nodes["a"].eni_id}


# -- the parts the benchmark relies on (unit) ------------------------------------------------


def test_together_runs_both_at_once_and_returns_both() -> None:
    both_running = threading.Barrier(2, timeout=5)  # broken (an error) unless both wait at once

    def first() -> str:
        both_running.wait()
        return "tables"

    def second() -> int:
        both_running.wait()
        return 7

    assert together(first, second) == ("tables", 7)


def test_together_raises_the_first_ones_error_before_the_seconds() -> None:
    def refused() -> None:
        raise GenericError("DescribeNetworkInterfaces refused")

    def missing() -> None:
        raise ConfigError("route table(s) rtb-1 not found")

    with pytest.raises(ConfigError):
        together(missing, refused)
    with pytest.raises(GenericError, match="refused"):
        together(lambda: "tables", refused)


HEAD = "b pacemaker-controld  [35] (throttle_send_command) \tinfo: New throttle mode:"
LOG = "".join(
    f"Dec 04 {stamp} {HEAD} {mode} load (was {was})\n"
    for stamp, mode, was in (
        ("02:29:04.777", "negligible", "undetermined"),
        ("02:31:04.777", "low", "negligible"),
        ("02:33:04.777", "medium", "low"),
    )
)


def test_the_throttle_mode_in_force_at_the_crash_and_after() -> None:
    from cluster.timeline import parse_stamp

    assert modes_from(LOG, parse_stamp("Dec 04 02:30:00.000")) == ["negligible", "low", "medium"]
    assert modes_from(LOG, parse_stamp("Dec 04 02:32:00.000")) == ["low", "medium"]
    assert modes_from(LOG, parse_stamp("Dec 04 02:34:00.000")) == ["medium"]


def test_which_limit_bound_a_run() -> None:
    def run(modes: list[str], parallel: int) -> ClusterRun:
        r = ClusterRun("x", ThrottleModel(), 4, {}, 30, max_parallel=parallel, modes=modes)
        r.machine_floor = 20.0
        return r

    assert run(["negligible"], 4).bound().startswith("node-action-limit (4)")
    assert run(["negligible", "low"], 2).bound().startswith("load-threshold")
    assert run(["negligible"], 2).bound().startswith("the CPU")


def test_where_a_cluster_runs_time_goes() -> None:
    from cluster.timeline import Event, parse_stamp

    found = [
        Event(10.0, "b", "rsc_ov_00: start on b initiated"),
        Event(10.5, "b", "rsc_sec_00: start on b initiated"),
        Event(11.5, "b", "rsc_ov_00: start on b: ok"),
        Event(13.0, "b", "rsc_sec_00: start on b: ok"),
    ]
    assert start_durations(found, "b") == {"rsc_ov_00": 1.5, "rsc_sec_00": 2.5}
    head = "b pacemaker-controld  [35] (te_rsc_command) \tnotice: Initiating"
    log = "".join(
        f"Dec 04 {stamp} {head} {op} operation rsc_ov_00_{op}_0 on {node}\n"
        for stamp, op, node in (
            ("02:29:04.000", "monitor", "b"),  # before
            ("02:29:05.000", "monitor", "b"),
            ("02:29:06.000", "start", "b"),
            ("02:29:07.000", "monitor", "a"),
            ("02:29:08.000", "monitor", "b"),
        )
    )
    since, until = parse_stamp("Dec 04 02:29:04.500"), parse_stamp("Dec 04 02:29:09.000")
    assert monitors_between(log, "b", since, until) == 2
