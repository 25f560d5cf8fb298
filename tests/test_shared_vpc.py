"""aws-overlayip in a shared VPC: the route table calls with routing_table_role, in the lab.

The lab's STS (lab/sts.py) answers AssumeRole for the roles declared here, checking the trust
policy (the principal, the sts:ExternalId condition) and the caller's identity policy, as AWS
does and moto does not; its sessions' EC2 requests are evaluated against the role's identity
policy, the nodes' against the instance role's (lab/ec2_api.py). The policies are the shipped
ones (policies/aws-overlayip-shared-vpc-*.json), localized:

- enough: validate-all, start, monitor, failover a -> b, stop and back to a, with and without
  the role_arn chain: exit codes, AWS and OS state, and who made each call (the route table
  calls by the routing role's sessions only, the node's by the node, one AssumeRole per action
  that needs the tables, none for stop);
- no more: without any statement or action of either policy, exactly the steps that need it
  are denied (exit 4 naming the permission and the principal; monitor warns and goes on);
- scoped: with a table of the owner's policy pointing elsewhere, that table's change is denied;
- the principal in the reasons: the routing role denied, AssumeRole denied (by the node's
  policy, by the trust policy), the external id wrong or missing, and the node's own role never
  used for the route tables (no fallback).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import pytest

from agentkit import AGENTS, ROOT
from lab import AgentResult, Call
from lab.iam import Policy, example_ids, localize
from test_iam_policies import (
    OVERLAY_IP,
    World,
    actions_of,
    describe,
    on_os,
    overlay_params,
    overlay_setup,
    routed_to,
    world,  # noqa: F401 - the fixture
)

POLICIES = ROOT / "policies"
OWNER = "210987654321"  # the VPC owner's account (the lab's VPC is in the nodes' account)
ROUTING_ROLE = f"arn:aws:iam::{OWNER}:role/ipfailover-routing"
EXTERNAL_ID = "sap-prd-ha-7f3c"
CLUSTER_ROLE_NAME = "ipfailover-cluster"  # role_arn, in the nodes' account (the chain)
DENIED = "UnauthorizedOperation"
ROUTE_CALLS = frozenset({"DescribeRouteTables", "CreateRoute", "ReplaceRoute"})
NODE_CALLS = frozenset(
    {"DescribeNetworkInterfaces", "DescribeVpcs", "ModifyNetworkInterfaceAttribute"}
)


def shipped(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((POLICIES / f"{name}.json").read_text())
    return document


PARTICIPANT = "aws-overlayip-shared-vpc-participant"
OWNER_POLICY = "aws-overlayip-shared-vpc-owner"
TRUST = "aws-overlayip-shared-vpc-owner-trust"


@dataclass
class Shared:
    """The lab's shared VPC set-up: the policies in force and how the agent is configured."""

    w: World
    chain: bool = False
    external_id: Optional[str] = EXTERNAL_ID  # the parameter (None: not set)

    @property
    def cluster_role(self) -> str:
        return f"arn:aws:iam::{self.w.lab.account_id}:role/{CLUSTER_ROLE_NAME}"

    def participant(self, **swap: str) -> dict[str, Any]:
        ids = {**self.w.ids(), **swap}
        lab = self.w.lab
        return localize(
            shipped(PARTICIPANT),
            region=lab.region,
            account=lab.account_id,
            ids=ids,
            accounts={"OWNER_ACCOUNT": OWNER},
        )

    def owner(self, **swap: str) -> dict[str, Any]:
        ids = {**self.w.ids(), **swap}
        return localize(shipped(OWNER_POLICY), region=self.w.lab.region, account=OWNER, ids=ids)

    def trust(self, principal_role: Optional[str] = None, external_id: str = EXTERNAL_ID) -> Any:
        role = principal_role or (CLUSTER_ROLE_NAME if self.chain else self.w.lab.role_name)
        text = (
            json.dumps(shipped(TRUST))
            .replace("PARTICIPANT_ACCOUNT", self.w.lab.account_id)
            .replace("NODE_ROLE", role)
            .replace("EXTERNAL_ID", external_id)
        )
        return json.loads(text)

    def install(
        self,
        *,
        participant: Optional[dict[str, Any]] = None,
        owner: Optional[dict[str, Any]] = None,
        trust: Optional[dict[str, Any]] = None,
    ) -> None:
        """The routing role (its trust and identity policy) and the node's policy; with the
        chain, the node may only assume role_arn, whose policy is the participant's."""
        lab = self.w.lab
        lab.set_role(ROUTING_ROLE, trust or self.trust(), owner or self.owner())
        node_side = participant or self.participant()
        if self.chain:
            lab.set_role(self.cluster_role, lab.nodes_trust(), node_side)
            self.w.enforce(
                {
                    "Version": "2012-10-17",
                    "Statement": {
                        "Effect": "Allow",
                        "Action": "sts:AssumeRole",
                        "Resource": self.cluster_role,
                    },
                }
            )
        else:
            self.w.enforce(node_side)

    def params(self) -> dict[str, str]:
        params = overlay_params(self.w) | {
            "routing_table_role": ROUTING_ROLE,
            "sts_endpoint_url": self.w.lab.endpoint_url,
        }
        if self.external_id is not None:
            params["routing_table_external_id"] = self.external_id
        if self.chain:
            params["role_arn"] = self.cluster_role
        return params


@pytest.fixture
def shared(world: World) -> Iterator[Shared]:  # noqa: F811 - the fixture
    overlay_setup(world)
    yield Shared(world)
    world.lab.forget_roles()


@dataclass(frozen=True)
class Ran:
    result: AgentResult
    ec2: list[Call]
    sts: list[Call]
    sessions: dict[str, str]  # access key -> role ARN, of the lab's STS sessions

    def by(self, role: Optional[str]) -> set[str]:
        """The EC2 actions signed by a session of ``role`` (None: by anything else)."""
        return {c.action for c in self.ec2 if self.sessions.get(c.access_key or "") == role}

    @property
    def denied(self) -> list[str]:
        return [
            c.action for c in [*self.ec2, *self.sts] if c.error_code in (DENIED, "AccessDenied")
        ]


def run(s: Shared, node: str, action: str, *, monitor: bool = False) -> Ran:
    lab = s.w.lab
    lab.reset_calls()
    result = lab.run_agent(
        node,
        AGENTS / "aws-overlayip",
        action,
        s.params(),
        interval_ms=10000 if monitor else None,
        extra_env={"HA_RSCTMP": str(s.w.rsctmp)},
    )
    sessions = {x["access_key"]: x["role_arn"] for x in lab.role_sessions()}
    return Ran(result, lab.calls(node), lab.calls(node, service="sts"), sessions)


@dataclass(frozen=True)
class Step:
    node: str
    action: str
    needs: frozenset[str]  # "ec2:X" / "sts:AssumeRole" permissions the step uses
    rc: int = 0
    monitor: bool = False
    check: Any = None

    @property
    def name(self) -> str:
        return f"{self.action}@{self.node}"


def needs(*names: str) -> frozenset[str]:
    return frozenset(names)


ASSUME = "sts:AssumeRole"
NODE_READ = ("ec2:DescribeNetworkInterfaces",)
SDC = "ec2:ModifyNetworkInterfaceAttribute"
STEPS = (
    Step(
        "a",
        "validate-all",
        needs(
            ASSUME,
            "ec2:DescribeVpcs",
            *NODE_READ,
            SDC,
            "ec2:DescribeRouteTables",
            "ec2:CreateRoute",
        ),
    ),
    Step(
        "a",
        "start",
        needs(ASSUME, *NODE_READ, SDC, "ec2:DescribeRouteTables", "ec2:CreateRoute"),
        check=routed_to("a", ip_on=("a",)),
    ),
    Step("a", "monitor", needs(ASSUME, "ec2:DescribeRouteTables"), monitor=True),
    Step(
        "b",
        "validate-all",
        needs(
            ASSUME,
            "ec2:DescribeVpcs",
            *NODE_READ,
            SDC,
            "ec2:DescribeRouteTables",
            "ec2:ReplaceRoute",
        ),
    ),
    Step(
        "b",
        "start",
        needs(ASSUME, *NODE_READ, SDC, "ec2:DescribeRouteTables", "ec2:ReplaceRoute"),
        check=routed_to("b", ip_on=("a", "b")),
    ),
    Step("a", "monitor", needs(ASSUME, "ec2:DescribeRouteTables"), rc=7, monitor=True),
    Step("a", "stop", needs(), check=routed_to("b", ip_on=("b",))),
    Step("b", "stop", needs(), check=routed_to("b")),
    Step(
        "a",
        "start",
        needs(ASSUME, *NODE_READ, "ec2:DescribeRouteTables", "ec2:ReplaceRoute"),
        check=routed_to("a", ip_on=("a",)),
    ),
    Step("a", "stop", needs(), check=routed_to("a")),
)


def permissions(ran: Ran) -> set[str]:
    return {f"ec2:{c.action}" for c in ran.ec2} | {f"sts:{c.action}" for c in ran.sts}


# ----------------------------------------------------------------------------- enough


@pytest.mark.parametrize("chain", [False, True], ids=["instance-role", "role_arn-chain"])
def test_the_lifecycle_with_the_routing_role(shared: Shared, chain: bool) -> None:
    """Each step: its exit code and state, the permissions it used, and who used them."""
    shared.chain = chain
    shared.install()
    for step in STEPS:
        ran = run(shared, step.node, step.action, monitor=step.monitor)
        where = f"{step.name}: {describe(ran.result)}"
        assert ran.result.rc == step.rc, where
        assert not [
            c for c in ran.ec2 if (c.status or 0) >= 400 and c.error_code != "DryRunOperation"
        ]
        assert permissions(ran) == step.needs, where
        # the route tables by the routing role only; the rest by the node (or role_arn)
        routing = ran.by(ROUTING_ROLE)
        assert routing == {c.removeprefix("ec2:") for c in step.needs} & ROUTE_CALLS, where
        node_side = ran.by(shared.cluster_role if chain else None)
        assert node_side == {c.removeprefix("ec2:") for c in step.needs} & NODE_CALLS, where
        assumed = [c for c in ran.sts if c.action == "AssumeRole"]
        uses_aws = bool(step.needs)
        assert len(assumed) == (2 if chain else 1) * uses_aws, where
        if step.check:
            step.check(shared.w)


# ----------------------------------------------------------------------------- principals


def test_the_routing_role_denied_is_named_and_the_node_never_falls_back(shared: Shared) -> None:
    """Without ReplaceRoute for the routing role, b's start fails (4) naming the role, the
    permission and the table; the node's own role (which may not change routes either) is not
    tried: every route table call was signed by the routing role's session."""
    owner = shared.owner()
    owner["Statement"][1]["Action"] = ["ec2:CreateRoute"]
    shared.install(owner=owner)
    assert run(shared, "a", "start").result.rc == 0
    ran = run(shared, "b", "start")
    reason = ran.result.exit_reason or ""
    assert ran.result.rc == 4, describe(ran.result)
    assert reason.startswith(f"the routing role {ROUTING_ROLE} may not ec2:ReplaceRoute on rtb-")
    assert "this node" not in reason
    assert ran.by(None) & ROUTE_CALLS == set()
    assert "ReplaceRoute" in ran.by(ROUTING_ROLE)
    assert shared.w.lab.route_targets(
        f"{OVERLAY_IP}/32", shared.w.lab.route_tables[:2]
    ) == dict.fromkeys(shared.w.lab.route_tables[:2], shared.w.lab.nodes["a"].eni_id)


def test_the_node_role_may_not_change_the_routes_itself(shared: Shared) -> None:
    """The participant policy has no route permission: the node's own key is denied the very
    calls the agent makes with the routing role (so the lifecycle above proves no fallback)."""
    shared.install()
    from test_iam_policies import error, node_client

    node = node_client(shared.w.lab, "a")
    table = shared.w.lab.route_tables[0]
    eni = shared.w.lab.nodes["a"].eni_id
    route = {"DestinationCidrBlock": f"{OVERLAY_IP}/32", "NetworkInterfaceId": eni}
    assert error(lambda: node.describe_route_tables(RouteTableIds=[table]))[0] == DENIED
    assert error(lambda: node.create_route(RouteTableId=table, DryRun=True, **route))[0] == DENIED


@pytest.mark.parametrize("how", ["node-policy", "trust-policy"])
def test_assume_role_denied_names_this_node(shared: Shared, how: str) -> None:
    """AssumeRole denied (the node's policy lacks it, or the trust names another role): 4,
    "this node may not sts:AssumeRole on <role>", and nothing changed in AWS or on the OS."""
    if how == "node-policy":
        participant = shared.participant()
        participant["Statement"] = participant["Statement"][:2]
        shared.install(participant=participant)
    else:
        shared.install(trust=shared.trust(principal_role="someone-else"))
    for action in ("validate-all", "start"):
        ran = run(shared, "a", action)
        reason = ran.result.exit_reason or ""
        assert ran.result.rc == 4, describe(ran.result)
        assert reason.startswith(
            f"this node may not sts:AssumeRole on {ROUTING_ROLE} (AccessDenied"
        )
        assert ran.denied == ["AssumeRole"]
        assert not ran.by(None) & ROUTE_CALLS
    assert on_os(shared.w.lab, OVERLAY_IP) == set()
    assert set(
        shared.w.lab.route_targets(f"{OVERLAY_IP}/32", shared.w.lab.route_tables[:2]).values()
    ) == {None}
    # monitor cannot tell: it warns and the OS side decides (not running here)
    ran = run(shared, "a", "monitor", monitor=True)
    assert ran.result.rc == 7


@pytest.mark.parametrize("external_id", ["wrong-id-123", None], ids=["wrong", "missing"])
def test_the_external_id_must_match(shared: Shared, external_id: Optional[str]) -> None:
    shared.install()
    shared.external_id = external_id
    ran = run(shared, "a", "start")
    assert ran.result.rc == 4, describe(ran.result)
    assert f"sts:AssumeRole on {ROUTING_ROLE}" in (ran.result.exit_reason or "")
    assert ran.denied == ["AssumeRole"]
    shared.external_id = EXTERNAL_ID
    assert run(shared, "a", "start").result.rc == 0


def test_the_chain_needs_the_role_arn_role_in_the_trust_policy(shared: Shared) -> None:
    """With role_arn, the routing role is assumed with role_arn's credentials: a trust policy
    naming the instance role (not role_arn's) denies it, naming role_arn as the principal."""
    shared.chain = True
    shared.install(trust=shared.trust(principal_role=shared.w.lab.role_name))
    ran = run(shared, "a", "start")
    reason = ran.result.exit_reason or ""
    assert ran.result.rc == 4, describe(ran.result)
    assert reason.startswith(
        f"the role {shared.cluster_role} (role_arn) may not sts:AssumeRole on {ROUTING_ROLE}"
    )
    assert [c.error_code for c in ran.sts] == [None, "AccessDenied"]


# ----------------------------------------------------------------------------- no more


@dataclass(frozen=True)
class Cut:
    policy: str  # PARTICIPANT or OWNER_POLICY
    index: int
    action: Optional[str]  # None: the whole statement

    @property
    def removed(self) -> frozenset[str]:
        statement = shipped(self.policy)["Statement"][self.index]
        return frozenset([self.action] if self.action else actions_of(statement))

    @property
    def label(self) -> str:
        sid = shipped(self.policy)["Statement"][self.index]["Sid"]
        return f"{self.policy.rsplit('-', 1)[-1]}-{sid}" + (
            f"-{self.action}" if self.action else ""
        )

    def apply(self, document: dict[str, Any]) -> dict[str, Any]:
        statements = [dict(s) for s in document["Statement"]]
        if self.action is None:
            del statements[self.index]
        else:
            statements[self.index]["Action"] = [
                a for a in actions_of(statements[self.index]) if a != self.action
            ]
        return {**document, "Statement": statements}


def cuts() -> list[Cut]:
    found = []
    for policy in (PARTICIPANT, OWNER_POLICY):
        for index, statement in enumerate(shipped(policy)["Statement"]):
            found.append(Cut(policy, index, None))
            names = actions_of(statement)
            if len(names) > 1:
                found += [Cut(policy, index, name) for name in names]
    return found


def cut_params() -> list[Any]:
    """Every cut; those of one action of a statement run in `make test-long` (the whole
    statements', one per statement, in the suite)."""
    return [pytest.param(c, id=c.label, marks=pytest.mark.long if c.action else ()) for c in cuts()]


@pytest.mark.parametrize("cut", cut_params())
def test_neither_policy_has_anything_to_spare(shared: Shared, cut: Cut) -> None:
    """Without one statement or action, the steps that use it are denied (4 naming it and the
    principal; a monitor warns naming it and reports the OS side), the others are not
    affected."""
    full = {"participant": shared.participant(), "owner": shared.owner()}
    side = "participant" if cut.policy == PARTICIPANT else "owner"
    reduced = dict(full)
    reduced[side] = cut.apply(full[side])
    Policy.parse(reduced[side])

    def enforce(policies: dict[str, dict[str, Any]]) -> None:
        shared.install(participant=policies["participant"], owner=policies["owner"])

    enforce(reduced)
    affected = []
    for step in STEPS:
        ran = run(shared, step.node, step.action, monitor=step.monitor)
        where = f"{step.name}: {describe(ran.result)}"
        hit = step.needs & cut.removed
        if not hit:
            assert (ran.result.rc, ran.denied) == (step.rc, []), where
            continue
        affected.append(step.name)
        assert ran.denied, where
        named = [p for p in hit if p in (ran.result.stderr or "")]
        assert named, where
        if step.monitor:  # it cannot tell: a warning, and the OS side (the address is on a)
            assert ran.result.rc == 0, where
        else:
            assert ran.result.rc == 4, where
            assert any(p in (ran.result.exit_reason or "") for p in hit), where
            principal = "this node" if side == "participant" else f"the routing role {ROUTING_ROLE}"
            if ASSUME in hit:
                principal = "this node"
            assert (ran.result.exit_reason or "").startswith(principal), where
            if step.action == "start":  # the state the full policy leaves, for the next steps
                enforce(full)
                assert run(shared, step.node, step.action).result.rc == step.rc, where
                enforce(reduced)
    assert affected, f"no step needs {sorted(cut.removed)}"


# ----------------------------------------------------------------------------- scoped


@pytest.mark.parametrize("example", sorted(example_ids(shipped(OWNER_POLICY))))
def test_the_owner_policy_is_scoped(shared: Shared, example: str) -> None:
    """The owner's policy pointed at another table: the change of the real one is denied (4),
    naming the routing role, the action and the table."""
    real = shared.w.ids()[example]
    shared.install(owner=shared.owner(**{example: shared.w.decoys["rtb"]}))
    ran = run(shared, "a", "validate-all")
    assert ran.result.rc == 4, describe(ran.result)
    assert ran.denied == ["CreateRoute"]
    reason = ran.result.exit_reason or ""
    assert reason.startswith(f"the routing role {ROUTING_ROLE} may not ec2:CreateRoute on {real} ")
    assert f":{OWNER}:route-table/{real} " in reason


def test_the_participant_policy_names_only_its_interfaces_and_the_role() -> None:
    assert example_ids(shipped(PARTICIPANT)) == {"eni-0aaaaaaaaaaaaaaaa", "eni-0bbbbbbbbbbbbbbbb"}
    role = shipped(PARTICIPANT)["Statement"][2]
    assert (role["Action"], role["Resource"]) == (
        "sts:AssumeRole",
        "arn:aws:iam::OWNER_ACCOUNT:role/ipfailover-routing",
    )
    trust = shipped(TRUST)["Statement"][0]
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": "EXTERNAL_ID"}}
