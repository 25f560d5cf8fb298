"""aws-overlayip run as Pacemaker runs it, in the lab: real processes, OCF environment, node
namespaces with their own IMDS, the simulated EC2. Assertions are on exit codes, on the route
tables in the simulator and on ``ip -json`` in the nodes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import pytest

from agentkit import EXPECTED_SEQUENCE, PYTHONS, agent, node_addresses, ocf_tester, run_sequence

AGENT = agent("aws-overlayip")
IP = "192.168.100.10"


def params(lab: Any, tables: Sequence[str], **extra: str) -> dict[str, str]:
    base = {
        "ip": IP,
        "routing_table": ",".join(tables),
        "endpoint_url": lab.endpoint_url,
        "source_dest_check": "disable",
    }
    base.update(extra)
    return base


def targets(lab: Any, tables: Sequence[str], cidr: str = f"{IP}/32") -> dict[str, Optional[str]]:
    """Per table, the ENI the route for ``cidr`` points at (None: no route)."""
    found: dict[str, Optional[str]] = lab.route_targets(cidr, tables)
    return found


def has_ip(lab: Any, node: str, ip: str = IP) -> bool:
    return any(a.split("/")[0] == ip for a in node_addresses(lab, node))


def run(lab: Any, node: str, action: str, p: dict[str, str], **kw: Any) -> Any:
    return lab.run_agent(node, AGENT, action, p, **kw)


@pytest.mark.parametrize("python", PYTHONS)
def test_ocf_tester_sequence(lab: Any, python: str) -> None:
    p = params(lab, lab.route_tables[:1])
    got = run_sequence(
        lambda action, interval: run(lab, "a", action, p, interval_ms=interval, python=python)
    )
    assert got == EXPECTED_SEQUENCE
    # Stop removes the address and leaves the route (the next owner replaces it).
    assert not has_ip(lab, "a")
    assert targets(lab, lab.route_tables[:1]) == {lab.route_tables[0]: lab.nodes["a"].eni_id}


def test_real_ocf_tester(lab: Any) -> None:
    result = ocf_tester(lab, "a", AGENT, params(lab, lab.route_tables[:1]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert not has_ip(lab, "a")


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("count", [1, 3])
def test_failover_a_b_a(lab: Any, python: str, count: int) -> None:
    tables = lab.route_tables[:count]
    p = params(lab, tables)
    eni = {name: lab.nodes[name].eni_id for name in ("a", "b")}

    def state() -> tuple[set[Optional[str]], bool, bool]:
        return set(targets(lab, tables).values()), has_ip(lab, "a"), has_ip(lab, "b")

    assert state() == ({None}, False, False)
    assert run(lab, "a", "start", p, python=python).rc == 0
    assert state() == ({eni["a"]}, True, False)
    assert run(lab, "a", "monitor", p, interval_ms=10000, python=python).rc == 0
    assert run(lab, "b", "monitor", p, python=python).rc == 7

    # a crashes (nothing runs its stop); b takes over.
    assert run(lab, "b", "start", p, python=python).rc == 0
    assert state() == ({eni["b"]}, True, True)
    assert run(lab, "b", "monitor", p, interval_ms=10000, python=python).rc == 0
    # a still has the address, but AWS no longer routes it there: a is not running it.
    assert run(lab, "a", "monitor", p, interval_ms=10000, python=python).rc == 7
    # a's late stop must not touch b's routes.
    assert run(lab, "a", "stop", p, python=python).rc == 0
    assert state() == ({eni["b"]}, False, True)

    # And back: a planned move.
    assert run(lab, "b", "stop", p, python=python).rc == 0
    assert run(lab, "a", "start", p, python=python).rc == 0
    assert state() == ({eni["a"]}, True, False)
    assert run(lab, "b", "monitor", p, interval_ms=10000, python=python).rc == 7
    assert run(lab, "a", "monitor", p, interval_ms=10000, python=python).rc == 0


def test_route_to_a_third_eni_is_taken_over(lab: Any) -> None:
    table = lab.route_tables[0]
    third = lab.create_eni(subnet="c")
    lab.ec2().create_route(
        RouteTableId=table, DestinationCidrBlock=f"{IP}/32", NetworkInterfaceId=third.id
    )
    p = params(lab, [table])
    assert run(lab, "a", "monitor", p).rc == 7
    assert run(lab, "a", "start", p).rc == 0
    assert targets(lab, [table]) == {table: lab.nodes["a"].eni_id}


def test_missing_route_without_create_route_is_a_config_error(lab: Any) -> None:
    table = lab.route_tables[0]
    result = run(lab, "a", "start", params(lab, [table], create_route="false"))
    assert result.rc == 6
    assert result.exit_reason
    assert targets(lab, [table]) == {table: None}


def test_tables_found_by_tag(lab: Any) -> None:
    p = params(lab, [], routing_table_tag="ipfailover=lab")
    del p["routing_table"]
    assert run(lab, "a", "start", p).rc == 0
    assert set(targets(lab, lab.route_tables).values()) == {lab.nodes["a"].eni_id}
    assert run(lab, "a", "monitor", p, interval_ms=10000).rc == 0


def test_ipv6_overlay(lab: Any) -> None:
    ip6 = "2001:db8:ffff::10"
    table = lab.route_tables[0]
    p = params(lab, [table], ip=ip6)
    assert run(lab, "a", "start", p).rc == 0
    assert targets(lab, [table], f"{ip6}/128") == {table: lab.nodes["a"].eni_id}
    assert f"{ip6}/128" in node_addresses(lab, "a")
    assert run(lab, "a", "monitor", p, interval_ms=10000).rc == 0
    assert run(lab, "a", "stop", p).rc == 0
    assert f"{ip6}/128" not in node_addresses(lab, "a")


def test_source_dest_check_verify_and_disable(lab: Any) -> None:
    eni = lab.nodes["a"].eni_id
    lab.ec2().modify_network_interface_attribute(
        NetworkInterfaceId=eni, SourceDestCheck={"Value": True}
    )
    table = lab.route_tables[0]
    verify = params(lab, [table], source_dest_check="verify")
    assert run(lab, "a", "validate-all", verify).rc == 6
    assert run(lab, "a", "start", verify).rc == 6
    assert targets(lab, [table]) == {table: None}
    assert not has_ip(lab, "a")
    assert run(lab, "a", "start", params(lab, [table], source_dest_check="disable")).rc == 0
    attr = lab.ec2().describe_network_interface_attribute(
        NetworkInterfaceId=eni, Attribute="sourceDestCheck"
    )
    assert attr["SourceDestCheck"]["Value"] is False
    assert run(lab, "a", "validate-all", verify).rc == 0


@pytest.mark.parametrize("count", [1, 3])
def test_monitor_makes_one_api_call(lab: Any, count: int) -> None:
    p = params(lab, lab.route_tables[:count])
    assert run(lab, "a", "start", p).rc == 0
    lab.reset_calls()
    assert run(lab, "a", "monitor", p, interval_ms=10000).rc == 0
    assert [c.action for c in lab.calls("a")] == ["DescribeRouteTables"]
    lab.reset_calls()
    assert run(lab, "a", "stop", p).rc == 0
    assert lab.calls("a") == []


def test_start_under_50_percent_throttling(lab: Any) -> None:
    p = params(lab, lab.route_tables)
    lab.set_fault("*", "throttle", rate=0.5)
    result = run(lab, "a", "start", p, timeout_ms=20000)
    assert result.rc == 0, result.stderr
    assert result.duration < 20
    lab.clear_faults()
    assert set(targets(lab, lab.route_tables).values()) == {lab.nodes["a"].eni_id}
    assert any(c.status == 503 for c in lab.calls("a"))


def test_start_under_100_percent_throttling_fails_in_time(lab: Any) -> None:
    p = params(lab, lab.route_tables)
    lab.set_fault("*", "throttle", rate=1.0)
    result = run(lab, "a", "start", p, timeout_ms=20000)
    assert result.rc == 1
    assert result.exit_reason and "RequestLimitExceeded" in result.exit_reason
    assert result.duration < 20


def test_monitor_with_api_down_trusts_the_os_side(lab: Any) -> None:
    p = params(lab, lab.route_tables[:1])
    assert run(lab, "a", "start", p).rc == 0
    lab.set_fault("DescribeRouteTables", "error", code="InternalError", status=500)
    result = run(lab, "a", "monitor", p, interval_ms=10000, timeout_ms=5000)
    assert result.rc == 0
    assert result.duration < 5
    lab.clear_faults()
    # The OS side gone is known for sure, API or not.
    lab.set_fault("*", "error", code="InternalError", status=500)
    assert run(lab, "a", "stop", p).rc == 0
    assert run(lab, "a", "monitor", p, interval_ms=10000, timeout_ms=5000).rc == 7


def test_validate_all_reports_a_missing_permission(lab: Any) -> None:
    p = params(lab, lab.route_tables[:1])
    lab.set_fault("CreateRoute", "error", code="UnauthorizedOperation", status=403)
    result = run(lab, "a", "validate-all", p)
    assert result.rc == 4
    assert result.exit_reason and "ec2:CreateRoute" in result.exit_reason


def test_validate_all_changes_nothing(lab: Any) -> None:
    table = lab.route_tables[0]
    p = params(lab, [table])
    assert run(lab, "a", "validate-all", p).rc == 0
    assert targets(lab, [table]) == {table: None}
    assert not has_ip(lab, "a")


def test_ip_inside_the_vpc_is_refused(lab: Any) -> None:
    p = params(lab, lab.route_tables[:1], ip="10.0.1.200")
    assert run(lab, "a", "validate-all", p).rc == 6
    assert run(lab, "a", "start", p).rc == 6
    assert not has_ip(lab, "a", "10.0.1.200")


BAD_INPUTS = [
    ({"ip": "192.168.100.300"}, 6),
    ({"ip": "192.168.100.10/32"}, 6),
    ({"ip": "$(reboot)"}, 6),
    ({"ip": "192.168.100.10\nocf-exit-reason:forged"}, 6),
    ({"ip": "x" * 10000}, 6),
    ({"routing_table": "rtb-nothex"}, 6),
    ({"routing_table": "rtb-0123456789abcdef0"}, 6),  # well-formed, does not exist
    ({"routing_table": "igw-12345678"}, 6),
    ({"routing_table_tag": "nobody=here", "routing_table": ""}, 6),
    ({"interface": "eth0:1"}, 6),  # an alias label, not an interface
    ({"interface": "eth9"}, 2),  # only wrong on this host
    ({"create_route": "perhaps"}, 6),
    ({"source_dest_check": "off"}, 6),
    ({"region": "../../etc"}, 6),
    ({"endpoint_url": "ftp://example.invalid"}, 6),
    ({"label": "lo:evil"}, 6),
]


@pytest.mark.parametrize(("bad", "rc"), BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_input_is_refused_without_change(lab: Any, bad: dict[str, str], rc: int) -> None:
    tables = lab.route_tables
    before = (targets(lab, tables), node_addresses(lab, "a"))
    p = params(lab, tables[:1])
    p.update(bad)
    for action in ("validate-all", "start"):
        result = run(lab, "a", action, p)
        assert result.rc == rc, (action, result.stderr)
        assert result.exit_reason
        assert "Traceback" not in result.stderr
    assert (targets(lab, tables), node_addresses(lab, "a")) == before


# ----------------------------------------------------------------------------- not its address


@pytest.mark.parametrize("monitor_api", ["true", "false"])
def test_the_nodes_own_address_is_neither_running_nor_removed(lab: Any, monitor_api: str) -> None:
    """ip misconfigured as the node's own address (another prefix than the /32 the agent adds):
    the probe must not say "running", and stop must neither remove it nor fail (fencing)."""
    own = lab.nodes["a"].ip
    tables = lab.route_tables[:1]
    p = params(lab, tables, ip=own, monitor_api=monitor_api)
    before = (targets(lab, tables, f"{own}/32"), node_addresses(lab, "a"))
    assert run(lab, "a", "start", p).rc == 6  # inside the VPC CIDR
    assert run(lab, "a", "monitor", p).rc == 7
    assert run(lab, "a", "monitor", p, interval_ms=10000).rc == 7
    assert run(lab, "a", "stop", p).rc == 0
    assert (targets(lab, tables, f"{own}/32"), node_addresses(lab, "a")) == before
    assert f"{own}/24" in node_addresses(lab, "a")


def test_an_address_with_another_prefix_is_left_by_stop(lab: Any) -> None:
    """The overlay IP configured by someone else with another prefix: start adds its /32 beside
    it; stop removes the /32 only and succeeds."""
    tables = lab.route_tables[:1]
    p = params(lab, tables)
    lab.ns_exec("a", ["ip", "addr", "add", f"{IP}/24", "dev", "eth0"], check=True)
    assert run(lab, "a", "monitor", p).rc == 7
    assert run(lab, "a", "start", p).rc == 0
    assert {f"{IP}/24", f"{IP}/32"} <= node_addresses(lab, "a")
    assert run(lab, "a", "monitor", p, interval_ms=10000).rc == 0
    assert run(lab, "a", "stop", p).rc == 0
    assert f"{IP}/32" not in node_addresses(lab, "a")
    assert f"{IP}/24" in node_addresses(lab, "a")
    assert run(lab, "a", "monitor", p).rc == 7
