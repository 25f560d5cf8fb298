"""The pure parts of the aws-health cluster scenario (cluster.health, cluster.timeline,
cluster.scenarios' goal line): the example as the lab loads it, the attribute's log lines, the
verdict against the planned move."""

from __future__ import annotations

from typing import Optional

import pytest

from cluster.health import health_crm
from cluster.scenarios import GOAL_MARGIN, Result, format_health_goal
from cluster.timeline import describe
from lab.traffic import Outage


class FakeLab:
    endpoint_url = "http://127.0.0.1:4566"


@pytest.mark.parametrize("strategy", ["migrate-on-red", "custom"])
def test_the_lab_loads_the_example_with_its_endpoint_and_a_short_monitor(strategy: str) -> None:
    crm = health_crm(FakeLab(), strategy)  # type: ignore[arg-type]
    primitive, clone, prop = crm.splitlines()
    assert primitive.startswith("primitive rsc_aws_health ocf:ipfailover:aws-health params ")
    assert "endpoint_url=http://127.0.0.1:4566" in primitive
    ops = primitive.split(" op ")[1:]
    assert "monitor timeout=30s interval=2s" in ops
    assert len(ops) == 3  # start, stop and the one monitor: aws-health has no deeper check
    assert (
        clone
        == "clone cln_aws_health rsc_aws_health meta allow-unhealthy-nodes=true interleave=true"
    )
    assert prop == f"property cib-bootstrap-options: node-health-strategy={strategy}"


def test_health_attribute_changes_are_in_the_timeline() -> None:
    assert describe("Setting #health-aws[a]: green -> red ", []) == "a: #health-aws green -> red"
    assert describe("Setting #health-aws[b]: (unset) -> green | from a", []) == (
        "b: #health-aws (unset) -> green"
    )
    assert describe("Setting aws-api-ok[a]: (unset) -> 1", []) is None  # not health


def result(scenario: str, seconds: float, not_before: Optional[float] = None) -> Result:
    outage = Outage(
        fault=100.0,
        old="a",
        new="b",
        first_new=100.0 + seconds,
        steady=100.0 + seconds,
        longest_silence=seconds,
        failed=int(seconds / 0.05),
        answered_old=0,
        relapses=0,
        stray=0,
    )
    found = Result("aws-secip", scenario, "a", "b", 100.0, outage, [])
    found.not_before = not_before
    return found


def test_the_goal_is_the_planned_move_plus_the_margin() -> None:
    move = result("move", 1.5)
    within = result("reboot", 1.5 + GOAL_MARGIN - 0.01, not_before=110.0)
    baseline = result("reboot-baseline", 2.0)
    line = format_health_goal([move, within, baseline]).splitlines()[-1]
    assert "met" in line and "MISSED" not in line
    assert "8.0s before NotBefore" in line
    assert "without aws-health 2.00s" in line
    late = result("reboot", 1.5 + GOAL_MARGIN + 0.01, not_before=101.0)
    line = format_health_goal([move, late]).splitlines()[-1]
    assert "MISSED" in line and "AFTER NotBefore" in line
    assert format_health_goal([move, baseline]) == ""
