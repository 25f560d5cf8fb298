"""Pure decisions of aws-eni: configuration parsing, the attach/detach steps, OS planning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pytest

from ipfailover.aws.ec2 import Attachment, Eni
from ipfailover.eni import attachment as moves
from ipfailover.eni import aws_apply, os_plan
from ipfailover.eni import declaration as eni_agent
from ipfailover.eni import record as eni_record
from ipfailover.eni.attachment import Action, Progress
from ipfailover.host.netlink import Addr, Link, RouteEntry, Rule
from ocf_shim import OCF, ConfigError
from planfakes import FakeRuntime

ENI = "eni-0123456789abcdef0"
ME = "i-0aaaaaaaaaaaaaaaa"
OTHER = "i-0bbbbbbbbbbbbbbbb"
MAC = "02:00:0a:00:03:64"
T, P = 5001, 5001
LINK = Link(index=7, name="eth1", mac=MAC, up=True)


def eni(
    holder: Optional[str] = None,
    status: str = "attached",
    ipv4s: tuple[str, ...] = ("10.0.3.100", "10.0.3.101"),
    ipv6s: tuple[str, ...] = (),
    device_index: int = 1,
) -> Eni:
    attachment = (
        Attachment(id="eni-attach-01234567", instance_id=holder, device_index=device_index,
                   status=status)
        if holder
        else None
    )  # fmt: skip
    return Eni(
        id=ENI,
        status="in-use" if holder else "available",
        subnet_id="subnet-0ccccccccccccccc",
        vpc_id="vpc-11111111",
        az="eu-central-1a",
        mac=MAC,
        source_dest_check=True,
        primary_ip=ipv4s[0],
        private_ips=ipv4s,
        ipv6s=ipv6s,
        attachment=attachment,
    )


def progress(now: float = 10.0, **kw: Optional[float]) -> Progress:
    return Progress(now=now, **kw)


# ----------------------------------------------------------------------------- configuration


def test_parse_config_defaults_follow_the_device_index() -> None:
    cfg = eni_agent.parse_config({"eni_id": ENI})
    assert (cfg.device_index, cfg.table, cfg.priority) == (1, 5001, 5001)
    assert cfg.force_detach is False
    assert cfg.policy_routing is True
    assert cfg.monitor_api == "true"
    assert cfg.ipv6_gateway is None
    cfg = eni_agent.parse_config({"eni_id": ENI, "device_index": 3})
    assert (cfg.table, cfg.priority) == (5003, 5003)


def test_default_table_and_priority_stay_clear_of_cloud_helpers() -> None:
    for index in range(1, eni_agent.DEVICE_INDEX_MAX + 1):
        cfg = eni_agent.parse_config({"eni_id": ENI, "device_index": index})
        for value in (cfg.table, cfg.priority):
            assert value < 10000  # amazon-ec2-net-utils: 10000 + 100 * card + device
            assert value not in eni_agent.RESERVED_TABLES
        assert cfg.priority < 32766  # before the main table's rule


def test_parse_config_explicit_values() -> None:
    cfg = eni_agent.parse_config(
        {
            "eni_id": ENI,
            "device_index": "2",
            "force_detach": "yes",
            "policy_routing": "false",
            "route_table_id": 200,
            "rule_priority": "1000",
            "ipv6_gateway": "FE80::1",
            "monitor_api": False,
        }
    )
    assert (cfg.device_index, cfg.table, cfg.priority) == (2, 200, 1000)
    assert cfg.force_detach is True
    assert cfg.policy_routing is False
    assert cfg.monitor_api == "false"
    assert cfg.ipv6_gateway == "fe80::1"


@pytest.mark.parametrize(
    "overrides",
    [
        {"eni_id": None},
        {"eni_id": ""},
        {"eni_id": "eni-xyz"},
        {"eni_id": "rtb-0123456789abcdef0"},
        {"eni_id": "eni-01234567; reboot"},
        {"eni_id": "eni-" + "a" * 300},
        {"device_index": 0},
        {"device_index": -1},
        {"device_index": 100},
        {"device_index": "one"},
        {"device_index": True},
        {"route_table_id": 254},
        {"route_table_id": 255},
        {"route_table_id": 253},
        {"route_table_id": 0},
        {"route_table_id": 2**32},
        {"route_table_id": "main"},
        {"rule_priority": 0},
        {"rule_priority": 32766},
        {"rule_priority": 40000},
        {"rule_priority": "1e3"},
        {"force_detach": "maybe"},
        {"policy_routing": "2"},
        {"monitor_api": "sure"},
        {"ipv6_gateway": "10.0.3.1"},
        {"ipv6_gateway": "ff02::1"},
        {"ipv6_gateway": "::"},
        {"ipv6_gateway": "fe80::1/64"},
        {"ipv6_gateway": "fe80::1%eth1"},
        {"region": "mars-1"},
        {"endpoint_url": "file:///etc/passwd"},
        {"role_arn": "arn:aws:iam::123:user/x"},
    ],
)
def test_parse_config_rejects_bad_input(overrides: dict[str, object]) -> None:
    params: dict[str, object] = {"eni_id": ENI}
    params.update(overrides)
    with pytest.raises(ConfigError) as info:
        eni_agent.parse_config(params)  # type: ignore[arg-type]
    assert info.value.rc == OCF.ERR_CONFIGURED
    assert "\n" not in info.value.reason
    assert len(info.value.reason) < 400


# ----------------------------------------------------------------------------- the AWS side


def test_available_eni_is_attached_and_the_request_not_repeated_at_once() -> None:
    free = eni()
    assert moves.next_move(free, ME, progress(), False, 5.0).action is Action.ATTACH
    just = progress(now=10.5, attach_sent=10.0)
    assert moves.next_move(free, ME, just, False, 5.0).action is Action.WAIT
    # Still available a second later: the request was lost (or raced); send it again.
    later = progress(now=11.2, attach_sent=10.0)
    assert moves.next_move(free, ME, later, False, 5.0).action is Action.ATTACH


@pytest.mark.parametrize(
    ("status", "action"),
    [("attached", Action.DONE), ("attaching", Action.WAIT), ("detaching", Action.WAIT)],
)
def test_attachment_to_this_instance(status: str, action: Action) -> None:
    assert moves.next_move(eni(ME, status), ME, progress(), True, 0.0).action is action


def test_attachment_elsewhere_is_detached_normally_first() -> None:
    held = eni(OTHER, "attached")
    move = moves.next_move(held, ME, progress(held_since=10.0), True, 5.0)
    assert move.action is Action.DETACH
    assert move.waiting_on == OTHER
    # Right after the request, AWS may still say "attached": wait, do not repeat.
    again = progress(now=10.3, held_since=10.0, detach_sent=10.0)
    assert moves.next_move(held, ME, again, True, 5.0).action is Action.WAIT
    later = progress(now=11.5, held_since=10.0, detach_sent=10.0)
    assert moves.next_move(held, ME, later, True, 5.0).action is Action.DETACH


def test_stuck_detach_is_forced_only_when_allowed_and_only_once() -> None:
    stuck = eni(OTHER, "detaching")
    early = progress(now=12.0, held_since=10.0, detach_sent=10.0)
    assert moves.next_move(stuck, ME, early, True, 5.0).action is Action.WAIT
    due = progress(now=15.0, held_since=10.0, detach_sent=10.0)
    move = moves.next_move(stuck, ME, due, True, 5.0)
    assert move.action is Action.FORCE_DETACH
    assert move.waiting_on == OTHER
    assert moves.next_move(stuck, ME, due, False, 5.0).action is Action.WAIT
    forced = progress(now=16.0, held_since=10.0, detach_sent=10.0, forced_at=15.0)
    assert moves.next_move(stuck, ME, forced, True, 5.0).action is Action.WAIT


def test_attaching_elsewhere_is_waited_for_and_not_forced() -> None:
    move = moves.next_move(eni(OTHER, "attaching"), ME, progress(held_since=0.0), True, 1.0)
    assert move.action is Action.WAIT


def test_release_detaches_only_from_this_instance() -> None:
    for not_here in (eni(), eni(OTHER, "attached"), eni(OTHER, "detaching")):
        assert moves.next_release_move(not_here, ME, progress(), True, 1.0).action is Action.DONE
    assert moves.next_release_move(eni(ME), ME, progress(), False, 1.0).action is Action.DETACH
    sent = progress(now=10.2, held_since=10.0, detach_sent=10.0)
    assert moves.next_release_move(eni(ME), ME, sent, False, 1.0).action is Action.WAIT
    detaching = eni(ME, "detaching")
    assert moves.next_release_move(detaching, ME, sent, True, 1.0).action is Action.WAIT
    due = progress(now=11.5, held_since=10.0, detach_sent=10.0)
    assert moves.next_release_move(detaching, ME, due, True, 1.0).action is Action.FORCE_DETACH
    assert moves.next_release_move(detaching, ME, due, False, 1.0).action is Action.WAIT


def test_stuck_reason_names_the_holder_and_the_way_out() -> None:
    held = progress(now=18.0, held_since=10.0, detach_sent=10.0)
    move = moves.next_move(eni(OTHER, "detaching"), ME, held, False, 5.0)
    reason = moves.stuck_reason(move, held, force_detach=False)
    assert OTHER in reason
    assert "detaching" in reason
    assert "force_detach=true" in reason
    assert "8.0s" in reason
    forced = progress(now=18.0, held_since=10.0, forced_at=15.0)
    move = moves.next_move(eni(OTHER, "detaching"), ME, forced, True, 5.0)
    assert "force_detach=true" not in moves.stuck_reason(move, forced, force_detach=True)


def test_poll_interval_is_short_then_backs_off() -> None:
    steps = [moves.poll_interval(t) for t in (0.0, 1.9, 2.0, 9.9, 10.0, 300.0)]
    assert steps == sorted(steps)
    assert steps[0] <= 0.2
    assert steps[-1] <= 0.5


def test_force_after_is_a_bounded_share_of_the_budget() -> None:
    assert moves.force_after(9.0) == pytest.approx(3.6)
    assert moves.force_after(600.0) == moves.FORCE_AFTER_MAX
    assert moves.force_after(0.0) == 0.0


# ----------------------------------------------------------------------------- the OS side


def facts(ipv6s: tuple[str, ...] = ()) -> os_plan.EniFacts:
    return os_plan.eni_facts(eni(ME, ipv6s=ipv6s), "10.0.3.0/24", ("2001:db8:0:3::/64",))


def wanted(ipv6_gateway: Optional[str] = None, policy: bool = True) -> os_plan.WantedOs:
    return os_plan.wanted_os(facts(("2001:db8:0:3::100",)), policy, T, P, ipv6_gateway)


def good_state(w: os_plan.WantedOs, link: Link = LINK) -> os_plan.ObservedOs:
    return os_plan.ObservedOs(
        link=link,
        addresses=tuple(Addr(ip, plen, link.index, None) for ip, plen in w.addresses),
        rules=(
            *(Rule(P, T, src) for src in w.rules),
            Rule(0, 255, None),
            Rule(32766, 254, None),
        ),
        routes=tuple(
            RouteEntry(None if dst.endswith("/0") else dst, gw, link.index, T)
            for dst, gw in w.routes
        ),
    )


def test_router_is_the_first_host_of_the_subnet() -> None:
    assert os_plan.router("10.0.3.0/24") == "10.0.3.1"
    assert os_plan.router("172.31.16.0/20") == "172.31.16.1"


def test_wanted_os_v4_and_v6() -> None:
    w = wanted()
    assert w.addresses == (("10.0.3.100", 24), ("10.0.3.101", 24), ("2001:db8:0:3::100", 64))
    assert w.rules == ("10.0.3.100/32", "10.0.3.101/32", "2001:db8:0:3::100/128")
    assert w.routes == (
        ("10.0.3.0/24", None),
        ("2001:db8:0:3::/64", None),
        ("0.0.0.0/0", "10.0.3.1"),
    )
    assert ("::/0", "fe80::1") in wanted("fe80::1").routes
    bare = wanted(policy=False)
    assert (bare.rules, bare.routes) == ((), ())
    assert bare.addresses == w.addresses


def test_plan_is_empty_when_everything_is_in_place() -> None:
    w = wanted("fe80::1")
    plan = os_plan.plan_os(w, good_state(w))
    assert plan.empty
    assert os_plan.os_problems(plan, w) == []
    assert os_plan.monitor_problems(w, good_state(w)) == []


def test_plan_from_nothing_configures_everything() -> None:
    w = wanted()
    bare = os_plan.ObservedOs(
        link=Link(7, "eth1", MAC, up=False), addresses=(), rules=(), routes=()
    )
    plan = os_plan.plan_os(w, bare)
    assert plan.bring_up
    assert plan.add_addresses == w.addresses
    assert plan.add_rules == w.rules
    assert plan.set_routes == w.routes
    assert not plan.flush_routes
    assert not plan.del_rules
    # 1 link + 3 addresses + 3 rules + 3 routes
    assert len(os_plan.os_problems(plan, w, "eth1")) == 10


def test_missing_link_is_the_only_problem_reported() -> None:
    w = wanted()
    plan = os_plan.plan_os(w, os_plan.ObservedOs(link=None, addresses=(), rules=(), routes=()))
    assert plan.link_missing
    assert len(os_plan.os_problems(plan, w)) == 1


def test_removed_rule_and_route_are_noticed() -> None:
    w = wanted()
    state = good_state(w)
    broken = os_plan.ObservedOs(
        link=state.link,
        addresses=state.addresses,
        rules=tuple(r for r in state.rules if r.src != "10.0.3.101/32"),
        routes=tuple(r for r in state.routes if r.gateway is None),
    )
    plan = os_plan.plan_os(w, broken)
    assert plan.add_rules == ("10.0.3.101/32",)
    assert plan.set_routes == (("0.0.0.0/0", "10.0.3.1"),)
    assert len(os_plan.monitor_problems(w, broken)) == 2


def test_address_with_another_prefix_length_is_left_alone() -> None:
    w = wanted()
    state = good_state(w)
    helper = os_plan.ObservedOs(
        link=state.link,
        addresses=tuple(Addr(a.ip, 32, a.index, None) for a in state.addresses),
        rules=state.rules,
        routes=state.routes,
    )
    assert os_plan.plan_os(w, helper).empty


def test_route_on_another_link_is_replaced() -> None:
    w = wanted()
    state = good_state(w)
    moved = os_plan.ObservedOs(
        link=state.link,
        addresses=state.addresses,
        rules=state.rules,
        routes=tuple(RouteEntry(r.dst, r.gateway, 99, T) for r in state.routes),
    )
    plan = os_plan.plan_os(w, moved)
    assert set(plan.set_routes) == set(w.routes)
    assert not plan.flush_routes
    assert len(os_plan.monitor_problems(w, moved)) == len(w.routes)


def test_foreign_routes_and_stale_rules_are_tidied_but_do_not_fail_monitor() -> None:
    w = wanted()
    state = good_state(w)
    messy = os_plan.ObservedOs(
        link=state.link,
        addresses=state.addresses,
        rules=(*state.rules, Rule(P, T, "10.0.3.55/32")),
        routes=(*state.routes, RouteEntry("192.168.0.0/16", None, LINK.index, T)),
    )
    plan = os_plan.plan_os(w, messy)
    assert plan.flush_routes
    assert plan.set_routes == w.routes  # everything again after the flush
    assert plan.del_rules == ("10.0.3.55/32",)
    assert plan.add_rules == ()
    assert os_plan.monitor_problems(w, messy) == []


def test_foreign_rules_use_our_table_or_priority() -> None:
    rules = [
        Rule(P, T, "10.0.3.100/32"),  # ours
        Rule(P, 10001, "10.0.9.9/32"),  # someone else at our priority
        Rule(20, T, "10.0.8.8/32"),  # someone else into our table
        Rule(10001, 10001, "10.0.3.100/32"),  # amazon-ec2-net-utils: fine
        Rule(32766, 254, None),
    ]
    assert os_plan.foreign_rules(rules, T, P) == rules[1:3]
    assert os_plan.own_rules(rules, T, P) == rules[:1]


def test_route_key_normalizes_spelling_and_defaults() -> None:
    assert os_plan.route_key(RouteEntry(None, "10.0.3.1", 7, T)) == ("0.0.0.0/0", "10.0.3.1")
    assert os_plan.route_key(RouteEntry(None, "FE80::1", 7, T)) == ("::/0", "fe80::1")
    assert os_plan.route_key(RouteEntry("2001:db8:0:3:0::/64", None, 7, T)) == (
        "2001:db8:0:3::/64",
        None,
    )


def test_record_round_trip_and_damage(tmp_path: Path) -> None:
    path = eni_record.record_path({"HA_RSCTMP": str(tmp_path)}, ENI, ME)
    assert path.startswith(str(tmp_path))
    assert eni_record.load_record(path) is None
    f = facts(("2001:db8:0:3::100",))
    eni_record.save_record(path, f, ME)
    assert eni_record.load_record(path) == f
    assert os_plan.same_eni(f, eni(ME, ipv6s=("2001:db8:0:3::100",)))
    assert not os_plan.same_eni(f, eni(ME, ipv4s=("10.0.3.100",), ipv6s=("2001:db8:0:3::100",)))
    Path(path).write_text(json.dumps({"eni_id": ENI, "mac": MAC}))
    assert eni_record.load_record(path) is None
    Path(path).write_text("{not json")
    assert eni_record.load_record(path) is None
    eni_record.remove_record(path)
    eni_record.remove_record(path)
    assert not Path(path).exists()


def test_record_default_location_is_the_resource_agents_runtime_dir() -> None:
    assert eni_record.record_path({}, ENI, ME) == f"/run/resource-agents/aws-eni-{ENI}-{ME}.json"


def test_primary_interfaces_are_not_movable() -> None:
    assert aws_apply.primary_problem(eni(OTHER, device_index=0)) is not None
    assert aws_apply.primary_problem(eni(ME, device_index=0)) is not None
    assert aws_apply.primary_problem(eni(OTHER, device_index=1)) is None
    assert aws_apply.primary_problem(eni()) is None


# ----------------------------------------------------------------------------- one plan, two modes


def test_plan_is_the_decision_tables_moves_then_the_os() -> None:
    held = eni(OTHER)
    steps = moves.plan_start(held, ME, 1, force_detach=True, policy_routing=True)
    assert steps == (
        moves.Detach("eni-attach-01234567", OTHER, may_force=True),
        moves.Attach(ENI, ME, 1),
        moves.ConfigureOs(policy_routing=True),
    )
    assert [s.operation for s in steps[:2]] == ["DetachNetworkInterface", "AttachNetworkInterface"]
    assert {s.principal for s in steps[:2]} == {"node"}
    # The order next_move sends them in: detach while held elsewhere, attach once available.
    assert moves.next_move(held, ME, progress(), False, 30.0).action is Action.DETACH
    assert moves.next_move(eni(), ME, progress(), False, 30.0).action is Action.ATTACH
    assert moves.plan_start(eni(), ME, 1, False, False)[0] == moves.Attach(ENI, ME, 1)
    assert moves.plan_start(eni(ME), ME, 1, False, False) == (moves.ConfigureOs(False),)


def test_check_mode_makes_the_dry_runs_only() -> None:
    from ipfailover.eni import actions

    cfg = eni_agent.parse_config({"eni_id": ENI, "force_detach": "true"})
    seen = actions.Observation(ME, eni(OTHER))
    rt = FakeRuntime()
    actions.apply(None, rt, cfg, seen, actions.plan(cfg, seen), check=True)  # type: ignore[arg-type]
    assert rt.api().changing() == []
    assert rt.api().dry_runs() == ["DetachNetworkInterface", "AttachNetworkInterface"]
    assert [kw["Force"] for op, _, kw in rt.api().calls if op.startswith("Detach")] == [True]
    assert rt.netlink.calls == []
