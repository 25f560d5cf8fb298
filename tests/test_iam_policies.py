"""The shipped IAM policies (policies/*.json) are enough and no more, proven in the lab.

The lab enforces a policy on the nodes' instance role (lab/iam.py, Lab.enforce_policy); the
policies are turned into the lab's by replacing REGION, ACCOUNT and every example id.

- With exactly an agent's policy its scenario runs through: validate-all, start, monitor, a
  failover a -> b, stop, and back to a, each with the exit code and the AWS and OS state
  expected, and each making exactly the EC2 calls listed in its step (read from the lab's call
  log: the steps' `calls` are what the minimality tests rely on). With policies/all-agents.json
  the plain lifecycle of each agent (validate-all, start, monitor, stop) does.
- Minimal: for every statement, and for every action of a statement that lists several, the
  scenario runs again with that statement or action removed. Every step that makes one of the
  removed calls is denied: exit 4 with an exit reason naming `ec2:<Action>`, or, where the agent
  deliberately carries on (monitor cannot tell; aws-secip's stop leaves the assignment), its
  usual exit code and a warning naming `ec2:<Action>`. The other steps are not affected. A
  denied start or stop is redone under the full policy, so the next steps start from the state
  they would have had.
- Scoped: with one resource of the policy pointing at another id, the first step that acts on
  the real resource is denied with exit 4, naming the action and that resource.
- The lab's hook itself (node keys only, DryRun denied, reset), all-agents.json being the union
  of the three, and the README naming each policy's actions.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import pytest

from agentkit import AGENTS, ROOT, node_addresses
from lab import AgentResult, Call, Lab, LabError
from lab.iam import Policy, example_ids, localize

POLICIES = ROOT / "policies"
AGENT_NAMES = ("aws-overlayip", "aws-secip", "aws-eni")
OVERLAY_IP = "192.168.100.10"
SECONDARY_IP = "10.0.1.50"  # subnet "a", where both lab nodes are
DENIED = "UnauthorizedOperation"


def shipped(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((POLICIES / f"{name}.json").read_text())
    return document


# ----------------------------------------------------------------------------- the lab's world


@dataclass
class World:
    """The lab with what the policies name: the service ENI, an Elastic IP, an HA_RSCTMP."""

    lab: Lab
    service_eni: Any
    allocation: str
    rsctmp: Path
    decoys: dict[str, str] = field(default_factory=dict)  # other ids of each kind

    def ids(self) -> dict[str, str]:
        """Every example id of policies/*.json and the lab's object in its role (explicitly:
        an example id missing here makes localize fail)."""
        nodes = self.lab.nodes
        return {
            "rtb-0123456789abcdef0": self.lab.route_tables[0],
            "rtb-0fedcba9876543210": self.lab.route_tables[1],
            "eni-0aaaaaaaaaaaaaaaa": nodes["a"].eni_id,
            "eni-0bbbbbbbbbbbbbbbb": nodes["b"].eni_id,
            "i-0aaaaaaaaaaaaaaaa": nodes["a"].instance_id,
            "i-0bbbbbbbbbbbbbbbb": nodes["b"].instance_id,
            "eni-0123456789abcdef0": self.service_eni.id,
            "eipalloc-0123456789abcdef0": self.allocation,
        }

    def policy(self, document: dict[str, Any], **swap: str) -> dict[str, Any]:
        """The lab's version of a shipped policy; `swap` points example ids elsewhere."""
        ids = {**self.ids(), **swap}
        return localize(document, region=self.lab.region, account=self.lab.account_id, ids=ids)

    def enforce(self, document: Optional[dict[str, Any]]) -> None:
        self.lab.enforce_policy(document)


@pytest.fixture
def world(lab: Lab, tmp_path: Path) -> Iterator[World]:
    # Short transitions: these tests are about permissions, not about waiting.
    lab.set_timing(assign_delay=0.05, attach_delay=0.1, detach_delay=0.1)
    rsctmp = tmp_path / "rsctmp"
    rsctmp.mkdir()
    service = lab.create_eni(subnet="c", secondary_ips=1)
    spare = lab.create_eni(subnet="c")
    w = World(lab, service, lab.allocate_eip(), rsctmp)
    w.decoys = {
        "rtb": lab.route_tables[2],
        "eni": spare.id,
        "i": "i-0123456789abcdef0",  # an instance of someone else
        "eipalloc": lab.allocate_eip(),
    }
    yield w
    lab.enforce_policy(None)


# ----------------------------------------------------------------------------- state readers


def on_os(lab: Lab, ip: str) -> set[str]:
    wanted = ipaddress.ip_address(ip)
    return {
        node
        for node in lab.nodes
        if any(ipaddress.ip_address(a.split("/")[0]) == wanted for a in node_addresses(lab, node))
    }


def eip_target(lab: Lab, allocation: str) -> Optional[str]:
    raw = lab.ec2().describe_addresses(AllocationIds=[allocation])["Addresses"][0]
    return raw.get("NetworkInterfaceId") or None


def attached_to(lab: Lab, eni_id: str) -> Optional[str]:
    att = lab.eni(eni_id).get("Attachment")
    return str(att["InstanceId"]) if att else None


def has_link(lab: Lab, node: str, mac: str) -> bool:
    links = lab.ip_json(node, "addr", "show")
    return any(
        link.get("address") == mac and "UP" in link.get("flags", []) and link.get("addr_info")
        for link in links
    )


def sdc(lab: Lab, node: str) -> bool:
    return bool(lab.eni(lab.nodes[node].eni_id)["SourceDestCheck"])


# ----------------------------------------------------------------------------- scenarios


Check = Callable[[World], None]


@dataclass(frozen=True)
class Step:
    node: str
    action: str  # the OCF action
    calls: frozenset[str]  # the EC2 actions it makes (asserted from the call log)
    check: Optional[Check] = None  # the state after it, with the full policy
    rc: int = 0
    monitor: bool = False  # a recurring monitor (interval set)
    tolerant: bool = False  # a denied call gives a warning and the usual exit code, by design
    variants: bool = True  # also run with the reduced policies

    @property
    def name(self) -> str:
        return f"{self.action}@{self.node}"


def calls(*names: str) -> frozenset[str]:
    return frozenset(names)


@dataclass(frozen=True)
class Scenario:
    name: str
    agent: str
    params: Callable[[World], dict[str, str]]
    steps: tuple[Step, ...]
    setup: Optional[Check] = None

    def uses(self) -> frozenset[str]:
        return frozenset().union(*(s.calls for s in self.steps))


def overlay_params(w: World) -> dict[str, str]:
    return {
        "ip": OVERLAY_IP,
        "routing_table": ",".join(w.lab.route_tables[:2]),
        "endpoint_url": w.lab.endpoint_url,
        "source_dest_check": "disable",
    }


def overlay_setup(w: World) -> None:
    # AWS's default: the check is on, so validate-all and start need the permission to turn it
    # off on both nodes' ENIs (the lab's nodes come with it off).
    for node in ("a", "b"):
        w.lab.ec2().modify_network_interface_attribute(
            NetworkInterfaceId=w.lab.nodes[node].eni_id, SourceDestCheck={"Value": True}
        )


def routed_to(node: Optional[str], *, ip_on: tuple[str, ...] = ()) -> Check:
    def check(w: World) -> None:
        eni = w.lab.nodes[node].eni_id if node else None
        assert w.lab.route_targets(f"{OVERLAY_IP}/32", w.lab.route_tables[:2]) == dict.fromkeys(
            w.lab.route_tables[:2], eni
        )
        assert on_os(w.lab, OVERLAY_IP) == set(ip_on)
        if node:
            assert not sdc(w.lab, node)

    return check


READ_ROUTES = ("DescribeRouteTables", "DescribeNetworkInterfaces")
OVERLAY = Scenario(
    "overlay",
    "aws-overlayip",
    overlay_params,
    (
        Step(
            "a",
            "validate-all",
            calls("DescribeVpcs", *READ_ROUTES, "ModifyNetworkInterfaceAttribute", "CreateRoute"),
        ),
        Step(
            "a",
            "start",
            calls(*READ_ROUTES, "ModifyNetworkInterfaceAttribute", "CreateRoute"),
            routed_to("a", ip_on=("a",)),
        ),
        Step("a", "monitor", calls("DescribeRouteTables"), monitor=True, tolerant=True),
        Step(
            "b",
            "validate-all",
            calls("DescribeVpcs", *READ_ROUTES, "ModifyNetworkInterfaceAttribute", "ReplaceRoute"),
        ),
        # a crashed (no stop); b takes over
        Step(
            "b",
            "start",
            calls(*READ_ROUTES, "ModifyNetworkInterfaceAttribute", "ReplaceRoute"),
            routed_to("b", ip_on=("a", "b")),
        ),
        Step("b", "monitor", calls("DescribeRouteTables"), monitor=True, variants=False),
        Step(
            "a",
            "monitor",
            calls("DescribeRouteTables"),
            rc=7,
            monitor=True,
            variants=False,
        ),
        Step("a", "stop", calls(), routed_to("b", ip_on=("b",)), variants=False),
        # and back to a
        Step("b", "stop", calls(), routed_to("b"), variants=False),
        Step(
            "a",
            "start",
            calls(*READ_ROUTES, "ReplaceRoute"),
            routed_to("a", ip_on=("a",)),
        ),
        Step("a", "stop", calls(), routed_to("a"), variants=False),
    ),
    overlay_setup,
)


def secip_params(w: World) -> dict[str, str]:
    return {
        "ip": SECONDARY_IP,
        "endpoint_url": w.lab.endpoint_url,
        "elastic_ip_allocation_id": w.allocation,
    }


def secip_at(node: Optional[str], *, os_on: tuple[str, ...] = (), ip: str = SECONDARY_IP) -> Check:
    def check(w: World) -> None:
        eni = w.lab.nodes[node].eni_id if node else None
        assert w.lab.holders(ip) == ({eni} if eni else set())
        assert on_os(w.lab, ip) == set(os_on)
        if ip == SECONDARY_IP:
            assert eip_target(w.lab, w.allocation) == eni

    return check


ASSOCIATE = ("DescribeNetworkInterfaces", "DescribeAddresses")
SECIP = Scenario(
    "secip-eip",
    "aws-secip",
    secip_params,
    (
        Step("a", "validate-all", calls(*ASSOCIATE, "AssociateAddress")),
        Step(
            "a",
            "start",
            calls(*ASSOCIATE, "AssignPrivateIpAddresses", "AssociateAddress"),
            secip_at("a", os_on=("a",)),
        ),
        Step("a", "monitor", calls("DescribeNetworkInterfaces"), monitor=True, tolerant=True),
        # a crashed (no stop); b takes over, the Elastic IP follows the address
        Step(
            "b",
            "start",
            calls(*ASSOCIATE, "AssignPrivateIpAddresses"),
            secip_at("b", os_on=("a", "b")),
        ),
        Step(
            "a", "monitor", calls("DescribeNetworkInterfaces"), rc=7, monitor=True, variants=False
        ),
        Step(
            "a",
            "stop",
            calls("DescribeNetworkInterfaces"),
            secip_at("b", os_on=("b",)),
            tolerant=True,
        ),
        # and back to a
        Step(
            "b",
            "stop",
            calls("DescribeNetworkInterfaces", "UnassignPrivateIpAddresses"),
            secip_at(None),
            tolerant=True,
        ),
        Step(
            "a",
            "start",
            calls(*ASSOCIATE, "AssignPrivateIpAddresses", "AssociateAddress"),
            secip_at("a", os_on=("a",)),
            variants=False,
        ),
        Step(
            "a",
            "monitor",
            calls("DescribeNetworkInterfaces"),
            monitor=True,
            variants=False,
        ),
    ),
)


def ipv6_of(w: World) -> str:
    return str(ipaddress.ip_network(w.lab.subnets["a"].ipv6_cidr).network_address + 0x50)


def secip6_params(w: World) -> dict[str, str]:
    return {"ip": ipv6_of(w), "endpoint_url": w.lab.endpoint_url}


def secip6_at(node: Optional[str], *, os_on: tuple[str, ...] = ()) -> Check:
    def check(w: World) -> None:
        secip_at(node, os_on=os_on, ip=ipv6_of(w))(w)

    return check


SUBNET_AND_ENIS = ("DescribeSubnets", "DescribeNetworkInterfaces")
SECIP6 = Scenario(
    "secip-ipv6",
    "aws-secip",
    secip6_params,
    (
        Step("a", "validate-all", calls(*SUBNET_AND_ENIS)),
        Step(
            "a",
            "start",
            calls(*SUBNET_AND_ENIS, "AssignIpv6Addresses"),
            secip6_at("a", os_on=("a",)),
        ),
        # IPv6 cannot be reassigned: b unassigns it from a's ENI, then assigns it to its own
        Step(
            "b",
            "start",
            calls(*SUBNET_AND_ENIS, "UnassignIpv6Addresses", "AssignIpv6Addresses"),
            secip6_at("b", os_on=("a", "b")),
        ),
        Step(
            "a",
            "stop",
            calls("DescribeNetworkInterfaces"),
            secip6_at("b", os_on=("b",)),
            tolerant=True,
        ),
        Step(
            "b",
            "stop",
            calls("DescribeNetworkInterfaces", "UnassignIpv6Addresses"),
            secip6_at(None),
            tolerant=True,
        ),
    ),
)


def eni_params(w: World) -> dict[str, str]:
    return {"eni_id": w.service_eni.id, "endpoint_url": w.lab.endpoint_url}


def eni_at(node: Optional[str], *, link_on: tuple[str, ...] = ()) -> Check:
    def check(w: World) -> None:
        instance = w.lab.nodes[node].instance_id if node else None
        assert attached_to(w.lab, w.service_eni.id) == instance
        assert {n for n in w.lab.nodes if has_link(w.lab, n, w.service_eni.mac)} == set(link_on)

    return check


ENI = Scenario(
    "eni",
    "aws-eni",
    eni_params,
    (
        Step("a", "validate-all", calls("DescribeNetworkInterfaces", "AttachNetworkInterface")),
        Step(
            "a",
            "start",
            calls("DescribeNetworkInterfaces", "AttachNetworkInterface", "DescribeSubnets"),
            eni_at("a", link_on=("a",)),
        ),
        Step("a", "monitor", calls("DescribeNetworkInterfaces"), monitor=True, tolerant=True),
        Step(
            "b",
            "validate-all",
            calls("DescribeNetworkInterfaces", "AttachNetworkInterface", "DetachNetworkInterface"),
        ),
        # a crashed (no stop); b takes the ENI over: detach from a, attach to b
        Step(
            "b",
            "start",
            calls(
                "DescribeNetworkInterfaces",
                "DetachNetworkInterface",
                "AttachNetworkInterface",
                "DescribeSubnets",
            ),
            eni_at("b", link_on=("b",)),
        ),
        Step(
            "a", "monitor", calls("DescribeNetworkInterfaces"), rc=7, monitor=True, variants=False
        ),
        Step("a", "stop", calls("DescribeNetworkInterfaces"), eni_at("b", link_on=("b",))),
        # and back to a
        Step(
            "b",
            "stop",
            calls("DescribeNetworkInterfaces", "DetachNetworkInterface"),
            eni_at(None),
        ),
        Step(
            "a",
            "start",
            calls("DescribeNetworkInterfaces", "AttachNetworkInterface", "DescribeSubnets"),
            eni_at("a", link_on=("a",)),
            variants=False,
        ),
        Step(
            "a",
            "stop",
            calls("DescribeNetworkInterfaces", "DetachNetworkInterface"),
            eni_at(None),
            variants=False,
        ),
    ),
)

SCENARIOS: dict[str, tuple[Scenario, ...]] = {
    "aws-overlayip": (OVERLAY,),
    "aws-secip": (SECIP, SECIP6),
    "aws-eni": (ENI,),
}


def basic(scenario: Scenario, first: int, stop: Step) -> Scenario:
    """The scenario's first steps on node a, then a's stop: no failover."""
    steps = (*scenario.steps[:first], stop)
    return replace(scenario, name=f"{scenario.name}-basic", steps=steps)


# With all-agents.json (the union of the three, see below) the plain lifecycle is enough.
BASICS = (
    basic(OVERLAY, 3, Step("a", "stop", calls(), routed_to("a"))),
    basic(
        SECIP,
        3,
        Step(
            "a",
            "stop",
            calls("DescribeNetworkInterfaces", "UnassignPrivateIpAddresses"),
            secip_at(None),
            tolerant=True,
        ),
    ),
    basic(
        SECIP6,
        2,
        Step(
            "a",
            "stop",
            calls("DescribeNetworkInterfaces", "UnassignIpv6Addresses"),
            secip6_at(None),
            tolerant=True,
        ),
    ),
    basic(
        ENI,
        3,
        Step(
            "a", "stop", calls("DescribeNetworkInterfaces", "DetachNetworkInterface"), eni_at(None)
        ),
    ),
)


def run_step(w: World, scenario: Scenario, step: Step) -> tuple[AgentResult, list[Call]]:
    """Run one step as Pacemaker would; its result and the EC2 calls the node made."""
    w.lab.reset_calls()
    result = w.lab.run_agent(
        step.node,
        AGENTS / scenario.agent,
        step.action,
        scenario.params(w),
        interval_ms=10000 if step.monitor else None,
        extra_env={"HA_RSCTMP": str(w.rsctmp)},
    )
    return result, [c for c in w.lab.calls(step.node) if c.service == "ec2"]


def describe(result: AgentResult) -> str:
    return f"rc={result.rc} reason={result.exit_reason!r}\n{result.stderr[-2000:]}"


# ----------------------------------------------------------------------------- enough


@pytest.mark.parametrize(
    ("scenario", "policy_name"),
    [(s, s.agent) for group in SCENARIOS.values() for s in group]
    + [(s, "all-agents") for s in BASICS],
    ids=lambda v: v.name if isinstance(v, Scenario) else v,
)
def test_the_policy_is_enough(world: World, scenario: Scenario, policy_name: str) -> None:
    """The scenario under exactly the shipped policy: exit codes, state, and the calls made."""
    if scenario.setup:
        scenario.setup(world)
    world.enforce(world.policy(shipped(policy_name)))
    for step in scenario.steps:
        result, made = run_step(world, scenario, step)
        assert result.rc == step.rc, f"{step.name}: {describe(result)}"
        errors = [c for c in made if (c.status or 0) >= 400 and c.error_code != "DryRunOperation"]
        assert not errors, f"{step.name}: {errors}"
        assert {c.action for c in made} == step.calls, step.name
        if step.check:
            step.check(world)


# ----------------------------------------------------------------------------- no more


@dataclass(frozen=True)
class Cut:
    """A policy with one statement, or one action of a statement, removed."""

    agent: str
    index: int  # of the statement
    sid: str
    action: Optional[str]  # None: the whole statement
    removed: frozenset[str]  # the EC2 actions no longer allowed

    @property
    def label(self) -> str:
        return f"{self.agent}-{self.sid}" + (f"-{self.action}" if self.action else "")

    def apply(self, document: dict[str, Any]) -> dict[str, Any]:
        statements = [dict(s) for s in document["Statement"]]
        if self.action is None:
            del statements[self.index]
        else:
            kept = [a for a in statements[self.index]["Action"] if a != f"ec2:{self.action}"]
            statements[self.index]["Action"] = kept
        return {**document, "Statement": statements}


def actions_of(statement: dict[str, Any]) -> list[str]:
    value = statement["Action"]
    return [value] if isinstance(value, str) else list(value)


def cuts() -> list[Cut]:
    found = []
    for agent in AGENT_NAMES:
        for index, statement in enumerate(shipped(agent)["Statement"]):
            names = [a.removeprefix("ec2:") for a in actions_of(statement)]
            found.append(Cut(agent, index, statement["Sid"], None, frozenset(names)))
            if len(names) > 1:
                found += [
                    Cut(agent, index, statement["Sid"], name, frozenset({name})) for name in names
                ]
    return found


# The one cut no step can turn into exit 4: aws-secip's stop carries on when it may not
# unassign the address (the next start reassigns it anyway; failing the stop would get the node
# fenced for that). What shows the missing permission is the warning and the assignment left.
WARNING_ONLY = {"aws-secip-MoveTheSecondaryIpBetweenTheClusterNodesEnis-UnassignPrivateIpAddresses"}


def cut_params() -> list[Any]:
    """Every cut; those of one action of a statement run in `make test-long` (the whole
    statements', one per statement, in the suite)."""
    return [pytest.param(c, id=c.label, marks=pytest.mark.long if c.action else ()) for c in cuts()]


@pytest.mark.parametrize("cut", cut_params())
def test_the_policy_has_nothing_to_spare(world: World, cut: Cut) -> None:
    """Without a statement (or one of its actions), exactly the steps that make its calls are
    denied.

    A statement's removal runs every step of the scenarios that use it. One action's removal
    (there are more of those) runs, for time, only the first scenario that makes the call and
    skips its validate-all and monitor steps that do not make it: they change nothing the later
    steps see, and the enough-tests show from the call log that they do not make it. Starts and
    stops always run (and are checked).
    """
    full = world.policy(shipped(cut.agent))
    reduced = cut.apply(full)
    for statement in reduced["Statement"]:  # nothing else grants what was removed
        assert not cut.removed & {a.removeprefix("ec2:") for a in actions_of(statement)}
    Policy.parse(reduced)
    affected: list[str] = []
    hard_failures = 0
    scenarios = [s for s in SCENARIOS[cut.agent] if s.uses() & cut.removed]
    for scenario in scenarios if cut.action is None else scenarios[:1]:
        if scenario.setup:
            scenario.setup(world)
        world.enforce(reduced)
        steps = [
            s
            for s in scenario.steps
            if s.variants
            and (cut.action is None or s.action in ("start", "stop") or s.calls & cut.removed)
        ]
        for number, step in enumerate(steps, 1):
            result, made = run_step(world, scenario, step)
            denied = [c.action for c in made if c.error_code == DENIED]
            needed = step.calls & cut.removed
            where = f"{scenario.name} {step.name}: {describe(result)}"
            if not needed:
                assert (result.rc, denied) == (step.rc, []), where
                continue
            affected.append(step.name)
            assert denied, where
            assert set(denied) <= needed, where
            # the agent names the denied call it met (calls may run in parallel: any of them)
            named = {f"ec2:{action}" for action in denied}
            if step.tolerant:
                assert result.rc == step.rc, where
                assert any(n in result.stderr for n in named), where
            else:
                assert result.rc == 4, where
                assert any(n in (result.exit_reason or "") for n in named), where
                hard_failures += 1
            if cut.label in WARNING_ONLY:
                assert world.lab.holders(SECONDARY_IP) == {world.lab.nodes[step.node].eni_id}
            if number == len(steps) or step.action not in ("start", "stop"):
                continue
            if step.tolerant and step.check:
                step.check(world)  # it carried on and left what the full policy leaves
            elif not step.tolerant:
                # the state the full policy would have left, for the next steps
                world.enforce(full)
                again, _ = run_step(world, scenario, step)
                assert again.rc == step.rc, f"redo {where}\n{describe(again)}"
                world.enforce(reduced)
    assert affected, f"no step needs {sorted(cut.removed)}"
    assert hard_failures or cut.label in WARNING_ONLY, affected


# ----------------------------------------------------------------------------- scoped


@dataclass(frozen=True)
class Decoy:
    """One example id of a policy pointed at another object of the same kind."""

    agent: str
    example: str
    scenario: Scenario
    step: str  # the first step that acts on the real object
    action: str  # the EC2 call denied there
    real: Callable[[World], str]  # the real object's ARN suffix, named in the denial

    @property
    def label(self) -> str:
        return f"{self.agent}-{self.example}"


DECOYS = [
    Decoy(
        "aws-overlayip",
        "rtb-0123456789abcdef0",
        OVERLAY,
        "validate-all@a",
        "CreateRoute",
        lambda w: f"route-table/{w.lab.route_tables[0]}",
    ),
    Decoy(
        "aws-overlayip",
        "rtb-0fedcba9876543210",
        OVERLAY,
        "validate-all@a",
        "CreateRoute",
        lambda w: f"route-table/{w.lab.route_tables[1]}",
    ),
    Decoy(
        "aws-overlayip",
        "eni-0aaaaaaaaaaaaaaaa",
        OVERLAY,
        "validate-all@a",
        "ModifyNetworkInterfaceAttribute",
        lambda w: f"network-interface/{w.lab.nodes['a'].eni_id}",
    ),
    Decoy(
        "aws-overlayip",
        "eni-0bbbbbbbbbbbbbbbb",
        OVERLAY,
        "validate-all@b",
        "ModifyNetworkInterfaceAttribute",
        lambda w: f"network-interface/{w.lab.nodes['b'].eni_id}",
    ),
    Decoy(
        "aws-secip",
        "eni-0aaaaaaaaaaaaaaaa",
        SECIP6,
        "start@a",
        "AssignIpv6Addresses",
        lambda w: f"network-interface/{w.lab.nodes['a'].eni_id}",
    ),
    Decoy(
        "aws-secip",
        "eni-0bbbbbbbbbbbbbbbb",
        SECIP,
        "start@b",
        "AssignPrivateIpAddresses",
        lambda w: f"network-interface/{w.lab.nodes['b'].eni_id}",
    ),
    Decoy(
        "aws-secip",
        "eipalloc-0123456789abcdef0",
        SECIP,
        "validate-all@a",
        "AssociateAddress",
        lambda w: f"elastic-ip/{w.allocation}",
    ),
    Decoy(
        "aws-eni",
        "eni-0123456789abcdef0",
        ENI,
        "validate-all@a",
        "AttachNetworkInterface",
        lambda w: f"network-interface/{w.service_eni.id}",
    ),
    Decoy(
        "aws-eni",
        "i-0aaaaaaaaaaaaaaaa",
        ENI,
        "validate-all@a",
        "AttachNetworkInterface",
        lambda w: f"instance/{w.lab.nodes['a'].instance_id}",
    ),
    Decoy(
        "aws-eni",
        "i-0bbbbbbbbbbbbbbbb",
        ENI,
        "validate-all@b",
        "AttachNetworkInterface",
        lambda w: f"instance/{w.lab.nodes['b'].instance_id}",
    ),
]


def test_every_example_id_has_a_scoping_test() -> None:
    for agent in AGENT_NAMES:
        assert example_ids(shipped(agent)) == {d.example for d in DECOYS if d.agent == agent}


@pytest.mark.parametrize("decoy", DECOYS, ids=lambda d: d.label)
def test_the_policy_is_scoped(world: World, decoy: Decoy) -> None:
    """Pointed at another id, the policy denies the change on the real one: exit 4."""
    kind = decoy.example.rsplit("-", 1)[0]
    other = world.decoys[kind]
    scenario = decoy.scenario
    if scenario.setup:
        scenario.setup(world)
    world.enforce(world.policy(shipped(decoy.agent), **{decoy.example: other}))
    for step in scenario.steps:
        result, made = run_step(world, scenario, step)
        if step.name != decoy.step:
            assert (result.rc, [c for c in made if c.error_code == DENIED]) == (step.rc, []), (
                f"{step.name}: {describe(result)}"
            )
            continue
        assert result.rc == 4, describe(result)
        assert [c.action for c in made if c.error_code == DENIED] == [decoy.action]
        reason = result.exit_reason or ""
        assert f"ec2:{decoy.action}" in reason, reason
        assert f":{decoy.real(world)} " in reason, reason
        return
    pytest.fail(f"{decoy.step} is not a step of {scenario.name}")


# ----------------------------------------------------------------------------- the lab's hook


def node_client(lab: Lab, node: str) -> Any:
    """An EC2 client signing with a node's instance role key (as its agents do), on the host."""
    import botocore.session
    from botocore.config import Config

    return botocore.session.Session().create_client(
        "ec2",
        region_name=lab.region,
        endpoint_url=lab.endpoint_url,
        aws_access_key_id=lab.nodes[node].access_key_id,
        aws_secret_access_key="not-checked-by-the-lab",
        aws_session_token="not-checked-either",
        config=Config(retries={"total_max_attempts": 1}, proxies={}),
    )


def error(call: Callable[[], Any]) -> tuple[str, str, int]:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as info:
        call()
    response: Any = info.value.response
    status = response["ResponseMetadata"]["HTTPStatusCode"]
    return response["Error"]["Code"], response["Error"]["Message"], status


def test_the_lab_enforces_a_policy_on_the_node_role_only(lab: Lab) -> None:
    rt0, rt1 = lab.route_tables[:2]
    a = lab.nodes["a"]
    arn = f"arn:aws:ec2:{lab.region}:{lab.account_id}:route-table"
    lab.enforce_policy(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "ec2:DescribeRouteTables", "Resource": "*"},
                {"Effect": "Allow", "Action": "ec2:ReplaceRoute", "Resource": f"{arn}/{rt0}"},
            ],
        }
    )
    node = node_client(lab, "a")
    route = {"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": lab.internet_gateway}
    assert node.describe_route_tables(RouteTableIds=[rt0])["RouteTables"]
    # allowed: a DryRun says it would succeed; denied: UnauthorizedOperation, DryRun or not
    assert error(lambda: node.replace_route(RouteTableId=rt0, DryRun=True, **route))[0] == (
        "DryRunOperation"
    )
    lab.reset_calls()
    code, message, status = error(
        lambda: node.replace_route(RouteTableId=rt1, DryRun=True, **route)
    )
    assert (code, status) == (DENIED, 403)
    assert message == (
        "You are not authorized to perform this operation. User: arn:aws:sts::"
        f"{lab.account_id}:assumed-role/{lab.role_name}/{a.instance_id} is not authorized to "
        f"perform: ec2:ReplaceRoute on resource: {arn}/{rt1} because no identity-based policy "
        "allows the ec2:ReplaceRoute action"
    )
    assert error(lambda: node.replace_route(RouteTableId=rt1, **route))[0] == DENIED
    assert error(lambda: node.create_route(RouteTableId=rt0, DryRun=True, **route))[0] == DENIED
    logged = [(c.action, c.status, c.error_code, c.access_key) for c in lab.calls()]
    assert logged == [
        ("ReplaceRoute", 403, DENIED, a.access_key_id),
        ("ReplaceRoute", 403, DENIED, a.access_key_id),
        ("CreateRoute", 403, DENIED, a.access_key_id),
    ]
    # an action lab/iam.py cannot name the resources of: denied, saying so
    code, message, _ = error(lambda: node.delete_route(RouteTableId=rt0, DestinationCidrBlock="x"))
    assert code == DENIED
    assert "lab/iam.py" in message
    assert "ec2:DeleteRoute" in message
    # other keys (the test client, fence_aws) are not evaluated
    assert error(lambda: lab.ec2().create_route(RouteTableId=rt1, DryRun=True, **route))[0] == (
        "DryRunOperation"
    )
    # what the lab cannot evaluate is refused when set
    with pytest.raises(LabError, match="Condition"):
        lab.enforce_policy(
            {
                "Version": "2012-10-17",
                "Statement": {
                    "Effect": "Allow",
                    "Action": "ec2:*",
                    "Resource": "*",
                    "Condition": {"StringEquals": {"ec2:Vpc": lab.vpc_id}},
                },
            }
        )
    # the previous policy stays; reset() drops it
    assert error(lambda: node.replace_route(RouteTableId=rt1, DryRun=True, **route))[0] == DENIED
    lab.reset()
    node = node_client(lab, "a")
    rt1 = lab.route_tables[1]
    route = {"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": lab.internet_gateway}
    assert error(lambda: node.replace_route(RouteTableId=rt1, DryRun=True, **route))[0] == (
        "DryRunOperation"
    )
    lab.enforce_policy(
        {
            "Version": "2012-10-17",
            "Statement": {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
        }
    )
    assert error(lambda: node.replace_route(RouteTableId=rt1, DryRun=True, **route))[0] == DENIED
    lab.enforce_policy(None)
    assert error(lambda: node.replace_route(RouteTableId=rt1, DryRun=True, **route))[0] == (
        "DryRunOperation"
    )


# ----------------------------------------------------------------------------- the documents


def grants(document: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(effect, action, resource) of every statement: what a policy allows, however grouped."""
    found = set()
    for statement in document["Statement"]:
        resource = statement["Resource"]
        for action in actions_of(statement):
            for item in [resource] if isinstance(resource, str) else resource:
                found.add((statement["Effect"], action, item))
    return found


def test_all_agents_is_the_union_of_the_three() -> None:
    union = set().union(*(grants(shipped(agent)) for agent in AGENT_NAMES))
    assert grants(shipped("all-agents")) == union
    for name in (*AGENT_NAMES, "all-agents"):
        Policy.parse(shipped(name))  # no Condition, nothing the lab cannot evaluate


def test_the_readme_names_each_policys_actions() -> None:
    readme = (ROOT / "README.md").read_text()
    paragraphs = re.split(r"\n\s*\n", readme)
    for agent in AGENT_NAMES:
        text = next(p for p in paragraphs if f"policies/{agent}.json" in p)
        named = set(re.findall(r"`(ec2:\w+)`", text))
        wanted = {a for s in shipped(agent)["Statement"] for a in actions_of(s)}
        assert named == wanted, agent
