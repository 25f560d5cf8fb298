"""Failover at scale, the part small enough for the suite (issue 16; `make bench-scale` runs
the rest): one aws-overlayip start taking over an address routed by 100 route tables while
EC2's ReplaceRoute bucket runs dry. Asserted: no failure, one ReplaceRoute answered per table
(retries of throttled calls, never repeats of answered ones), one DescribeRouteTables for all
tables plus the final check, every table routing to the new node. Not timed (the benchmark
prints the time against the bucket's bound).
"""

from __future__ import annotations

from lab import Lab
from lab.bench_scale import many_tables_start
from lab.throttle import Limit, ThrottleModel


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
