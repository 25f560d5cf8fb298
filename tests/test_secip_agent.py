"""aws-secip run as Pacemaker runs it, in the lab: real processes, OCF environment, node
namespaces with their own IMDS, the simulated EC2 (asynchronous assignment, AllowReassignment,
EIP PrivateIpAddress). Assertions are on exit codes, on which ENI the simulator says holds the
address, where the Elastic IP points, and on ``ip -json`` in both nodes."""

from __future__ import annotations

import ipaddress
import json
import sys
from typing import Any, Optional

import pytest

from agentkit import PYTHONS, SEQUENCE, agent, node_addresses, ocf_tester

AGENT = agent("aws-secip")
IP = "10.0.1.50"  # subnet "a" (10.0.1.0/24), where both lab nodes are


def params(lab: Any, **extra: str) -> dict[str, str]:
    base = {"ip": IP, "endpoint_url": lab.endpoint_url}
    base.update(extra)
    return base


def run(lab: Any, node: str, action: str, p: dict[str, str], **kw: Any) -> Any:
    return lab.run_agent(node, AGENT, action, p, **kw)


def monitor(lab: Any, node: str, p: dict[str, str], **kw: Any) -> int:
    rc: int = run(lab, node, "monitor", p, interval_ms=10000, **kw).rc
    return rc


def eni_ids(lab: Any) -> dict[str, str]:
    return {name: lab.nodes[name].eni_id for name in lab.nodes}


def holders(lab: Any, ip: str = IP) -> set[str]:
    """The ENIs the simulator lists the address on (read without any filter of ours)."""
    held: set[str] = lab.holders(ip)
    return held


def on_os(lab: Any, ip: str = IP) -> dict[str, str]:
    """Node -> ``ip/prefix`` for the nodes whose eth0 carries the address."""
    wanted = ipaddress.ip_address(ip)
    result = {}
    for node in lab.nodes:
        for entry in node_addresses(lab, node):
            if ipaddress.ip_address(entry.split("/")[0]) == wanted:
                result[node] = entry
    return result


def eip_target(lab: Any, allocation_id: str) -> Optional[tuple[str, str]]:
    raw = lab.ec2().describe_addresses(AllocationIds=[allocation_id])["Addresses"][0]
    if not raw.get("NetworkInterfaceId"):
        return None
    return raw["NetworkInterfaceId"], raw.get("PrivateIpAddress")


def world(lab: Any) -> tuple[Any, ...]:
    """Everything an agent could change: ENI addresses, EIP associations, node addresses."""
    enis = sorted(
        (
            e["NetworkInterfaceId"],
            tuple(sorted(i["PrivateIpAddress"] for i in e.get("PrivateIpAddresses", []))),
            tuple(sorted(i["Ipv6Address"] for i in e.get("Ipv6Addresses", []))),
        )
        for e in lab.ec2().describe_network_interfaces()["NetworkInterfaces"]
    )
    eips = sorted(
        (a.get("AllocationId"), a.get("NetworkInterfaceId"), a.get("PrivateIpAddress"))
        for a in lab.ec2().describe_addresses()["Addresses"]
    )
    nodes = tuple(sorted((n, tuple(sorted(node_addresses(lab, n)))) for n in lab.nodes))
    return tuple(enis), tuple(eips), nodes


def actions(lab: Any, node: str) -> list[str]:
    return [c.action for c in lab.calls(node)]


# ----------------------------------------------------------------------------- ocf-tester


@pytest.mark.parametrize("python", PYTHONS)
def test_ocf_tester_sequence(lab: Any, python: str) -> None:
    p = params(lab)
    eni = eni_ids(lab)
    running = ({eni["a"]}, {"a": f"{IP}/24"})  # the subnet's prefix by default
    stopped: tuple[set[str], dict[str, str]] = (set(), {})
    expected_state = {
        "meta-data": stopped,
        "validate-all": stopped,
        "probe": stopped,
        "start": running,
        "monitor": running,
        "start again": running,
        "monitor again": running,
        "stop": stopped,  # unassign_on_stop: the address is released in AWS as well
        "probe after stop": stopped,
        "stop again": stopped,
        "monitor after stop": stopped,
    }
    for step, action, interval, rc in SEQUENCE:
        result = run(lab, "a", action, p, interval_ms=interval, python=python)
        assert (step, result.rc) == (step, rc), result.stderr
        assert (step, holders(lab), on_os(lab)) == (step, *expected_state[step])
        if action == "meta-data":
            assert 'resource-agent name="aws-secip"' in result.stdout


def test_real_ocf_tester(lab: Any) -> None:
    result = ocf_tester(lab, "a", AGENT, params(lab))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "aws-secip passed all tests" in result.stdout
    assert holders(lab) == set()
    assert on_os(lab) == {}


# ----------------------------------------------------------------------------- failover


@pytest.mark.parametrize("python", PYTHONS)
def test_failover_a_b_a(lab: Any, python: str) -> None:
    p = params(lab)
    eni = eni_ids(lab)

    def state() -> tuple[set[str], set[str]]:
        return holders(lab), set(on_os(lab))

    assert state() == (set(), set())
    assert run(lab, "a", "start", p, python=python).rc == 0
    assert state() == ({eni["a"]}, {"a"})
    assert monitor(lab, "a", p, python=python) == 0
    assert run(lab, "b", "monitor", p, python=python).rc == 7  # probe on the standby

    # a crashes (nothing runs its stop); b takes over with AllowReassignment.
    assert run(lab, "b", "start", p, python=python).rc == 0
    assert state() == ({eni["b"]}, {"a", "b"})
    assert monitor(lab, "b", p, python=python) == 0
    # a still has the address on eth0, but AWS says b's ENI holds it: a is not running it.
    assert monitor(lab, "a", p, python=python) == 7
    # a's late stop removes its OS address and must not unassign b's.
    lab.reset_calls()
    assert run(lab, "a", "stop", p, python=python).rc == 0
    assert state() == ({eni["b"]}, {"b"})
    assert "UnassignPrivateIpAddresses" not in actions(lab, "a")
    assert monitor(lab, "b", p, python=python) == 0

    # And back: a planned move.
    assert run(lab, "b", "stop", p, python=python).rc == 0
    assert state() == (set(), set())
    assert run(lab, "a", "start", p, python=python).rc == 0
    assert state() == ({eni["a"]}, {"a"})
    assert monitor(lab, "b", p, python=python) == 7
    assert monitor(lab, "a", p, python=python) == 0


def test_takeover_without_unassign_on_stop(lab: Any) -> None:
    p = params(lab, unassign_on_stop="false")
    eni = eni_ids(lab)
    assert run(lab, "a", "start", p).rc == 0
    assert run(lab, "a", "stop", p).rc == 0
    assert (holders(lab), on_os(lab)) == ({eni["a"]}, {})  # left assigned for the next start
    assert run(lab, "a", "monitor", p).rc == 7
    assert run(lab, "b", "start", p).rc == 0
    assert (holders(lab), set(on_os(lab))) == ({eni["b"]}, {"b"})


def test_elastic_ip_follows_the_address(lab: Any) -> None:
    allocation = lab.allocate_eip()
    p = params(lab, elastic_ip_allocation_id=allocation)
    eni = eni_ids(lab)

    def state() -> tuple[set[str], set[str], Optional[tuple[str, str]]]:
        return holders(lab), set(on_os(lab)), eip_target(lab, allocation)

    assert run(lab, "a", "validate-all", p).rc == 0
    assert state() == (set(), set(), None)
    assert run(lab, "a", "start", p).rc == 0
    assert state() == ({eni["a"]}, {"a"}, (eni["a"], IP))
    assert monitor(lab, "a", p) == 0

    assert run(lab, "b", "start", p).rc == 0
    assert state() == ({eni["b"]}, {"a", "b"}, (eni["b"], IP))
    assert monitor(lab, "a", p) == 7
    assert run(lab, "a", "stop", p).rc == 0
    assert state() == ({eni["b"]}, {"b"}, (eni["b"], IP))

    # Someone points the EIP elsewhere: start repairs it (the address itself stays put).
    lab.ec2().associate_address(
        AllocationId=allocation,
        NetworkInterfaceId=eni["b"],
        PrivateIpAddress=lab.nodes["b"].ip,
        AllowReassociation=True,
    )
    assert eip_target(lab, allocation) == (eni["b"], lab.nodes["b"].ip)
    lab.reset_calls()
    assert run(lab, "b", "start", p).rc == 0
    assert state() == ({eni["b"]}, {"b"}, (eni["b"], IP))
    assert "AssignPrivateIpAddresses" not in actions(lab, "b")
    assert "AssociateAddress" in actions(lab, "b")

    # Stop releases the address; EC2 disassociates the EIP from it.
    assert run(lab, "b", "stop", p).rc == 0
    assert state() == (set(), set(), None)
    assert run(lab, "a", "start", p).rc == 0
    assert state() == ({eni["a"]}, {"a"}, (eni["a"], IP))


def test_ipv6_failover(lab: Any) -> None:
    network = ipaddress.ip_network(lab.subnets["a"].ipv6_cidr)
    ip6 = str(network.network_address + 0x50)
    p = params(lab, ip=ip6)
    eni = eni_ids(lab)

    def state() -> tuple[set[str], dict[str, str]]:
        return holders(lab, ip6), on_os(lab, ip6)

    assert run(lab, "a", "validate-all", p).rc == 0
    assert run(lab, "a", "monitor", p).rc == 7
    assert run(lab, "a", "start", p).rc == 0
    assert state() == ({eni["a"]}, {"a": f"{ip6}/{network.prefixlen}"})
    assert monitor(lab, "a", p) == 0
    assert run(lab, "a", "start", p).rc == 0

    # IPv6 cannot be reassigned: b unassigns it from a's ENI, then assigns it to its own.
    lab.reset_calls()
    assert run(lab, "b", "start", p).rc == 0
    assert state() == ({eni["b"]}, {"a": f"{ip6}/64", "b": f"{ip6}/64"})
    assert [a for a in actions(lab, "b") if a.endswith("Ipv6Addresses")] == [
        "UnassignIpv6Addresses",
        "AssignIpv6Addresses",
    ]
    assert monitor(lab, "a", p) == 7
    lab.reset_calls()
    assert run(lab, "a", "stop", p).rc == 0
    assert state() == ({eni["b"]}, {"b": f"{ip6}/64"})
    assert "UnassignIpv6Addresses" not in actions(lab, "a")
    assert monitor(lab, "b", p) == 0

    assert run(lab, "b", "stop", p).rc == 0
    assert state() == (set(), {})
    assert run(lab, "b", "stop", p).rc == 0
    assert monitor(lab, "b", p) == 7


# ----------------------------------------------------------------------------- AWS behaviour


def test_start_waits_for_the_asynchronous_assignment(lab: Any) -> None:
    lab.set_timing(assign_delay=1.5)
    p = params(lab)
    result = run(lab, "a", "start", p)
    assert result.rc == 0, result.stderr
    # Right when start returns, EC2 already shows the address on a's ENI.
    assert holders(lab) == {lab.nodes["a"].eni_id}
    assert result.duration >= 1.5
    # Polled at short intervals (not one long sleep): many looks during the 1.5 s.
    calls = actions(lab, "a")
    assert calls[:2] == ["DescribeNetworkInterfaces", "AssignPrivateIpAddresses"]
    assert set(calls[2:]) == {"DescribeNetworkInterfaces"}
    assert len(calls[2:]) >= 5


def test_start_is_one_call_when_done_and_monitor_is_one_call(lab: Any) -> None:
    p = params(lab)
    assert run(lab, "a", "start", p).rc == 0
    lab.reset_calls()
    assert run(lab, "a", "start", p).rc == 0
    assert actions(lab, "a") == ["DescribeNetworkInterfaces"]
    lab.reset_calls()
    assert monitor(lab, "a", p) == 0
    assert actions(lab, "a") == ["DescribeNetworkInterfaces"]
    lab.reset_calls()
    assert run(lab, "a", "stop", p).rc == 0
    assert actions(lab, "a") == ["DescribeNetworkInterfaces", "UnassignPrivateIpAddresses"]
    lab.reset_calls()
    assert run(lab, "a", "stop", p).rc == 0
    assert actions(lab, "a") == ["DescribeNetworkInterfaces"]


def test_start_repairs_half_done_states(lab: Any) -> None:
    p = params(lab)
    eni = eni_ids(lab)
    # AWS done, OS not (a crash between the two): start only adds the address.
    lab.set_timing(assign_delay=0)
    lab.ec2().assign_private_ip_addresses(NetworkInterfaceId=eni["a"], PrivateIpAddresses=[IP])
    assert holders(lab) == {eni["a"]}
    assert run(lab, "a", "monitor", p).rc == 7
    lab.reset_calls()
    assert run(lab, "a", "start", p).rc == 0
    assert (holders(lab), on_os(lab)) == ({eni["a"]}, {"a": f"{IP}/24"})
    assert actions(lab, "a") == ["DescribeNetworkInterfaces"]

    # OS done with another prefix, AWS elsewhere: start reassigns and fixes the prefix.
    lab.ec2().assign_private_ip_addresses(
        NetworkInterfaceId=eni["b"], PrivateIpAddresses=[IP], AllowReassignment=True
    )
    assert run(lab, "a", "monitor", p, interval_ms=10000).rc == 7
    assert run(lab, "a", "start", params(lab, cidr_netmask="32")).rc == 0
    assert (holders(lab), on_os(lab)) == ({eni["a"]}, {"a": f"{IP}/32"})
    assert monitor(lab, "a", params(lab, cidr_netmask="32")) == 0


def test_monitor_notices_the_address_removed_from_the_os(lab: Any) -> None:
    p = params(lab)
    assert run(lab, "a", "start", p).rc == 0
    lab.ns_exec("a", ["ip", "addr", "del", f"{IP}/24", "dev", "eth0"], check=True)
    assert monitor(lab, "a", p) == 7
    assert run(lab, "a", "start", p).rc == 0
    assert monitor(lab, "a", p) == 0


def test_monitor_with_api_down_trusts_the_os_side(lab: Any) -> None:
    p = params(lab)
    assert run(lab, "a", "start", p).rc == 0
    lab.set_fault("*", "error", code="InternalError", status=500)
    result = run(lab, "a", "monitor", p, interval_ms=10000, timeout_ms=5000)
    assert result.rc == 0
    assert result.duration < 5
    # Stop with the API down: the OS side goes, stop succeeds (never fenced for a leftover).
    result = run(lab, "a", "stop", p, timeout_ms=5000)
    assert result.rc == 0
    assert result.duration < 5
    assert on_os(lab) == {}
    assert monitor(lab, "a", p, timeout_ms=5000) == 7
    lab.clear_faults()
    assert holders(lab) == {lab.nodes["a"].eni_id}  # left for the next start to move
    assert run(lab, "b", "start", p).rc == 0
    assert holders(lab) == {lab.nodes["b"].eni_id}


def test_monitor_api_false_checks_only_the_os(lab: Any) -> None:
    p = params(lab, monitor_api="false")
    assert run(lab, "a", "start", p).rc == 0
    lab.reset_calls()
    assert monitor(lab, "a", p) == 0
    assert actions(lab, "a") == []


def test_start_under_50_percent_throttling(lab: Any) -> None:
    allocation = lab.allocate_eip()
    p = params(lab, elastic_ip_allocation_id=allocation)
    lab.set_fault("*", "throttle", rate=0.5)
    result = run(lab, "a", "start", p, timeout_ms=20000)
    assert result.rc == 0, result.stderr
    assert result.duration < 20
    lab.clear_faults()
    eni = lab.nodes["a"].eni_id
    assert (holders(lab), set(on_os(lab)), eip_target(lab, allocation)) == (
        {eni},
        {"a"},
        (eni, IP),
    )
    assert any(c.status == 503 for c in lab.calls("a"))


def test_start_under_100_percent_throttling_fails_in_time(lab: Any) -> None:
    p = params(lab)
    before = world(lab)
    lab.set_fault("*", "throttle", rate=1.0)
    result = run(lab, "a", "start", p, timeout_ms=20000)
    assert result.rc == 1
    assert result.exit_reason and "RequestLimitExceeded" in result.exit_reason
    assert result.duration < 20
    assert not result.timed_out
    lab.clear_faults()
    assert world(lab) == before


# ----------------------------------------------------------------------------- validate-all


def test_validate_all_changes_nothing(lab: Any) -> None:
    allocation = lab.allocate_eip()
    before = world(lab)
    assert run(lab, "a", "validate-all", params(lab, elastic_ip_allocation_id=allocation)).rc == 0
    assert world(lab) == before


@pytest.mark.parametrize(
    ("action", "eip"),
    [("DescribeNetworkInterfaces", False), ("AssociateAddress", True)],
)
def test_validate_all_reports_a_missing_permission(lab: Any, action: str, eip: bool) -> None:
    # EC2 offers DryRun on AssociateAddress, not on (Un)AssignPrivateIpAddresses: validate-all
    # checks what it can without changing anything.
    p = params(lab)
    if eip:
        p["elastic_ip_allocation_id"] = lab.allocate_eip()
    lab.set_fault(action, "error", code="UnauthorizedOperation", status=403)
    before = world(lab)
    result = run(lab, "a", "validate-all", p)
    assert result.rc == 4
    assert result.exit_reason and f"ec2:{action}" in result.exit_reason
    lab.clear_faults()
    assert world(lab) == before
    if eip:
        assert "AssociateAddress" in actions(lab, "a")


# ----------------------------------------------------------------------------- bad input


# Values in braces are filled in from the lab: {b_primary}, {a_primary}, {b_ipv6}.
BAD_INPUTS = [
    ({"ip": "10.0.1.300"}, 6),
    ({"ip": "10.0.1.50/32"}, 6),
    ({"ip": "$(reboot)"}, 6),
    ({"ip": "10.0.1.50\nocf-exit-reason:forged"}, 6),
    ({"ip": "x" * 10000}, 6),
    ({"ip": "10.0.2.50"}, 6),  # another subnet's address
    ({"ip": "{b_ipv6}"}, 6),  # another subnet's IPv6 block
    ({"ip": "10.0.1.1"}, 6),  # reserved by AWS
    ({"ip": "10.0.1.255"}, 6),  # reserved by AWS
    ({"ip": "{b_primary}"}, 6),  # b's primary address
    ({"ip": "{a_primary}"}, 6),  # our own primary address
    ({"cidr_netmask": "33"}, 6),
    ({"cidr_netmask": "255.255.255.0"}, 6),
    ({"elastic_ip_allocation_id": "eipalloc-nothex"}, 6),
    ({"elastic_ip_allocation_id": "eipalloc-0123456789abcdef0"}, 6),  # does not exist
    ({"ip": "2001:db8::1", "elastic_ip_allocation_id": "eipalloc-0123456789abcdef0"}, 6),
    ({"interface": "eth0:1"}, 6),  # an alias label, not an interface
    ({"interface": "eth9"}, 2),  # only wrong on this host
    ({"unassign_on_stop": "perhaps"}, 6),
    ({"monitor_api": "maybe"}, 6),
    ({"region": "../../etc"}, 6),
    ({"endpoint_url": "ftp://example.invalid"}, 6),
]


def _fill(lab: Any, value: str) -> str:
    b_ipv6 = ipaddress.ip_network(lab.subnets["b"].ipv6_cidr).network_address + 0x50
    names = {
        "{b_primary}": lab.nodes["b"].ip,
        "{a_primary}": lab.nodes["a"].ip,
        "{b_ipv6}": str(b_ipv6),
    }
    return str(names.get(value, value))


@pytest.mark.parametrize(("bad", "rc"), BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_input_is_refused_without_change(lab: Any, bad: dict[str, str], rc: int) -> None:
    lab.set_timing(assign_delay=0)
    before = world(lab)
    p = params(lab)
    p.update({key: _fill(lab, value) for key, value in bad.items()})
    for action in ("validate-all", "start"):
        result = run(lab, "a", action, p)
        assert result.rc == rc, (action, result.stderr)
        assert result.exit_reason
        assert "Traceback" not in result.stderr
        reasons = [line for line in result.stderr.splitlines() if "ocf-exit-reason:" in line]
        assert len(reasons) == 1
        assert reasons[0].startswith("ocf-exit-reason:")
    assert world(lab) == before


def test_address_outside_the_subnet_names_the_subnet(lab: Any) -> None:
    before = world(lab)
    for action in ("validate-all", "start"):
        result = run(lab, "a", action, params(lab, ip="10.0.2.50"))
        assert result.rc == 6
        assert result.exit_reason and lab.subnets["a"].id in result.exit_reason
    assert world(lab) == before


@pytest.mark.parametrize("owner", ["a", "b"])
def test_a_primary_address_is_never_removed(lab: Any, owner: str) -> None:
    """After start refused a node's primary address (6), Pacemaker probes and stops the
    resource everywhere: neither may take the primary address off its node."""
    p = params(lab, ip=lab.nodes[owner].ip)
    before = world(lab)
    assert run(lab, "a", "start", p).rc == 6
    probe = run(lab, owner, "monitor", p)
    assert probe.rc == 6
    assert probe.exit_reason and "primary" in probe.exit_reason
    assert run(lab, owner, "monitor", params(lab, ip=lab.nodes[owner].ip, monitor_api="0")).rc == 6
    for node in lab.nodes:
        assert run(lab, node, "stop", p).rc == 0
        assert run(lab, node, "stop", params(lab, ip=p["ip"], unassign_on_stop="no")).rc == 0
    assert world(lab) == before
    assert f"{lab.nodes[owner].ip}/24" in node_addresses(lab, owner)


# ----------------------------------------------------------------------------- is it a primary?
# Decided from facts (the kernel's secondary flag, the record start writes, IMDS, EC2), never by
# a default: when unsure, probe, start and validate-all refuse (1) and stop leaves the address.


def forget_records(lab: Any, node: str) -> None:
    """What a resource started by the previous version looks like: no record in HA_RSCTMP."""
    records = list((lab.rsctmp / node).glob("*"))
    assert records  # the start before wrote one
    for path in records:
        path.unlink()


@pytest.mark.parametrize(("mode", "rc"), [("down", 1), ("disabled", 2)])
def test_own_primary_is_kept_when_imds_cannot_tell(lab: Any, mode: str, rc: int) -> None:
    """ip misconfigured as the node's own address and IMDS down: the probe must not say
    "running", and no stop may take the node's address away (that cuts it off the cluster)."""
    own = lab.nodes["a"].ip
    before = world(lab)
    lab.set_imds_fault("a", mode)
    try:
        for extra in ({}, {"monitor_api": "false"}):
            p = params(lab, ip=own, **extra)
            assert run(lab, "a", "monitor", p).rc == 1
            assert run(lab, "a", "validate-all", p).rc == rc  # 2: IMDS is off on this node
            assert run(lab, "a", "start", p).rc == rc
            assert run(lab, "a", "stop", p).rc == 0
            assert (
                run(lab, "a", "stop", params(lab, ip=own, unassign_on_stop="no", **extra)).rc == 0
            )
    finally:
        lab.set_imds_fault("a", None)
    assert world(lab) == before
    assert f"{own}/24" in node_addresses(lab, "a")


def test_own_primary_with_another_prefix_is_never_replaced(lab: Any) -> None:
    own = lab.nodes["a"].ip
    before = world(lab)
    p = params(lab, ip=own, cidr_netmask="32")
    for action, rc in (("validate-all", 6), ("start", 6), ("monitor", 6), ("stop", 0)):
        assert (action, run(lab, "a", action, p).rc) == (action, rc)
    assert world(lab) == before


@pytest.mark.parametrize("netmask", ["", "32"])
def test_a_started_address_is_removed_without_imds(lab: Any, netmask: str) -> None:
    """The record (and for the subnet's prefix the kernel's secondary flag) says the address
    is this agent's: stop removes it while IMDS is down."""
    p = params(lab, cidr_netmask=netmask) if netmask else params(lab)
    assert run(lab, "a", "start", p).rc == 0
    lab.set_imds_fault("a", "down")
    try:
        assert monitor(lab, "a", p) == 0
        assert run(lab, "a", "stop", p).rc == 0
    finally:
        lab.set_imds_fault("a", None)
    assert on_os(lab) == {}


def test_upgrade_ipv4_address_without_record_is_still_managed(lab: Any) -> None:
    """Started by the previous version (no record): the kernel's secondary flag decides."""
    p = params(lab)
    assert run(lab, "a", "start", p).rc == 0
    forget_records(lab, "a")
    lab.set_imds_fault("a", "down")
    try:
        assert run(lab, "a", "monitor", p).rc == 0  # the probe after an upgrade
        assert run(lab, "a", "stop", p).rc == 0
    finally:
        lab.set_imds_fault("a", None)
    assert on_os(lab) == {}


def own_ipv6(lab: Any) -> str:
    """An IPv6 address of a's ENI configured on a's eth0 as DHCPv6 does (/128, with a lifetime):
    the node's own address."""
    network = ipaddress.ip_network(lab.subnets["a"].ipv6_cidr)
    ip6 = str(network.network_address + 0x77)
    lab.set_timing(assign_delay=0)
    lab.ec2().assign_ipv6_addresses(NetworkInterfaceId=lab.nodes["a"].eni_id, Ipv6Addresses=[ip6])
    lab.ns_exec(
        "a",
        ["ip", "-6", "addr", "add", f"{ip6}/128", "dev", "eth0", "nodad", "valid_lft", "3600",
         "preferred_lft", "3600"],
        check=True,
    )  # fmt: skip
    return ip6


def test_own_ipv6_address_is_never_taken_or_removed(lab: Any) -> None:
    ip6 = own_ipv6(lab)
    before = world(lab)
    p = params(lab, ip=ip6)
    assert run(lab, "a", "monitor", p).rc == 1  # probe: cannot tell, so not "running"
    assert run(lab, "a", "validate-all", p).rc == 1
    assert run(lab, "a", "start", p).rc == 1  # would have replaced its /128 with a /64
    assert run(lab, "a", "stop", p).rc == 0
    assert world(lab) == before
    assert on_os(lab, ip6) == {"a": f"{ip6}/128"}


def test_upgrade_ipv6_address_without_record_is_left_by_stop(lab: Any) -> None:
    """IPv6 has no secondary flag: an address started by the previous version (no record) is
    left on the interface by stop (exit 0, a warning), and a probe cannot tell (1). Once another
    node holds it in EC2, it is no node's own here: start takes it back."""
    network = ipaddress.ip_network(lab.subnets["a"].ipv6_cidr)
    ip6 = str(network.network_address + 0x50)
    p = params(lab, ip=ip6)
    assert run(lab, "a", "start", p).rc == 0
    forget_records(lab, "a")
    assert monitor(lab, "a", p) == 0  # recurring: still running, with a warning
    assert run(lab, "a", "monitor", p).rc == 1  # probe
    assert run(lab, "a", "stop", p).rc == 0
    assert on_os(lab, ip6) == {"a": f"{ip6}/64"}
    assert run(lab, "b", "start", p).rc == 0
    assert run(lab, "b", "stop", p).rc == 0
    assert run(lab, "a", "start", p).rc == 0
    assert (holders(lab, ip6), on_os(lab, ip6)) == ({lab.nodes["a"].eni_id}, {"a": f"{ip6}/64"})
    assert run(lab, "a", "stop", p).rc == 0
    assert on_os(lab, ip6) == {}


# ----------------------------------------------------------------------------- monitor's OS read

READER = """
import json, sys
from ipfailover.host.netlink import Netlink
with Netlink() as reader:
    link = reader.link_by_name("eth0")
    addrs = reader.addresses(link.index)
    print(json.dumps({
        "link": [link.index, link.name, link.mac, link.up],
        "addrs": sorted([a.ip, a.prefixlen, a.label] for a in addrs),
        "secondary": sorted(a.ip for a in addrs if a.secondary),
        "missing": reader.link_by_name("eth9") is None,
        "pyroute2": "pyroute2" in sys.modules,
    }))
"""


@pytest.mark.parametrize("python", PYTHONS)
def test_netlink_reader_matches_ip_json(lab: Any, python: str) -> None:
    """Netlink reads links and addresses without pyroute2; it must see what `ip` sees."""
    for cmd in (
        ["ip", "addr", "add", "10.0.1.60/32", "dev", "eth0", "label", "eth0:svc"],
        ["ip", "addr", "add", "10.0.1.61/24", "dev", "eth0"],
        ["ip", "-6", "addr", "add", "2001:db8::61/64", "dev", "eth0", "nodad"],
    ):
        lab.ns_exec("a", cmd, check=True)
    env = lab.clean_env({"PYTHONPATH": str(AGENT.parent.parent / "lib")})
    out = lab.ns_exec("a", [python, "-c", READER], env=env, check=True).stdout
    got = json.loads(out)
    link = lab.ip_json("a", "addr", "show", "dev", "eth0")[0]
    expected = sorted(
        [a["local"], a["prefixlen"], a.get("label") if a["family"] == "inet" else None]
        for a in link["addr_info"]
    )
    assert got["addrs"] == expected
    assert ["10.0.1.60", 32, "eth0:svc"] in got["addrs"]
    # The kernel's secondary flag: 10.0.1.61/24 came after the node's own 10.0.1.x/24.
    assert got["secondary"] == sorted(a["local"] for a in link["addr_info"] if a.get("secondary"))
    assert got["secondary"] == ["10.0.1.61"]
    assert got["link"] == [link["ifindex"], "eth0", lab.nodes["a"].mac, True]
    assert got["missing"] is True
    assert got["pyroute2"] is False


def test_monitor_does_not_import_pyroute2(lab: Any) -> None:
    p = params(lab)
    assert run(lab, "a", "start", p).rc == 0
    code = (  # what the agent script runs, then a look at what it imported
        "import sys\n"
        "from ipfailover.secip.declaration import AGENT\n"
        f"rc = AGENT.main([{str(AGENT)!r}, 'monitor'])\n"
        "print('rc', rc, 'pyroute2' in sys.modules)\n"
    )
    env = lab.clean_env(
        {
            "PYTHONPATH": str(AGENT.parent.parent / "lib"),
            "OCF_RESKEY_CRM_meta_timeout": "20000",
            "OCF_RESKEY_CRM_meta_interval": "10000",
            **{f"OCF_RESKEY_{k}": v for k, v in p.items()},
        }
    )
    out = lab.ns_exec("a", [sys.executable, "-c", code], env=env, check=True).stdout
    assert out.strip().splitlines()[-1] == "rc 0 False"


def test_the_actions_log_to_the_ha_log(lab: Any, tmp_path: Any) -> None:
    """Each agent's library logger is the one the shim configures: a start's own records reach
    HA_LOGFILE under the resource's tag (aws-secip once lost them; only warnings surfaced)."""
    logfile = tmp_path / "ha.log"
    env = {"HA_LOGFILE": str(logfile), "OCF_RESOURCE_INSTANCE": "vip"}
    p = params(lab)
    try:
        assert run(lab, "a", "start", p, extra_env=env).rc == 0
        assert run(lab, "a", "stop", p, extra_env=env).rc == 0
    finally:
        run(lab, "a", "stop", p)
    lines = logfile.read_text().splitlines()
    assert any("aws-secip(vip)[" in line and ": INFO: " in line and f"configured {IP}/" in line
               for line in lines), lines  # fmt: skip
    assert any(f"removed {IP}/" in line for line in lines), lines
