"""aws-eni run as Pacemaker runs it, in the lab: real processes, OCF environment, node namespaces
with their own IMDS and hot-plugged links, the simulated EC2 with attach/detach transitions.
Assertions are on exit codes, on the attachment in the simulator and on ``ip -json`` in the
nodes (links, addresses, rules, the policy routing table, ``ip route get``)."""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from pathlib import Path
from typing import Any, Optional

import pytest

from agentkit import EXPECTED_SEQUENCE, PYTHONS, agent, ocf_tester, run_sequence

AGENT = agent("aws-eni")
TABLE = 5001  # the defaults for device_index 1
PRIORITY = 5001
OUTSIDE = "198.51.100.7"  # a destination off every subnet (TEST-NET-2): routed, never sent


@pytest.fixture
def rsctmp(tmp_path: Path) -> Path:
    """HA_RSCTMP of the agent runs (Pacemaker sets it to /run/resource-agents)."""
    path = tmp_path / "rsctmp"
    path.mkdir()
    return path


def params(lab: Any, eni: Any, **extra: str) -> dict[str, str]:
    base = {"eni_id": eni.id, "endpoint_url": lab.endpoint_url}
    base.update(extra)
    return base


def run(lab: Any, node: str, action: str, p: dict[str, str], rsc: Path, **kw: Any) -> Any:
    return lab.run_agent(node, AGENT, action, p, extra_env={"HA_RSCTMP": str(rsc)}, **kw)


# ----------------------------------------------------------------------------- state readers


def attachment(lab: Any, eni_id: str) -> Optional[tuple[str, str]]:
    """(instance id, status) of the ENI's attachment as EC2 reports it; None when available."""
    described = lab.eni(eni_id)
    att = described.get("Attachment")
    if not att:
        assert described["Status"] == "available"
        return None
    return str(att["InstanceId"]), str(att["Status"])


def link_of(lab: Any, node: str, mac: str) -> Optional[dict[str, Any]]:
    links = [link for link in lab.ip_json(node, "link", "show") if link.get("address") == mac]
    assert len(links) <= 1
    return links[0] if links else None


def os_state(lab: Any, node: str, eni: Any, table: int = TABLE) -> dict[str, Any]:
    """What the node's OS has of the ENI: its link, addresses, our rules and our table (the
    default rule priority equals the default table number)."""
    link = link_of(lab, node, eni.mac)
    addresses: set[str] = set()
    if link is not None:
        for entry in lab.ip_json(node, "addr", "show", "dev", link["ifname"]):
            addresses |= {
                f"{a['local']}/{a['prefixlen']}"
                for a in entry.get("addr_info", [])
                if a.get("scope") != "link"
            }
    rules = {
        (int(r["priority"]), f"{r.get('src', 'all')}", str(r.get("table")))
        for family in ("-4", "-6")
        for r in lab.ip_json(node, family, "rule", "show")
        if str(r.get("table")) == str(table) or int(r["priority"]) == table
    }
    routes = {
        (_net(r["dst"]), r.get("gateway"), r.get("dev"))
        for family in ("-4", "-6")
        for r in table_routes(lab, node, family, table)
    }
    return {
        "link": link["ifname"] if link else None,
        "up": bool(link and "UP" in link["flags"]),
        "addresses": addresses,
        "rules": rules,
        "routes": routes,
    }


def active_state(eni: Any, link: str, ipv6: tuple[str, ...] = ()) -> dict[str, Any]:
    ips = [eni.ip, *eni.secondary_ips]
    return {
        "link": link,
        "up": True,
        "addresses": {f"{ip}/24" for ip in ips} | {f"{ip}/64" for ip in ipv6},
        "rules": {(PRIORITY, ip, str(TABLE)) for ip in [*ips, *ipv6]},
        "routes": {("10.0.3.0/24", None, link), ("default", "10.0.3.1", link)},
    }


def table_routes(lab: Any, node: str, family: str, table: int) -> list[dict[str, Any]]:
    """``ip -json route show table T``; the kernel has no IPv6 table until a route used it."""
    done = lab.ns_exec(node, ["ip", "-json", family, "route", "show", "table", str(table)])
    if done.returncode != 0:
        assert "table does not exist" in done.stderr, done.stderr
        return []
    result: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    return result


def _net(dst: str) -> str:
    return dst if dst == "default" else str(ipaddress.ip_network(dst, strict=False))


NOTHING: dict[str, Any] = {
    "link": None,
    "up": False,
    "addresses": set(),
    "rules": set(),
    "routes": set(),
}


def route_get(lab: Any, node: str, dst: str, src: Optional[str] = None) -> dict[str, Any]:
    args = ["route", "get", dst] + (["from", src] if src else [])
    result: dict[str, Any] = lab.ip_json(node, *args)[0]
    return result


def actions(lab: Any, node: str) -> list[str]:
    return [call.action for call in lab.calls(node)]


# ----------------------------------------------------------------------------- the ocf-tester way


@pytest.mark.parametrize("python", PYTHONS)
def test_ocf_tester_sequence(lab: Any, rsctmp: Path, python: str) -> None:
    eni = lab.create_eni(subnet="c", secondary_ips=1)
    p = params(lab, eni)
    got = run_sequence(
        lambda action, interval: run(
            lab, "a", action, p, rsctmp, interval_ms=interval, python=python
        )
    )
    assert got == EXPECTED_SEQUENCE
    assert attachment(lab, eni.id) is None
    assert os_state(lab, "a", eni) == NOTHING
    assert list(rsctmp.iterdir()) == []


def test_real_ocf_tester(lab: Any) -> None:
    eni = lab.create_eni(subnet="c")
    result = ocf_tester(lab, "a", AGENT, params(lab, eni))
    assert result.returncode == 0, result.stdout + result.stderr
    assert attachment(lab, eni.id) is None
    assert os_state(lab, "a", eni) == NOTHING


# ----------------------------------------------------------------------------- failover


@pytest.mark.parametrize("python", PYTHONS)
def test_failover_a_b_a(lab: Any, rsctmp: Path, python: str) -> None:
    eni = lab.create_eni(subnet="c", secondary_ips=1)
    p = params(lab, eni)
    a, b = lab.nodes["a"].instance_id, lab.nodes["b"].instance_id
    timing = lab.timing()

    def go(node: str, action: str, **kw: Any) -> Any:
        return run(lab, node, action, p, rsctmp, python=python, **kw)

    def check_reply_path(node: str) -> None:
        link = os_state(lab, node, eni)["link"]
        for src in (eni.ip, *eni.secondary_ips):
            got = route_get(lab, node, OUTSIDE, src)
            assert (got["dev"], got.get("gateway")) == (link, "10.0.3.1")
        # Traffic from the node's own address still uses eth0.
        assert route_get(lab, node, OUTSIDE)["dev"] == "eth0"

    assert attachment(lab, eni.id) is None
    assert os_state(lab, "a", eni) == os_state(lab, "b", eni) == NOTHING

    assert go("a", "start").rc == 0
    assert attachment(lab, eni.id) == (a, "attached")
    assert os_state(lab, "a", eni) == active_state(eni, "eth1")
    assert os_state(lab, "b", eni) == NOTHING
    check_reply_path("a")
    assert go("a", "monitor", interval_ms=10000).rc == 0
    assert go("b", "monitor").rc == 7

    # a crashes (nothing runs its stop); b takes the ENI over: detach from a, attach to b.
    moved = go("b", "start")
    assert moved.rc == 0, moved.stderr
    assert attachment(lab, eni.id) == (b, "attached")
    assert os_state(lab, "b", eni) == active_state(eni, "eth1")
    check_reply_path("b")
    # On a the link went with the detach; a's rules stay until a's stop.
    left_on_a = os_state(lab, "a", eni)
    assert left_on_a["link"] is None
    assert left_on_a["rules"] == active_state(eni, "eth1")["rules"]
    assert go("b", "monitor", interval_ms=10000).rc == 0
    assert go("a", "monitor", interval_ms=10000).rc == 7
    # a's late stop cleans a and leaves b's ENI alone.
    assert go("a", "stop").rc == 0
    assert os_state(lab, "a", eni) == NOTHING
    assert attachment(lab, eni.id) == (b, "attached")
    assert os_state(lab, "b", eni) == active_state(eni, "eth1")

    # And back: a planned move.
    assert go("b", "stop").rc == 0
    assert attachment(lab, eni.id) is None
    assert os_state(lab, "b", eni) == NOTHING
    back = go("a", "start")
    assert back.rc == 0
    assert attachment(lab, eni.id) == (a, "attached")
    assert os_state(lab, "a", eni) == active_state(eni, "eth1")
    assert os_state(lab, "b", eni) == NOTHING
    check_reply_path("a")
    assert go("b", "monitor", interval_ms=10000).rc == 7
    assert go("a", "monitor", interval_ms=10000).rc == 0
    # How long the move takes is the benchmark's business (make bench), not an assertion here;
    # that it waited for the simulated detach and attach is.
    assert moved.duration >= timing.detach_delay + timing.attach_delay


def test_ipv6_addresses_rules_and_routes(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c", ipv6_count=1)
    ipv6 = tuple(
        str(a["Ipv6Address"]) for a in lab.eni(eni.id)["Ipv6Addresses"]
    )  # the lab picks it
    assert len(ipv6) == 1
    v6_subnet = _net(lab.subnets["c"].ipv6_cidr)
    p = params(lab, eni, ipv6_gateway="fe80::1")
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    state = os_state(lab, "a", eni)
    expected = active_state(eni, "eth1", ipv6)
    expected["routes"] |= {(v6_subnet, None, "eth1"), ("default", "fe80::1", "eth1")}
    assert state == expected
    got = route_get(lab, "a", "2001:db8:ffff::1", ipv6[0])
    assert (got["dev"], got.get("gateway")) == ("eth1", "fe80::1")
    assert run(lab, "a", "monitor", p, rsctmp, interval_ms=10000).rc == 0
    assert run(lab, "a", "stop", p, rsctmp).rc == 0
    assert os_state(lab, "a", eni) == NOTHING
    assert attachment(lab, eni.id) is None


# ----------------------------------------------------------------------------- a hung holder


def hung_on_a(lab: Any, rsctmp: Path, eni: Any) -> None:
    assert run(lab, "a", "start", params(lab, eni), rsctmp).rc == 0
    lab.hang_detach(eni.id, True)


def test_hung_holder_without_force_fails_in_time_naming_the_stuck_detach(
    lab: Any, rsctmp: Path
) -> None:
    eni = lab.create_eni(subnet="c")
    hung_on_a(lab, rsctmp, eni)
    a = lab.nodes["a"].instance_id
    result = run(lab, "b", "start", params(lab, eni), rsctmp, timeout_ms=6000)
    assert result.rc == 1
    assert not result.timed_out
    assert result.duration < 6
    assert result.exit_reason
    assert a in result.exit_reason
    assert "detaching" in result.exit_reason
    assert "force_detach" in result.exit_reason
    # Nothing was forced: the ENI still hangs on a, b configured nothing.
    assert attachment(lab, eni.id) == (a, "detaching")
    assert actions(lab, "b").count("DetachNetworkInterface") == 1
    assert os_state(lab, "b", eni) == NOTHING


def test_hung_holder_with_force_detach_is_forced_after_a_grace(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c")
    hung_on_a(lab, rsctmp, eni)
    b = lab.nodes["b"].instance_id
    p = params(lab, eni, force_detach="true")
    result = run(lab, "b", "start", p, rsctmp, timeout_ms=10000)
    assert result.rc == 0, result.stderr
    assert result.duration < 10
    # The normal detach came first; the force only after 40 % of the remaining budget.
    assert actions(lab, "b").count("DetachNetworkInterface") == 2
    assert result.duration > 3.0
    assert attachment(lab, eni.id) == (b, "attached")
    assert os_state(lab, "b", eni) == active_state(eni, "eth1")
    assert run(lab, "b", "monitor", p, rsctmp, interval_ms=10000).rc == 0


def test_holder_detaching_slowly_is_waited_for(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c")
    assert run(lab, "a", "start", params(lab, eni), rsctmp).rc == 0
    lab.set_timing(detach_delay=3.0, attach_delay=0.5)
    result = run(lab, "b", "start", params(lab, eni), rsctmp, timeout_ms=20000)
    assert result.rc == 0
    assert 3.5 <= result.duration < 20
    assert attachment(lab, eni.id) == (lab.nodes["b"].instance_id, "attached")


# ----------------------------------------------------------------------------- half-done states


def test_start_repairs_an_eni_attached_here_without_os_configuration(
    lab: Any, rsctmp: Path
) -> None:
    eni = lab.create_eni(subnet="c", secondary_ips=1)
    a = lab.nodes["a"].instance_id
    lab.ec2().attach_network_interface(NetworkInterfaceId=eni.id, InstanceId=a, DeviceIndex=1)
    p = params(lab, eni)
    # Still attaching: not running; start waits for the attachment.
    assert run(lab, "a", "monitor", p, rsctmp).rc == 7
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    assert os_state(lab, "a", eni) == active_state(eni, "eth1")
    assert not {"AttachNetworkInterface", "DetachNetworkInterface"} & set(actions(lab, "a"))


def test_start_while_a_stop_here_is_still_detaching(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c")
    p = params(lab, eni)
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    attachment_id = lab.eni(eni.id)["Attachment"]["AttachmentId"]
    lab.ec2().detach_network_interface(AttachmentId=attachment_id)
    assert attachment(lab, eni.id) == (lab.nodes["a"].instance_id, "detaching")
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    assert attachment(lab, eni.id) == (lab.nodes["a"].instance_id, "attached")
    assert os_state(lab, "a", eni) == active_state(eni, "eth1")


def test_start_while_attaching_to_another_node(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c")
    b = lab.nodes["b"].instance_id
    lab.ec2().attach_network_interface(NetworkInterfaceId=eni.id, InstanceId=b, DeviceIndex=1)
    assert attachment(lab, eni.id) == (b, "attaching")
    result = run(lab, "a", "start", params(lab, eni), rsctmp)
    assert result.rc == 0
    assert attachment(lab, eni.id) == (lab.nodes["a"].instance_id, "attached")
    assert os_state(lab, "a", eni) == active_state(eni, "eth1")
    assert link_of(lab, "b", eni.mac) is None


def test_stop_of_a_half_started_resource(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c")
    a = lab.nodes["a"].instance_id
    lab.ec2().attach_network_interface(NetworkInterfaceId=eni.id, InstanceId=a, DeviceIndex=1)
    p = params(lab, eni)
    assert run(lab, "a", "stop", p, rsctmp).rc == 0  # attaching: detached once attached
    assert attachment(lab, eni.id) is None
    assert os_state(lab, "a", eni) == NOTHING


def test_start_killed_midway_is_finished_by_the_next_start(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c")
    p = params(lab, eni)
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    lab.set_timing(detach_delay=1.0, attach_delay=1.0)
    killed = lab.run_agent(
        "b", AGENT, "start", p, extra_env={"HA_RSCTMP": str(rsctmp)}, kill_after=1.5
    )
    assert killed.killed
    assert run(lab, "b", "start", p, rsctmp).rc == 0
    assert attachment(lab, eni.id) == (lab.nodes["b"].instance_id, "attached")
    assert os_state(lab, "b", eni) == active_state(eni, "eth1")


# ----------------------------------------------------------------------------- stop


def test_stop_leaves_nothing_behind(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c", secondary_ips=2, ipv6_count=1)
    p = params(lab, eni, ipv6_gateway="fe80::1")
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    assert len(list(rsctmp.iterdir())) == 1
    assert run(lab, "a", "stop", p, rsctmp).rc == 0
    assert attachment(lab, eni.id) is None
    assert os_state(lab, "a", eni) == NOTHING
    assert list(rsctmp.iterdir()) == []
    assert run(lab, "a", "stop", p, rsctmp).rc == 0


def test_stop_leaves_an_eni_attached_elsewhere_alone(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c")
    p = params(lab, eni)
    assert run(lab, "b", "start", p, rsctmp).rc == 0
    lab.reset_calls()
    assert run(lab, "a", "stop", p, rsctmp).rc == 0
    assert "DetachNetworkInterface" not in actions(lab, "a")
    assert attachment(lab, eni.id) == (lab.nodes["b"].instance_id, "attached")
    assert os_state(lab, "b", eni) == active_state(eni, "eth1")


def test_stop_with_the_api_down_cleans_the_os_and_fails(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c")
    p = params(lab, eni)
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    lab.set_fault("*", "error", code="InternalError", status=500)
    result = run(lab, "a", "stop", p, rsctmp, timeout_ms=5000)
    assert result.rc == 1
    assert result.duration < 5
    state = os_state(lab, "a", eni)
    assert (state["addresses"], state["rules"], state["routes"]) == (set(), set(), set())
    assert attachment(lab, eni.id) == (lab.nodes["a"].instance_id, "attached")
    lab.clear_faults()
    assert run(lab, "a", "stop", p, rsctmp).rc == 0
    assert attachment(lab, eni.id) is None


# ----------------------------------------------------------------------------- monitor


@pytest.mark.parametrize(
    "damage",
    [
        ("rule", "del", "from", "10.0.3.100", "lookup", str(TABLE), "priority", str(PRIORITY)),
        ("route", "del", "default", "table", str(TABLE)),
        ("route", "flush", "table", str(TABLE)),
        ("addr", "del", "10.0.3.100/24", "dev", "eth1"),
        ("link", "set", "eth1", "down"),
    ],
    ids=["rule", "default-route", "table", "address", "link-down"],
)
def test_monitor_notices_os_state_removed_behind_our_back(
    lab: Any, rsctmp: Path, damage: tuple[str, ...]
) -> None:
    eni = lab.create_eni(subnet="c")
    assert eni.ip == "10.0.3.100"
    p = params(lab, eni)
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    assert lab.ns_exec("a", ["ip", *damage]).returncode == 0
    result = run(lab, "a", "monitor", p, rsctmp, interval_ms=10000)
    assert result.rc == 7
    assert "WARNING" in result.stderr
    # The same without the EC2 check.
    no_api = params(lab, eni, monitor_api="false")
    assert run(lab, "a", "monitor", no_api, rsctmp, interval_ms=10000).rc == 7
    # start repairs it.
    lab.reset_calls()
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    assert "AttachNetworkInterface" not in actions(lab, "a")
    assert os_state(lab, "a", eni) == active_state(eni, "eth1")
    assert run(lab, "a", "monitor", p, rsctmp, interval_ms=10000).rc == 0


def test_monitor_is_one_api_call_and_start_when_started_two(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c")
    p = params(lab, eni)
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    lab.reset_calls()
    assert run(lab, "a", "monitor", p, rsctmp, interval_ms=10000).rc == 0
    assert actions(lab, "a") == ["DescribeNetworkInterfaces"]
    lab.reset_calls()
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    assert actions(lab, "a") == ["DescribeNetworkInterfaces", "DescribeSubnets"]
    lab.reset_calls()
    assert run(lab, "a", "monitor", params(lab, eni, monitor_api="false"), rsctmp).rc == 0
    assert actions(lab, "a") == []


def test_monitor_with_the_api_down_trusts_the_os_side(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c")
    p = params(lab, eni)
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    lab.set_fault("DescribeNetworkInterfaces", "error", code="InternalError", status=500)
    result = run(lab, "a", "monitor", p, rsctmp, interval_ms=10000, timeout_ms=5000)
    assert result.rc == 0
    assert result.duration < 5
    assert "WARNING" in result.stderr
    # A probe on the other node, API down, nothing there: not running, known for sure.
    assert run(lab, "b", "monitor", p, rsctmp, timeout_ms=5000).rc == 7
    # The OS side gone is known for sure, API or not.
    lab.ns_exec("a", ["ip", "rule", "del", "priority", str(PRIORITY)], check=True)
    assert run(lab, "a", "monitor", p, rsctmp, interval_ms=10000, timeout_ms=5000).rc == 7


def test_a_record_that_is_a_fifo_is_ignored_without_hanging(lab: Any, rsctmp: Path) -> None:
    """Reading a FIFO blocks until a writer comes: the record is ignored (a warning), so the
    monitor cannot tell (1, the policy rules exist) and stop cleans up from EC2's facts."""
    eni = lab.create_eni(subnet="c")
    p = params(lab, eni, monitor_api="false")
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    path = rsctmp / f"aws-eni-{eni.id}-{lab.nodes['a'].instance_id}.json"
    assert path.is_file()
    path.unlink()
    os.mkfifo(path)
    result = run(lab, "a", "monitor", p, rsctmp, interval_ms=10000, timeout_ms=5000)
    assert (result.timed_out, result.rc) == (False, 1)
    result = run(lab, "a", "stop", p, rsctmp, timeout_ms=10000)
    assert (result.timed_out, result.rc) == (False, 0)
    assert attachment(lab, eni.id) is None
    assert os_state(lab, "a", eni)["rules"] == set()


@pytest.mark.parametrize("mode", ["down", "disabled"])
def test_stop_without_the_metadata_service_removes_the_os_side(
    lab: Any, rsctmp: Path, mode: str
) -> None:
    """No instance id and no credentials: the OS side goes (from the record), and the stop
    fails with 1 (never 2: ocf_shim/errors.py) because the detach cannot be done."""
    eni = lab.create_eni(subnet="c")
    p = params(lab, eni)
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    assert os_state(lab, "a", eni)["rules"]
    lab.set_imds_fault("a", mode)
    result = run(lab, "a", "stop", p, rsctmp, timeout_ms=10000)
    lab.set_imds_fault("a", None)
    assert (result.timed_out, result.rc) == (False, 1)
    state = os_state(lab, "a", eni)
    assert state["rules"] == set()
    assert state["addresses"] == set()
    assert attachment(lab, eni.id) is not None  # still attached: the next start moves it


def test_monitor_api_false_sees_the_link_go(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c")
    p = params(lab, eni, monitor_api="false")
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    assert run(lab, "a", "monitor", p, rsctmp, interval_ms=10000).rc == 0
    assert run(lab, "b", "start", p, rsctmp).rc == 0  # a "crashed"
    assert run(lab, "a", "monitor", p, rsctmp, interval_ms=10000).rc == 7
    assert run(lab, "b", "monitor", p, rsctmp, interval_ms=10000).rc == 0


# ----------------------------------------------------------------------------- throttling


def test_start_under_50_percent_throttling(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c")
    p = params(lab, eni)
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    lab.set_fault("*", "throttle", rate=0.5)
    result = run(lab, "b", "start", p, rsctmp, timeout_ms=20000)
    assert result.rc == 0, result.stderr
    assert result.duration < 20
    lab.clear_faults()
    assert any(call.status == 503 for call in lab.calls("b"))
    assert attachment(lab, eni.id) == (lab.nodes["b"].instance_id, "attached")
    assert os_state(lab, "b", eni) == active_state(eni, "eth1")


def test_start_under_100_percent_throttling_fails_in_time(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c")
    p = params(lab, eni)
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    lab.set_fault("*", "throttle", rate=1.0)
    result = run(lab, "b", "start", p, rsctmp, timeout_ms=10000)
    assert result.rc == 1
    assert not result.timed_out
    assert result.duration < 10
    assert result.exit_reason
    assert "RequestLimitExceeded" in result.exit_reason
    assert attachment(lab, eni.id) == (lab.nodes["a"].instance_id, "attached")
    assert os_state(lab, "b", eni) == NOTHING


# ----------------------------------------------------------------- validate-all, bad input


def test_validate_all_changes_nothing_and_checks_permissions(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c")
    p = params(lab, eni)
    assert run(lab, "a", "validate-all", p, rsctmp).rc == 0
    assert attachment(lab, eni.id) is None
    assert "AttachNetworkInterface" in actions(lab, "a")  # as a DryRun
    lab.set_fault("AttachNetworkInterface", "error", code="UnauthorizedOperation", status=403)
    result = run(lab, "a", "validate-all", p, rsctmp)
    assert result.rc == 4
    assert result.exit_reason and "ec2:AttachNetworkInterface" in result.exit_reason
    assert attachment(lab, eni.id) is None


def test_eni_in_another_zone_is_wrong_on_this_host(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="b")  # zone b; the nodes are in zone a
    p = params(lab, eni)
    for action in ("validate-all", "start"):
        result = run(lab, "a", action, p, rsctmp)
        assert result.rc == 2
        assert result.exit_reason and lab.subnets["b"].az in result.exit_reason
    assert attachment(lab, eni.id) is None


def test_device_index_taken_on_this_host(lab: Any, rsctmp: Path) -> None:
    eni, other = lab.create_eni(subnet="c"), lab.create_eni(subnet="c")
    a = lab.nodes["a"].instance_id
    lab.ec2().attach_network_interface(NetworkInterfaceId=other.id, InstanceId=a, DeviceIndex=1)
    p = params(lab, eni)
    result = run(lab, "a", "validate-all", p, rsctmp)
    assert result.rc == 2
    assert result.exit_reason and other.id in result.exit_reason
    result = run(lab, "a", "start", p, rsctmp)
    assert result.rc == 2
    assert attachment(lab, eni.id) is None
    # Another device index works next to it.
    assert run(lab, "a", "start", params(lab, eni, device_index="2"), rsctmp).rc == 0
    state = os_state(lab, "a", eni, table=5002)
    assert (state["link"], state["up"]) == ("eth2", True)
    assert {rule[0] for rule in state["rules"]} == {5002}


def test_stop_without_facts_leaves_another_resources_table_alone(lab: Any, rsctmp: Path) -> None:
    """A resource that never ran here, configured by mistake with a running one's table and
    priority: its stop removes only what is known to be its ENI's (record or EC2), never the
    other resource's rules and routes."""
    running, other = lab.create_eni(subnet="c"), lab.create_eni(subnet="c")
    p = params(lab, running)
    assert run(lab, "a", "start", p, rsctmp).rc == 0
    before = os_state(lab, "a", running)
    assert before["rules"] and before["routes"]
    mistake = params(
        lab, other, device_index="2", route_table_id=str(TABLE), rule_priority=str(PRIORITY)
    )
    assert run(lab, "a", "stop", mistake, rsctmp).rc == 0
    assert os_state(lab, "a", running) == before
    assert run(lab, "a", "monitor", p, rsctmp, interval_ms=10000).rc == 0


def test_rules_of_someone_else_in_our_table_or_priority(lab: Any, rsctmp: Path) -> None:
    eni = lab.create_eni(subnet="c")
    p = params(lab, eni)
    lab.ns_exec("a", ["ip", "rule", "add", "from", "10.0.9.9", "lookup", str(TABLE),
                      "priority", "100"], check=True)  # fmt: skip
    result = run(lab, "a", "validate-all", p, rsctmp)
    assert result.rc == 2
    assert result.exit_reason and "10.0.9.9" in result.exit_reason
    # Another table and priority are the way out.
    other = params(lab, eni, route_table_id="300", rule_priority="300")
    assert run(lab, "a", "validate-all", other, rsctmp).rc == 0
    assert run(lab, "a", "start", other, rsctmp).rc == 0
    assert route_get(lab, "a", OUTSIDE, eni.ip)["dev"] == "eth1"
    assert run(lab, "a", "stop", other, rsctmp).rc == 0
    # The foreign rule is not ours to remove.
    assert (100, "10.0.9.9", str(TABLE)) in os_state(lab, "a", eni)["rules"]


def test_primary_interfaces_are_never_moved(lab: Any, rsctmp: Path) -> None:
    for owner in ("b", "a"):  # another node's primary ENI, and this node's own
        primary = lab.nodes[owner].eni_id
        p = {"eni_id": primary, "endpoint_url": lab.endpoint_url}
        for action in ("validate-all", "start", "monitor"):
            result = run(lab, "a", action, p, rsctmp)
            assert result.rc == 6, (owner, action)
            assert result.exit_reason and "device index 0" in result.exit_reason
        assert run(lab, "a", "stop", p, rsctmp).rc == 0
        assert attachment(lab, primary) == (lab.nodes[owner].instance_id, "attached")
    assert not {"AttachNetworkInterface", "DetachNetworkInterface"} & set(actions(lab, "a"))
    rules = {(int(r["priority"]), str(r["table"])) for r in lab.ip_json("a", "rule", "show")}
    assert rules == {(0, "local"), (32766, "main"), (32767, "default")}
    assert route_get(lab, "a", OUTSIDE)["dev"] == "eth0"
    eth0 = lab.ip_json("a", "addr", "show", "dev", "eth0")[0]
    assert lab.nodes["a"].ip in {a["local"] for a in eth0["addr_info"]}
    assert "UP" in eth0["flags"]


BAD_INPUTS = [
    {"eni_id": "eni-nothex"},
    {"eni_id": "eni-0123456789abcdef0"},  # well-formed, does not exist
    {"eni_id": "eni-01234567; reboot"},
    {"eni_id": "$(reboot)"},
    {"eni_id": "x" * 10000},
    {"eni_id": "eni-01234567\nocf-exit-reason:forged"},
    {"device_index": "0"},
    {"device_index": "one"},
    {"route_table_id": "254"},
    {"rule_priority": "32766"},
    {"force_detach": "perhaps"},
    {"policy_routing": "2"},
    {"ipv6_gateway": "10.0.3.1"},
    {"region": "../../etc"},
    {"endpoint_url": "ftp://example.invalid"},
]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_input_is_refused_without_change(lab: Any, rsctmp: Path, bad: dict[str, str]) -> None:
    eni = lab.create_eni(subnet="c")
    p = params(lab, eni)
    p.update(bad)
    before = (attachment(lab, eni.id), os_state(lab, "a", eni))
    for action in ("validate-all", "start"):
        result = run(lab, "a", action, p, rsctmp)
        assert result.rc == 6, (action, result.stderr)
        assert result.exit_reason
        reasons = [x for x in result.stderr.splitlines() if x.startswith("ocf-exit-reason:")]
        assert len(reasons) == 1
        assert result.stderr.splitlines()[-1] == reasons[0]
        assert "Traceback" not in result.stderr
    assert (attachment(lab, eni.id), os_state(lab, "a", eni)) == before
    assert not {"AttachNetworkInterface", "DetachNetworkInterface"} & set(actions(lab, "a"))
    assert list(rsctmp.iterdir()) == []


# ----------------------------------------------------------------------------- in parallel


def test_two_enis_on_one_node_in_parallel(lab: Any, rsctmp: Path) -> None:
    first, second = lab.create_eni(subnet="c"), lab.create_eni(subnet="c")
    p1, p2 = params(lab, first), params(lab, second, device_index="2")
    results: dict[str, Any] = {}

    def go(name: str, action: str, p: dict[str, str]) -> None:
        results[name] = run(lab, "a", action, p, rsctmp)

    for action in ("start", "stop"):
        threads = [
            threading.Thread(target=go, args=("1", action, p1)),
            threading.Thread(target=go, args=("2", action, p2)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert (results["1"].rc, results["2"].rc) == (0, 0), json.dumps(
            {k: v.stderr[-800:] for k, v in results.items()}
        )
        if action == "start":
            assert os_state(lab, "a", first)["rules"] == {(5001, first.ip, "5001")}
            assert os_state(lab, "a", second, table=5002)["link"] == "eth2"
            assert route_get(lab, "a", OUTSIDE, second.ip)["dev"] == "eth2"
            assert route_get(lab, "a", OUTSIDE, first.ip)["dev"] == "eth1"
    assert os_state(lab, "a", first) == NOTHING
    assert attachment(lab, first.id) is None
    assert attachment(lab, second.id) is None
