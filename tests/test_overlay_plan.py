"""Pure decisions of aws-overlayip: configuration parsing and route planning."""

from __future__ import annotations

import threading
import time
from ipaddress import ip_address

import pytest

from ipfailover.aws.ec2 import Route, RouteTable
from ipfailover.overlayip import actions as overlayip
from ipfailover.overlayip import declaration as overlayip_agent
from ipfailover.runtime import run_parallel
from ocf_shim import OCF, ConfigError, GenericError
from planfakes import FakeRuntime

ENI = "eni-0123456789abcdef0"
OTHER = "eni-0fedcba9876543210"


def table(table_id: str, *routes: Route, vpc: str = "vpc-11111111") -> RouteTable:
    return RouteTable(id=table_id, vpc_id=vpc, routes=routes, tags={})


def route(dest: str, eni: str | None = None, state: str = "active", gw: str | None = None) -> Route:
    return Route(destination=dest, eni_id=eni, instance_id=None, state=state, other_target=gw)


def params(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"ip": "192.168.10.1", "routing_table": "rtb-11111111"}
    base.update(kw)
    return base


def test_plan_routes_creates_replaces_and_leaves_alone() -> None:
    tables = [
        table("rtb-00000001", route("10.0.0.0/16", gw="local")),
        table("rtb-00000002", route("192.168.10.1/32", OTHER)),
        table("rtb-00000003", route("192.168.10.1/32", ENI)),
        table("rtb-00000004", route("192.168.10.1/32", ENI, state="blackhole")),
    ]
    changes = overlayip.plan_routes("192.168.10.1/32", ENI, tables, create=True)
    assert [(c.table_id, c.kind) for c in changes] == [
        ("rtb-00000001", "create"),
        ("rtb-00000002", "replace"),
        ("rtb-00000004", "replace"),
    ]


def test_plan_routes_without_create_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError) as info:
        overlayip.plan_routes("192.168.10.1/32", ENI, [table("rtb-00000001")], create=False)
    assert info.value.rc == OCF.ERR_CONFIGURED


def test_route_problems_empty_only_when_every_table_points_here() -> None:
    good = table("rtb-00000001", route("192.168.10.1/32", ENI))
    assert overlayip.route_problems("192.168.10.1/32", ENI, [good]) == []
    bad = [good, table("rtb-00000002", route("192.168.10.1/32", OTHER)), table("rtb-00000003")]
    assert len(overlayip.route_problems("192.168.10.1/32", ENI, bad)) == 2


def test_ipv6_routes_match_whatever_the_spelling() -> None:
    t = table("rtb-00000001", route("2001:db8:0:0::1/128", ENI))
    assert overlayip.route_problems("2001:db8::1/128", ENI, [t]) == []


def test_overlaps_vpc() -> None:
    assert overlayip.overlaps_vpc(ip_address("10.0.3.4"), ["10.0.0.0/16"]) == "10.0.0.0/16"
    assert overlayip.overlaps_vpc(ip_address("192.168.1.1"), ["10.0.0.0/16"]) is None


def test_parse_config_defaults() -> None:
    cfg = overlayip_agent.parse_config(params())
    assert cfg.cidr == "192.168.10.1/32"
    assert cfg.table_ids == ("rtb-11111111",)
    assert cfg.interface == "eth0"
    assert cfg.source_dest_check == "verify"
    assert overlayip_agent.parse_config(params(ip="2001:db8::5")).cidr == "2001:db8::5/128"


def test_parse_config_tag_and_list() -> None:
    cfg = overlayip_agent.parse_config(
        params(routing_table="rtb-11111111, rtb-22222222,rtb-11111111", routing_table_tag="ha=sap")
    )
    assert cfg.table_ids == ("rtb-11111111", "rtb-22222222")
    assert cfg.table_tag == ("ha", "sap")


@pytest.mark.parametrize(
    "overrides",
    [
        {"ip": "192.168.10.300"},
        {"ip": "10.0.0.1/32"},
        {"ip": "127.0.0.1"},
        {"ip": "169.254.169.254"},
        {"ip": "1.2.3.4; rm -rf /"},
        {"routing_table": None},
        {"routing_table": "rtb-xyz"},
        {"routing_table": "subnet-11111111"},
        {"routing_table": "rtb-11111111;id"},
        {"routing_table": None, "routing_table_tag": "novalue"},
        {"interface": "eth0; reboot"},
        {"interface": "x" * 20},
        {"source_dest_check": "maybe"},
        {"label": "wrong:label"},
        {"region": "mars-1"},
        {"endpoint_url": "file:///etc/passwd"},
        {"role_arn": "arn:aws:iam::123:user/x"},
        {"ca_bundle": "relative/path.pem"},
    ],
)
def test_parse_config_rejects_bad_input(overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        overlayip_agent.parse_config(params(**overrides))
    assert info.value.rc == OCF.ERR_CONFIGURED
    assert "\n" not in info.value.reason


# ----------------------------------------------------------------------------- one plan, two modes


def observation(check: bool = True) -> overlayip.Observation:
    tables = (
        table("rtb-00000001"),
        table("rtb-00000002", route("192.168.10.1/32", OTHER)),
        table("rtb-00000003", route("192.168.10.1/32", ENI)),
    )
    return overlayip.Observation(2, ENI, "vpc-11111111", tables, check)


def test_plan_names_every_call_in_order_and_whose_credentials() -> None:
    cfg = overlayip_agent.parse_config(params(source_dest_check="disable"))
    steps = overlayip.plan(cfg, observation())
    assert [type(s).__name__ for s in steps] == [
        "DisableSourceDest",
        "AddAddress",
        "RouteChange",
        "RouteChange",
        "RouteChange",
    ]
    aws = [s for s in steps if not isinstance(s, overlayip.AddAddress)]
    assert [(s.operation, s.principal) for s in aws] == [
        ("ModifyNetworkInterfaceAttribute", "node"),
        ("CreateRoute", "node"),
        ("ReplaceRoute", "node"),
        ("ReplaceRoute", "node"),
    ]
    assert [s.kind for s in steps if isinstance(s, overlayip.RouteChange)] == [
        "create",
        "replace",
        "keep",
    ]
    assert overlayip.plan(cfg, observation(check=False))[0] == steps[1]  # check already off


def test_plan_refuses_what_no_step_fixes() -> None:
    with pytest.raises(ConfigError, match="source/destination check is on"):
        overlayip.plan(overlayip_agent.parse_config(params()), observation())
    cfg = overlayip_agent.parse_config(params(source_dest_check="ignore", create_route="false"))
    with pytest.raises(ConfigError, match="create_route is false"):
        overlayip.plan(cfg, observation(check=False))


def test_start_and_validate_make_the_plans_calls_check_mode_changes_nothing() -> None:
    cfg = overlayip_agent.parse_config(params(source_dest_check="disable"))
    steps = overlayip.plan(cfg, observation())
    real, checked = FakeRuntime(), FakeRuntime()
    overlayip.apply(real, cfg, steps)  # type: ignore[arg-type]
    overlayip.apply(checked, cfg, steps, check=True)  # type: ignore[arg-type]
    # start: the changes, the route already ours untouched, the address added
    assert real.api().changing() == [
        "ModifyNetworkInterfaceAttribute",
        "CreateRoute",
        "ReplaceRoute",
    ]
    assert real.api().dry_runs() == []
    assert [name for name, _ in real.netlink.calls] == ["add_address"]
    # validate-all: the DryRun of every AWS step (the kept route's too), nothing else
    assert checked.api().changing() == []
    assert checked.api().dry_runs() == [
        "ModifyNetworkInterfaceAttribute",
        "CreateRoute",
        "ReplaceRoute",
        "ReplaceRoute",
    ]
    assert checked.netlink.calls == []


# -- run_parallel: the route changes of one start ----------------------------------------------


def test_parallel_changes_return_in_order() -> None:
    assert run_parallel(lambda n: n * n, list(range(12)), workers=3) == [n * n for n in range(12)]


def test_parallel_changes_stop_at_the_first_error() -> None:
    """A failed change ends the start at once: changes not begun never begin, and the ones in
    flight are not waited for (the process ends without them: Agent.run)."""
    called: list[int] = []
    release = threading.Event()

    def change(n: int) -> int:
        called.append(n)
        if n == 0:
            raise GenericError("ReplaceRoute refused")
        release.wait(5)
        return n

    started = time.monotonic()
    with pytest.raises(GenericError, match="refused"):
        run_parallel(change, list(range(20)), workers=2)
    took = time.monotonic() - started
    release.set()
    time.sleep(0.2)
    assert took < 2
    assert len(called) <= 3, called  # 0, the one in flight, at most one taken before the cancel
