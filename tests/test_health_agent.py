"""aws-health as Pacemaker runs it: real agent processes in the lab's nodes (OCF_RESKEY_*, the
action in argv[1], the lab's IMDS with the events a test sets), with stand-ins for the cluster's
tools on PATH (tests/health_tools: one JSON file is the cluster). The module that talks to the
real tools is tested against them in tests/test_health_cluster.py."""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import pytest

from agentkit import (
    EXPECTED_SEQUENCE,
    OCF_11_RNG,
    PYTHONS,
    RA_API_DTD,
    RESOURCE_AGENTS_RNG,
    ocf_tester,
    run_sequence,
    xmllint,
)
from agentkit import agent as agent_path
from lab import Lab
from lab.imds import scheduled_event
from lab.records import CLEAN_PATH, AgentResult

TOOLS = Path(__file__).resolve().parent / "health_tools"
HEALTH = "#health-aws"
CLAIM = "aws-health-event"
HOLD = "aws-health-hold"
CLONE = """<resources><clone id="health-clone"><meta_attributes id="health-clone-meta">
<nvpair id="health-clone-meta-a" name="allow-unhealthy-nodes" value="{allow}"/></meta_attributes>
<primitive id="health" class="ocf" provider="ipfailover" type="aws-health"/></clone></resources>"""
BASE = {"check_api": "false", "lead_time": "600", "hold_time": "0"}
SETTLE = 5.0  # the agent's minimum settle time (interval 1 s in these tests)


class FakeCluster:
    def __init__(self, path: Path, nodes: tuple[str, ...] = ("a", "b")) -> None:
        self.path = path
        self.write(
            {
                "nodes": {n: {"online": True} for n in nodes},
                "attrs": {},
                "resources": CLONE.format(allow="true"),
                "version": "2.1.5",
            }
        )

    def read(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path.read_text())
        return data

    def write(self, data: dict[str, Any]) -> None:
        self.path.write_text(json.dumps(data))

    def change(self, **changes: Any) -> None:
        data = self.read()
        data.update(changes)
        self.write(data)

    def attrs(self, node: str) -> dict[str, str]:
        result: dict[str, str] = self.read()["attrs"].get(node, {})
        return result

    def set_attr(self, node: str, name: str, value: Optional[str]) -> None:
        data = self.read()
        attrs = data["attrs"].setdefault(node, {})
        if value is None:
            attrs.pop(name, None)
        else:
            attrs[name] = value
        self.write(data)

    def set_node(self, node: str, **flags: bool) -> None:
        data = self.read()
        data["nodes"][node].update(flags)
        self.write(data)


@pytest.fixture
def fake(tmp_path: Path) -> FakeCluster:
    return FakeCluster(tmp_path / "cluster.json")


def run(
    lab: Lab,
    fake: FakeCluster,
    action: str,
    node: str = "a",
    *,
    params: Optional[dict[str, str]] = None,
    interval_ms: Optional[int] = None,
    python: Optional[str] = None,
) -> AgentResult:
    if action == "monitor" and interval_ms is None:
        interval_ms = 1000
    return lab.run_agent(
        node,
        agent_path("aws-health"),
        action,
        {**BASE, **(params or {})},
        interval_ms=interval_ms,
        extra_env={
            "PATH": f"{TOOLS}:{CLEAN_PATH}",
            "HEALTH_FAKE_CLUSTER": str(fake.path),
            "OCF_RESKEY_CRM_meta_on_node": node,
            "OCF_RESOURCE_INSTANCE": "health:0",
        },
        **({"python": python} if python else {}),
    )


def event_in(seconds: float, code: str = "system-reboot", **kw: Any) -> dict[str, str]:
    return scheduled_event(code, datetime.now(timezone.utc) + timedelta(seconds=seconds), **kw)


def started(lab: Lab, fake: FakeCluster, *nodes: str) -> None:
    for node in nodes:
        result = run(lab, fake, "start", node)
        assert result.rc == 0, result.stderr


# ---- meta-data and the OCF sequence -------------------------------------------------------------


def test_meta_data_is_valid_against_the_dtd_and_both_relaxng_schemas(
    lab: Lab, fake: FakeCluster
) -> None:
    result = run(lab, fake, "meta-data")
    assert result.rc == 0
    for path, args in (
        (RA_API_DTD, ("--valid",)),
        (RESOURCE_AGENTS_RNG, ("--relaxng", str(RESOURCE_AGENTS_RNG))),
        (OCF_11_RNG, ("--relaxng", str(OCF_11_RNG))),
    ):
        if path.exists():
            xmllint(result.stdout, *args)
    assert 'name="lead_time"' in result.stdout and 'interval="10s"' in result.stdout


@pytest.mark.parametrize("python", PYTHONS)
def test_ocf_tester_sequence(lab: Lab, fake: FakeCluster, python: str) -> None:
    def step(action: str, interval: Optional[int]) -> AgentResult:
        return run(lab, fake, action, interval_ms=interval, python=python)

    assert run_sequence(step) == EXPECTED_SEQUENCE
    assert fake.attrs("a") == {}  # stop deleted what start and monitor set


# ---- events -> #health-aws ----------------------------------------------------------------------


def test_start_sets_green_on_a_positive_read_and_stop_deletes(lab: Lab, fake: FakeCluster) -> None:
    started(lab, fake, "a")
    assert fake.attrs("a") == {HEALTH: "green"}
    assert run(lab, fake, "monitor").rc == 0
    assert run(lab, fake, "stop").rc == 0
    assert fake.attrs("a") == {}
    assert run(lab, fake, "monitor").rc == 7


def test_start_sets_nothing_while_imds_is_unreadable(lab: Lab, fake: FakeCluster) -> None:
    lab.set_imds_fault("a", "disabled")
    result = run(lab, fake, "start")
    assert result.rc == 0, result.stderr
    assert HEALTH not in fake.attrs("a")
    lab.set_imds_fault("a", None)
    assert run(lab, fake, "monitor").rc == 0
    assert fake.attrs("a")[HEALTH] == "green"


def test_a_due_event_claims_settles_and_turns_red(lab: Lab, fake: FakeCluster) -> None:
    started(lab, fake, "a", "b")
    event = event_in(300)  # due: lead_time is 600
    lab.set_instance_events("a", scheduled=[event])
    assert run(lab, fake, "monitor").rc == 0
    attrs = fake.attrs("a")
    assert attrs[HEALTH] == "green" and attrs[HOLD] == "settling"
    nb = datetime.strptime(event["NotBefore"], "%d %b %Y %H:%M:%S GMT")
    assert int(attrs[CLAIM]) == int(nb.replace(tzinfo=timezone.utc).timestamp())
    time.sleep(SETTLE)
    result = run(lab, fake, "monitor")
    assert result.rc == 0  # red is not a failure
    assert fake.attrs("a")[HEALTH] == "red"
    assert HOLD not in fake.attrs("a")
    # gone, and hold_time 0: green again, the claim withdrawn
    lab.set_instance_events("a")
    assert run(lab, fake, "monitor").rc == 0
    assert fake.attrs("a") == {HEALTH: "green"}


def test_events_not_active_or_not_due_leave_it_green(lab: Lab, fake: FakeCluster) -> None:
    started(lab, fake, "a", "b")
    lab.set_instance_events(
        "a",
        scheduled=[event_in(3600), event_in(60, "instance-stop", state="canceled")],
        rebalance={"noticeTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")},
    )
    first, second = run(lab, fake, "monitor"), run(lab, fake, "monitor")
    assert (first.rc, second.rc) == (0, 0)
    assert fake.attrs("a") == {HEALTH: "green"}
    # each ignored event is logged, once
    assert "'canceled', not active: ignored" in first.stderr
    assert "rebalance recommendation" in first.stderr
    assert "ignored" not in second.stderr


def test_a_spot_notice_turns_red_without_lead_time(lab: Lab, fake: FakeCluster) -> None:
    started(lab, fake, "a", "b")
    when = (datetime.now(timezone.utc) + timedelta(seconds=120)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lab.set_instance_events("a", spot={"action": "terminate", "time": when})
    params = {"lead_time": "0"}
    assert run(lab, fake, "monitor", params=params).rc == 0
    assert fake.attrs("a")[HOLD] == "settling"
    time.sleep(SETTLE)
    assert run(lab, fake, "monitor", params=params).rc == 0
    assert fake.attrs("a")[HEALTH] == "red"


@pytest.mark.parametrize("mode", ["down", "disabled", "garbage"])
def test_an_imds_fault_keeps_red_and_keeps_green(lab: Lab, fake: FakeCluster, mode: str) -> None:
    started(lab, fake, "a", "b")
    lab.set_instance_events("a", scheduled=[event_in(60)])
    run(lab, fake, "monitor")
    time.sleep(SETTLE)
    run(lab, fake, "monitor")
    assert fake.attrs("a")[HEALTH] == "red"
    lab.set_instance_events("a")  # the event is gone, but IMDS cannot say so
    lab.set_imds_fault("a", mode)
    result = run(lab, fake, "monitor")
    assert result.rc == 0
    assert fake.attrs("a")[HEALTH] == "red"
    assert "keeping red" in result.stderr
    # and green stays green (b has an event nobody can read)
    lab.set_imds_fault("b", mode)
    lab.set_instance_events("b", scheduled=[event_in(60)])
    assert run(lab, fake, "monitor", node="b").rc == 0
    assert fake.attrs("b") == {HEALTH: "green"}


# ---- safety -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "peer", [{"online": False}, {"standby": True}, {"maintenance": True}, {"health": None}]
)
def test_no_safe_target_holds_visibly_and_stays_green(
    lab: Lab, fake: FakeCluster, peer: dict[str, Any]
) -> None:
    started(lab, fake, "a", "b")
    if "health" in peer:
        fake.set_attr("b", HEALTH, None)
    else:
        fake.set_node("b", **peer)
    lab.set_instance_events("a", scheduled=[event_in(60)])
    run(lab, fake, "monitor")
    time.sleep(SETTLE)
    result = run(lab, fake, "monitor")
    assert result.rc == 0
    assert fake.attrs("a")[HEALTH] == "green"
    assert fake.attrs("a")[HOLD] == "no-safe-target"
    assert "no node can take over" in result.stderr


def test_the_safe_condition_on_the_target(lab: Lab, fake: FakeCluster) -> None:
    params = {"safe_attribute": "hana_prd_sync_state", "safe_value": "SOK"}
    started(lab, fake, "a", "b")
    fake.set_attr("b", "hana_prd_sync_state", "SFAIL")
    lab.set_instance_events("a", scheduled=[event_in(60)])
    run(lab, fake, "monitor", params=params)
    time.sleep(SETTLE)
    run(lab, fake, "monitor", params=params)
    assert fake.attrs("a")[HOLD] == "no-safe-target"
    fake.set_attr("b", "hana_prd_sync_state", "SOK")
    run(lab, fake, "monitor", params=params)
    assert fake.attrs("a")[HEALTH] == "red"


def test_two_nodes_with_events_one_goes_red_by_the_tie_break(lab: Lab, fake: FakeCluster) -> None:
    """Same NotBefore on both nodes of a two-node cluster: "a" goes first by name (b is its
    target); "b" waits, visibly, and stays green."""
    started(lab, fake, "a", "b")
    event = event_in(60)
    lab.set_instance_events("a", scheduled=[event])
    lab.set_instance_events("b", scheduled=[{**event, "EventId": "instance-event-2"}])
    for node in ("b", "a"):
        run(lab, fake, "monitor", node=node)
    time.sleep(SETTLE)
    for node in ("b", "a", "b"):
        assert run(lab, fake, "monitor", node=node).rc == 0
    assert fake.attrs("a")[HEALTH] == "red"
    assert fake.attrs("b")[HEALTH] == "green"
    assert fake.attrs("b")[HOLD] == "waiting-for-a"


def test_red_at_the_same_time_as_an_earlier_claim_backs_off(lab: Lab, fake: FakeCluster) -> None:
    """The last line of the race: b turns red with an earlier claim just as a writes its red
    (staged by the stand-in attrd_updater). a reads again after its write and backs off."""
    started(lab, fake, "a", "b")
    lab.set_instance_events("a", scheduled=[event_in(60)])
    run(lab, fake, "monitor")
    time.sleep(SETTLE)
    earlier = str(int(time.time()))
    fake.change(
        on_update={
            "node": "a",
            "name": HEALTH,
            "value": "red",
            "set": {"b": {HEALTH: "red", CLAIM: earlier}},
        }
    )
    result = run(lab, fake, "monitor")
    assert result.rc == 0
    attrs = fake.attrs("a")
    assert attrs[HEALTH] == "green" and attrs[HOLD] == "backed-off-b"
    assert "backed off" in result.stderr
    # and it waits while b is red
    run(lab, fake, "monitor")
    assert fake.attrs("a")[HOLD] == "waiting-for-b"


# ---- validate-all -------------------------------------------------------------------------------


def test_validate_all_checks_the_clone_and_pacemaker(lab: Lab, fake: FakeCluster) -> None:
    assert run(lab, fake, "validate-all").rc == 0
    fake.change(resources=CLONE.format(allow="false"))
    result = run(lab, fake, "validate-all")
    assert result.rc == 6 and "allow-unhealthy-nodes=true" in (result.exit_reason or "")
    fake.change(
        resources='<resources><primitive id="health" class="ocf" provider="ipfailover" '
        'type="aws-health"/></resources>'
    )
    assert run(lab, fake, "validate-all").rc == 6
    fake.change(cib_down=True)  # no CIB to read: nothing to refuse
    assert run(lab, fake, "validate-all").rc == 0
    fake.change(version="2.1.2")
    result = run(lab, fake, "validate-all")
    assert result.rc == 5 and "2.1.3" in (result.exit_reason or "")


def test_bad_parameters_are_refused_in_every_action(lab: Lab, fake: FakeCluster) -> None:
    for params in ({"safe_attribute": "x"}, {"api_attribute": "#health-x"}, {"lead_time": "-1"}):
        for action in ("validate-all", "start", "monitor"):
            assert run(lab, fake, action, params=params).rc == 6, (params, action)


# ---- the API check ------------------------------------------------------------------------------

SECIP = (
    '<primitive id="{id}" class="ocf" provider="ipfailover" type="aws-secip">'
    '<instance_attributes id="{id}-ia">'
    '<nvpair id="{id}-ip" name="ip" value="{ip}"/>'
    '<nvpair id="{id}-ep" name="endpoint_url" value="{endpoint}"/>'
    '<nvpair id="{id}-eip" name="elastic_ip_allocation_id" value="{eip}"/>'
    "</instance_attributes></primitive>"
)


def with_ip_resources(lab: Lab, fake: FakeCluster) -> None:
    ips = "".join(
        SECIP.format(id=f"vip{n}", ip=f"10.0.1.{50 + n}", endpoint=lab.endpoint_url,
                     eip=lab.allocate_eip())
        for n in (1, 2)
    )  # fmt: skip
    fake.change(resources=CLONE.format(allow="true").replace("</resources>", ips + "</resources>"))


def test_the_api_check_runs_the_ip_agents_checks_once_per_action(
    lab: Lab, fake: FakeCluster
) -> None:
    with_ip_resources(lab, fake)
    params = {"check_api": "true", "api_interval": "60"}
    assert run(lab, fake, "start", params=params).rc == 0
    assert "aws-api-ok" not in fake.attrs("a")  # start does not check the API
    since = time.time()
    assert run(lab, fake, "monitor", params=params).rc == 0
    assert fake.attrs("a")["aws-api-ok"] == "1"
    calls = [c.action for c in lab.calls(node="a", since=since)]
    # both resources' reads, but the AssociateAddress DryRun once for the one principal
    assert calls.count("AssociateAddress") == 1, calls
    assert calls.count("DescribeNetworkInterfaces") >= 2
    assert lab.holders("10.0.1.51") == set() and lab.holders("10.0.1.52") == set()  # no change
    # not due again before api_interval
    since = time.time()
    assert run(lab, fake, "monitor", params=params).rc == 0
    assert lab.calls(node="a", since=since) == []


def test_a_failed_api_check_is_a_preference_never_a_failure(lab: Lab, fake: FakeCluster) -> None:
    with_ip_resources(lab, fake)
    params = {"check_api": "true", "api_interval": "60"}
    started(lab, fake, "b")
    assert run(lab, fake, "start", params=params).rc == 0
    lab.set_fault("AssociateAddress", "error", code="UnauthorizedOperation", status=403)
    result = run(lab, fake, "monitor", params=params)
    assert result.rc == 0
    assert fake.attrs("a")["aws-api-ok"] == "0"
    assert fake.attrs("a")[HEALTH] == "green"  # never a health attribute
    assert "API check failed" in result.stderr and "AssociateAddress" in result.stderr


def test_resource_agents_ocf_tester_outside_a_cluster(lab: Lab) -> None:
    """The real ocf-tester, with the real (idle) Pacemaker tools: no cluster runs in the node, so
    every attribute write fails; the agent logs it and keeps to the OCF protocol (0 while started,
    7 when not), never failing a monitor or a stop for it."""
    if shutil.which("ocf-tester") is None:
        pytest.skip("ocf-tester is not installed")
    proc = ocf_tester(lab, "a", agent_path("aws-health"), {"check_api": "false"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed all tests" in proc.stdout + proc.stderr
