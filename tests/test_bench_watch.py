"""A smoke run of the watching benchmark (lab.bench_watch, ``make bench-watch``): a few
resources on a short schedule, without and with the routing role. It checks what the figures
rest on (every monitor ran and succeeded, the deep ones made exactly one EC2 request each, with
the routing role one AssumeRole each too, the shallow ones none), not the figures themselves:
those are the benchmark's to print."""

from __future__ import annotations

import sys
from typing import Any

from lab.bench_watch import routing_role, table, watch


def test_bench_watch_smoke(lab: Any) -> None:
    result = watch(
        lab,
        duration=8.0,
        overlay=2,
        secip=1,
        interval=2.0,
        deep_interval=4.0,
        parallel=2,
        python=sys.executable,
        log=lambda *_: None,
    )
    shallow, deep = result.kinds["shallow"], result.kinds["deep"]
    assert shallow.cpu and deep.cpu
    assert (shallow.failed, deep.failed) == (0, 0)
    assert sum(result.ec2_calls.values()) == len(deep.cpu)
    assert set(result.ec2_calls) <= {"DescribeRouteTables", "DescribeNetworkInterfaces"}
    text = table(result)
    assert "cores" in text
    assert "OCF_CHECK_LEVEL=10" in text


def test_bench_watch_with_the_routing_role(lab: Any) -> None:
    params = routing_role(lab)
    result = watch(
        lab,
        duration=6.0,
        overlay=2,
        secip=0,
        interval=2.0,
        deep_interval=3.0,
        parallel=2,
        extra=params,
        python=sys.executable,
        log=lambda *_: None,
    )
    shallow, deep = result.kinds["shallow"], result.kinds["deep"]
    assert shallow.cpu and deep.cpu
    assert (shallow.failed, deep.failed) == (0, 0)
    assert result.sts_calls == {"AssumeRole": len(deep.cpu)}
    assert result.ec2_calls == {"DescribeRouteTables": len(deep.cpu)}
    assert {s["role_arn"] for s in lab.role_sessions()} == {params["routing_table_role"]}
    assert f"routing_table_role {params['routing_table_role']}" in table(result)
