"""Pure decisions of aws-secip: configuration parsing, who holds the address, subnet checks and
the start plan. No AWS, no OS."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pytest

from ipfailover.aws.ec2 import Address, Eni
from ipfailover.config.syntax import ip_object, parse_ip
from ipfailover.host.netlink import Link
from ipfailover.secip import declaration as secip_agent
from ipfailover.secip import plan as secip
from ocf_shim import OCF, ConfigError
from planfakes import FakeRuntime

if TYPE_CHECKING:
    from ipfailover.config.params import IPAddress, Value

OURS = "eni-0123456789abcdef0"
OTHER = "eni-0fedcba9876543210"
THIRD = "eni-0aaaaaaaaaaaaaaaa"
SUBNET = "subnet-0123456789abcdef0"
IP4 = ip_object(parse_ip("ip", "10.0.1.50"))
IP6 = ip_object(parse_ip("ip", "2001:db8:0:1::50"))
ROOT = Path(__file__).resolve().parent.parent


def eni(eni_id: str, primary: str, *secondary: str, ipv6s: tuple[str, ...] = ()) -> Eni:
    return Eni(
        id=eni_id,
        status="in-use",
        subnet_id=SUBNET,
        vpc_id="vpc-11111111",
        az="eu-central-1a",
        mac="02:00:00:00:00:01",
        source_dest_check=True,
        primary_ip=primary,
        private_ips=(primary, *secondary),
        ipv6s=ipv6s,
        attachment=None,
    )


def address(eni_id: Optional[str], private_ip: Optional[str]) -> Address:
    return Address(
        allocation_id="eipalloc-0123456789abcdef0",
        public_ip="198.51.100.7",
        association_id="eipassoc-12345678" if eni_id else None,
        eni_id=eni_id,
        private_ip=private_ip,
        instance_id=None,
    )


def params(**kw: Value) -> dict[str, Value]:
    base: dict[str, Value] = {"ip": "10.0.1.50"}
    base.update(kw)
    return base


def plan(
    ip: IPAddress,
    held: secip.Holding,
    eip: Optional[Address] = None,
    os_prefix: Optional[int] = 24,
    want_prefix: int = 24,
) -> secip.Plan:
    return secip.plan_start(ip, OURS, held, eip, os_prefix=os_prefix, want_prefix=want_prefix)


# ----------------------------------------------------------------------------- holding


def test_holding_reads_secondary_and_primary_addresses() -> None:
    enis = [eni(OURS, "10.0.1.10"), eni(OTHER, "10.0.1.11", "10.0.1.50")]
    held = secip.holding(IP4, enis)
    assert held == secip.Holding(holders=(OTHER,), primary_of=None)
    assert not held.held_by(OURS)
    assert held.others(OURS) == (OTHER,)
    assert secip.holding(IP4, [eni(OTHER, "10.0.1.50")]).primary_of == OTHER


def test_holding_ignores_enis_that_do_not_carry_the_address() -> None:
    # Whatever the filter of the call did, only ENIs that list the address count.
    assert secip.holding(IP4, [eni(OURS, "10.0.1.10", "10.0.1.51")]).holders == ()
    assert secip.holding(IP4, []).holders == ()


def test_holding_ipv6_whatever_the_spelling() -> None:
    enis = [eni(OTHER, "10.0.1.11", ipv6s=("2001:0db8:0000:0001:0000:0000:0000:0050",))]
    assert secip.holding(IP6, enis).holders == (OTHER,)
    assert secip.holding(IP6, enis).primary_of is None
    # An IPv4 address is never found among IPv6 ones and vice versa.
    assert secip.holding(IP4, enis).holders == ()


# ----------------------------------------------------------------------------- plan


def test_plan_is_empty_when_aws_and_os_are_right() -> None:
    held = secip.Holding((OURS,), None)
    assert plan(IP4, held).empty
    assert plan(IP4, held, eip=address(OURS, "10.0.1.50")).empty


def test_plan_reassigns_from_another_eni_and_adds_to_os() -> None:
    got = plan(IP4, secip.Holding((OTHER,), None), os_prefix=None)
    assert got == secip.Plan(
        take_from=(), assign=True, associate_eip=False, os_remove_prefix=None, os_add=True
    )


def test_plan_assigns_an_unheld_address() -> None:
    got = plan(IP4, secip.Holding((), None))
    assert got.assign
    assert not got.os_add
    assert not got.empty


def test_plan_ipv6_unassigns_from_the_holder_first() -> None:
    got = plan(IP6, secip.Holding((OTHER,), None), os_prefix=None, want_prefix=64)
    assert got.take_from == (OTHER,)
    assert got.assign
    # Listed on ours and, transiently, on another: release the other, do not assign again.
    both = plan(IP6, secip.Holding((OURS, OTHER), None), os_prefix=64, want_prefix=64)
    assert (both.take_from, both.assign, both.empty) == ((OTHER,), False, False)


def test_plan_ipv4_never_unassigns_from_others() -> None:
    # AllowReassignment moves IPv4 atomically: nothing is taken from anyone by hand.
    assert plan(IP4, secip.Holding((OTHER, THIRD), None)).take_from == ()


def test_plan_fixes_a_wrong_prefix_on_the_interface() -> None:
    got = plan(IP4, secip.Holding((OURS,), None), os_prefix=32, want_prefix=24)
    assert (got.os_remove_prefix, got.os_add, got.assign) == (32, True, False)


@pytest.mark.parametrize(
    ("eip", "associate"),
    [
        (address(None, None), True),
        (address(OTHER, "10.0.1.50"), True),
        (address(OURS, "10.0.1.10"), True),  # right ENI, wrong private address
        (address(OURS, "10.0.1.50"), False),
    ],
)
def test_plan_associates_the_eip_unless_it_points_here(eip: Address, associate: bool) -> None:
    assert plan(IP4, secip.Holding((OURS,), None), eip=eip).associate_eip is associate


def test_plan_refuses_a_primary_address() -> None:
    for owner in (OTHER, OURS):
        with pytest.raises(ConfigError) as info:
            plan(IP4, secip.Holding((owner,), owner))
        assert info.value.rc == OCF.ERR_CONFIGURED
        assert owner in info.value.reason


# ----------------------------------------------------------------------------- aws_problems


def test_aws_problems() -> None:
    assert secip.aws_problems(IP4, OURS, secip.Holding((OURS,), None)) == []
    assert secip.aws_problems(IP4, OURS, secip.Holding((OTHER,), None)) == [
        f"10.0.1.50 is assigned to {OTHER}, not to {OURS}"
    ]
    assert len(secip.aws_problems(IP4, OURS, secip.Holding((), None))) == 1
    good, wrong = address(OURS, "10.0.1.50"), address(OTHER, "10.0.1.50")
    assert secip.aws_problems(IP4, OURS, secip.Holding((OURS,), None), good) == []
    problems = secip.aws_problems(IP4, OURS, secip.Holding((OURS,), None), wrong)
    assert len(problems) == 1
    assert OTHER in problems[0]


def test_poll_interval_is_short_then_gentler() -> None:
    assert secip.poll_interval(0) == secip.POLL_INTERVAL <= 0.1
    assert secip.poll_interval(secip.SLOW_POLL_AFTER) == secip.SLOW_POLL_INTERVAL <= 0.5
    assert all(secip.poll_interval(n) <= 0.5 for n in range(200))


# ----------------------------------------------------------------------------- subnet


@pytest.mark.parametrize(
    ("ip", "blocks", "fragment"),
    [
        ("10.0.1.50", ["10.0.1.0/24"], None),
        ("10.0.1.4", ["10.0.1.0/24"], None),
        ("10.0.1.254", ["10.0.1.0/24"], None),
        ("10.0.2.50", ["10.0.1.0/24"], "outside subnet"),
        ("10.0.1.0", ["10.0.1.0/24"], "reserved"),
        ("10.0.1.1", ["10.0.1.0/24"], "reserved"),
        ("10.0.1.3", ["10.0.1.0/24"], "reserved"),
        ("10.0.1.255", ["10.0.1.0/24"], "reserved"),
        ("10.0.1.50", [], "no IPv4 CIDR block"),
        ("10.0.1.50", ["garbage", " 10.0.1.0/24 ", ""], None),
        ("2001:db8:0:1::50", ["2001:db8:0:1::/64"], None),
        ("2001:db8:0:2::50", ["2001:db8:0:1::/64"], "outside subnet"),
        ("2001:db8:0:1::50", ["10.0.1.0/24"], "no IPv6 CIDR block"),
    ],
)
def test_subnet_problem(ip: str, blocks: list[str], fragment: Optional[str]) -> None:
    problem = secip.subnet_problem(ip_object(parse_ip("ip", ip)), SUBNET, blocks, OURS)
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None
        assert fragment in problem
        assert SUBNET in problem  # the reason names the subnet


def test_subnet_prefixlen() -> None:
    assert secip.subnet_prefixlen(IP4, ["10.0.0.0/16"]) == 16
    assert secip.subnet_prefixlen(IP4, ["2001:db8::/64", "10.0.1.0/24"]) == 24
    assert secip.subnet_prefixlen(IP6, ["2001:db8:0:1::/64"]) == 64
    assert secip.subnet_prefixlen(IP4, ["10.9.0.0/16"]) is None


def test_primary_of_interface() -> None:
    assert secip.primary_of_interface("10.0.1.10\n10.0.1.50\n") == ip_object("10.0.1.10")
    assert secip.primary_of_interface("") is None
    assert secip.primary_of_interface(None) is None
    assert secip.primary_of_interface("<html>") is None


# ----------------------------------------------------------------------------- primary_verdict
# Is the address found on the interface a primary address? Facts only; "unsure" otherwise.

P, N, U = secip.PRIMARY, secip.NOT_PRIMARY, secip.UNSURE
MINE = ["10.0.1.10", "10.0.1.50"]  # IMDS local-ipv4s: our ENI's primary first
ITS_OWN = ["10.0.1.50", "10.0.1.60"]  # ...when 10.0.1.50 is the primary
HELD = secip.Holding((OURS,), None)
HELD_AS_PRIMARY = secip.Holding((OURS,), OURS)
VERDICTS = [
    # (ip, recorded, kernel_secondary, interface_ips, held, expected)
    (IP4, False, False, None, None, U),  # IMDS down, no record, kernel primary: unsure
    (IP4, False, None, None, None, U),
    (IP4, True, False, None, None, N),  # our record
    (IP4, False, True, None, None, N),  # the kernel's secondary flag
    (IP4, False, False, MINE, None, N),  # IMDS names another primary
    (IP4, False, False, [], None, U),  # IMDS answered nothing usable
    (IP4, False, False, ["<html>"], None, U),
    (IP4, False, False, None, HELD, N),  # EC2: nobody's primary
    (IP4, False, False, ITS_OWN, None, P),  # IMDS: it is the primary
    (IP4, True, True, ITS_OWN, None, P),  # positive facts win over record and flag
    (IP4, True, True, None, HELD_AS_PRIMARY, P),
    (IP6, False, None, None, None, U),  # IPv6: no flag
    (IP6, False, None, ["2001:db8:0:1::50"], None, U),  # listed on our ENI, as its own are
    (IP6, False, None, ["2001:db8:0:1::50"], HELD, U),
    (IP6, True, None, None, None, N),  # our record
    (IP6, False, None, ["2001:db8:0:1::99"], None, N),  # not on our ENI: not its own
    (IP6, False, None, None, secip.Holding((OTHER,), None), N),  # EC2: on another ENI
]


@pytest.mark.parametrize("case", VERDICTS, ids=[str(i) for i in range(len(VERDICTS))])
def test_primary_verdict_decides_from_facts_only(case: tuple[Any, ...]) -> None:
    ip, recorded, secondary, ips, held, expected = case
    verdict = secip.primary_verdict(
        ip,
        recorded=recorded,
        kernel_secondary=secondary,
        interface_ips=ips,
        held=held,
        eni_id=OURS,
    )
    assert verdict.state == expected


# ----------------------------------------------------------------------------- configuration


def test_parse_config_defaults() -> None:
    cfg = secip_agent.parse_config(params())
    assert cfg.ip == IP4
    assert cfg.interface == "eth0"
    assert cfg.cidr_netmask is None  # the subnet's prefix length, found at start
    assert cfg.eip_allocation_id is None
    assert cfg.unassign_on_stop is True
    assert cfg.monitor_api == "true"
    assert cfg.aws.endpoint_url is None


def test_parse_config_tolerates_blanks_around_the_address() -> None:
    assert secip_agent.parse_config(params(ip=" 10.0.1.50 ")).ip == IP4


def test_parse_config_explicit_values() -> None:
    cfg = secip_agent.parse_config(
        params(
            interface="ens5",
            cidr_netmask=32,
            elastic_ip_allocation_id="eipalloc-0123456789abcdef0",
            unassign_on_stop=False,
            monitor_api=False,
            endpoint_url="http://127.0.0.1:5000",
        )
    )
    assert (cfg.interface, cfg.cidr_netmask, cfg.eip_allocation_id) == (
        "ens5",
        32,
        "eipalloc-0123456789abcdef0",
    )
    assert (cfg.unassign_on_stop, cfg.monitor_api) == (False, "false")
    v6 = secip_agent.parse_config(params(ip="2001:DB8:0:1::50", cidr_netmask="128"))
    assert (v6.version, v6.cidr_netmask, str(v6.ip)) == (6, 128, "2001:db8:0:1::50")
    assert secip_agent.parse_config(params(cidr_netmask="")).cidr_netmask is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"ip": "10.0.1.300"},
        {"ip": "10.0.1.50/32"},
        {"ip": "127.0.0.1"},
        {"ip": "169.254.169.254"},
        {"ip": "fe80::1"},
        {"ip": "::ffff:10.0.1.50"},
        {"ip": "0.0.0.0"},
        {"ip": "224.0.0.1"},
        {"ip": "$(reboot)"},
        {"ip": "10.0.1.50; rm -rf /"},
        {"ip": "x" * 5000},
        {"ip": ""},
        {"interface": "eth0; reboot"},
        {"interface": "x" * 20},
        {"interface": "../eth0"},
        {"cidr_netmask": 0},
        {"cidr_netmask": 33},
        {"cidr_netmask": -1},
        {"cidr_netmask": "255.255.255.0"},
        {"cidr_netmask": "24abc"},
        {"cidr_netmask": True},
        {"ip": "2001:db8:0:1::50", "cidr_netmask": 129},
        {"elastic_ip_allocation_id": "eipalloc-xyz"},
        {"elastic_ip_allocation_id": "eni-0123456789abcdef0"},
        {"elastic_ip_allocation_id": "198.51.100.7"},
        {"ip": "2001:db8:0:1::50", "elastic_ip_allocation_id": "eipalloc-0123456789abcdef0"},
        {"region": "mars-1"},
        {"endpoint_url": "file:///etc/passwd"},
        {"role_arn": "arn:aws:iam::123:user/x"},
        {"ca_bundle": "relative/path.pem"},
    ],
)
def test_parse_config_rejects_bad_input(overrides: dict[str, Value]) -> None:
    with pytest.raises(ConfigError) as info:
        secip_agent.parse_config(params(**overrides))
    assert info.value.rc == OCF.ERR_CONFIGURED
    assert info.value.reason
    assert "\n" not in info.value.reason
    assert len(info.value.reason) < 400


# ----------------------------------------------------------------------------- meta-data


def test_metadata_declares_the_parameters_and_defaults() -> None:
    root = ET.fromstring(secip_agent.AGENT.metadata_xml().split("\n", 2)[2])  # noqa: S314
    found = {
        p.get("name"): (p.get("required"), p.get("unique"), p.find("content"))
        for p in root.iter("parameter")
    }
    assert found["ip"][:2] == ("1", "1")
    defaults = {
        name: (c.get("type"), c.get("default"))
        for name, (_, _, c) in found.items()
        if c is not None
    }
    assert defaults["interface"] == ("string", "eth0")
    assert defaults["cidr_netmask"] == ("integer", None)
    assert defaults["unassign_on_stop"] == ("boolean", "true")
    assert defaults["monitor_api"] == ("string", "true")  # true, deep or false
    assert defaults["elastic_ip_allocation_id"] == ("string", None)
    for name in ("region", "profile", "role_arn", "endpoint_url", "proxy", "ca_bundle"):
        assert name in found
    actions = {a.get("name") for a in root.iter("action")}
    assert actions == {"start", "stop", "monitor", "validate-all", "meta-data"}


def test_metadata_is_valid_against_the_schemas() -> None:
    import test_metadata_schemas as schemas

    xml = secip_agent.AGENT.metadata_xml()
    schemas.xmllint(xml, "--relaxng", str(schemas.OCF_11_RNG))
    if schemas.DTD.exists():
        schemas.xmllint(xml, "--dtdvalid", str(schemas.DTD))
        schemas.xmllint(xml, "--relaxng", str(schemas.RESOURCE_AGENTS_RNG))


def test_meta_data_imports_neither_botocore_nor_pyroute2() -> None:
    code = f"""
import contextlib, io, sys
sys.path.insert(0, {str(ROOT / "lib")!r})
from ipfailover.secip.declaration import AGENT  # what the agent script runs
with contextlib.redirect_stdout(io.StringIO()) as out:
    assert AGENT.main([{str(ROOT / "agents" / "aws-secip")!r}, "meta-data"]) == 0
assert 'resource-agent name="aws-secip"' in out.getvalue()
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{"botocore", "boto3", "pyroute2"}})
assert not heavy, heavy
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


# ----------------------------------------------------------------------------- one plan, two modes


def observed(
    ip: IPAddress, held: secip.Holding, eip: Optional[Address], present: Optional[int] = None
) -> secip.Observation:
    link = Link(index=2, name="eth0", mac="02:00:00:00:00:01", up=True)
    return secip.Observation(link, OURS, 24 if ip.version == 4 else 64, held, eip, present)


def test_plan_names_every_call_whose_credentials_and_what_dry_run_can_check() -> None:
    seen = observed(IP6, secip.Holding((OTHER,), None), address(OTHER, "10.0.1.9"))
    steps = secip.plan(seen, IP6).steps
    assert steps == (
        secip.AwsStep("UnassignIpv6Addresses", OTHER, secip.NO_DRY_RUN),
        secip.AwsStep("AssignIpv6Addresses", OURS, secip.NO_DRY_RUN),
        secip.OsStep("add", 64),
        secip.AwsStep("AssociateAddress", OURS),
    )
    assert {s.principal for s in steps if isinstance(s, secip.AwsStep)} == {"node"}
    ip4 = secip.plan(observed(IP4, secip.Holding((OTHER,), None), None), IP4).steps
    assert [s.operation for s in ip4 if isinstance(s, secip.AwsStep)] == [
        "AssignPrivateIpAddresses"
    ]
    # Nothing to change: no step, but the Elastic IP's call stays for validate-all to check.
    done = secip.plan(
        observed(IP4, secip.Holding((OURS,), None), address(OURS, "10.0.1.50"), 24), IP4
    )
    assert done.empty
    assert done.steps == (secip.AwsStep("AssociateAddress", OURS),)


def test_check_mode_makes_the_dry_runs_only() -> None:
    from ipfailover.secip import actions

    cfg = secip_agent.parse_config(params(elastic_ip_allocation_id="eipalloc-0123456789abcdef0"))
    seen = observed(IP4, secip.Holding((OTHER,), None), address(OTHER, "10.0.1.50"))
    rt = FakeRuntime()
    actions.apply(rt, None, cfg, seen, secip.plan(seen, IP4), check=True)  # type: ignore[arg-type]
    assert rt.api().changing() == []
    assert rt.api().dry_runs() == ["AssociateAddress"]
    assert rt.netlink.calls == []
