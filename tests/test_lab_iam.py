"""The lab's IAM evaluator (lab/iam.py) on hand-made policies: no lab, no moto.

What it must get right is what IAM does for one identity policy: default deny, an explicit deny
wins, every resource of a request must be allowed, wildcards in actions (any case) and ARNs
(exact case), NotAction / NotResource, and a refusal of what it does not evaluate (Condition).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from lab.iam import (
    ACTIONS,
    Decision,
    Policy,
    PolicyError,
    UnknownAction,
    Unresolvable,
    action_matches,
    assumed_role_arn,
    denial_message,
    evaluate,
    example_ids,
    localize,
    request_resources,
    resource_matches,
)

ACCOUNT = "123456789012"
REGION = "eu-central-1"
RTB1 = f"arn:aws:ec2:{REGION}:{ACCOUNT}:route-table/rtb-1"
RTB2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}:route-table/rtb-2"
ENI1 = f"arn:aws:ec2:{REGION}:{ACCOUNT}:network-interface/eni-1"
I1 = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-1"


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def allowed(document: dict[str, Any], action: str, *resources: str) -> bool:
    return evaluate(document, action, list(resources)).allowed


# ----------------------------------------------------------------------------- decisions


def test_nothing_is_allowed_by_default() -> None:
    decision = evaluate(policy(allow("ec2:DescribeVpcs")), "ec2:ReplaceRoute", [RTB1])
    assert decision == Decision(False, "ec2:ReplaceRoute", RTB1)
    assert not decision.explicit


def test_a_statement_scoped_to_a_route_table_allows_only_that_table() -> None:
    doc = policy(allow(["ec2:CreateRoute", "ec2:ReplaceRoute"], RTB1))
    assert allowed(doc, "ec2:ReplaceRoute", RTB1)
    assert allowed(doc, "ec2:CreateRoute", RTB1)
    assert not allowed(doc, "ec2:ReplaceRoute", RTB2)
    assert not allowed(doc, "ec2:DeleteRoute", RTB1)


def test_explicit_deny_wins_over_any_allow() -> None:
    doc = policy(allow("ec2:*"), {**deny("ec2:ReplaceRoute", RTB2), "Sid": "NotThatOne"})
    assert allowed(doc, "ec2:ReplaceRoute", RTB1)
    decision = evaluate(doc, "ec2:ReplaceRoute", [RTB2])
    assert (decision.allowed, decision.resource, decision.deny_statement) == (
        False,
        RTB2,
        "NotThatOne",
    )
    assert decision.explicit


def test_every_resource_of_a_request_must_be_allowed() -> None:
    doc = policy(allow("ec2:AttachNetworkInterface", [ENI1]))
    decision = evaluate(doc, "ec2:AttachNetworkInterface", [I1, ENI1])
    assert (decision.allowed, decision.resource) == (False, I1)
    doc = policy(allow("ec2:AttachNetworkInterface", ENI1), allow("ec2:AttachNetworkInterface", I1))
    assert allowed(doc, "ec2:AttachNetworkInterface", I1, ENI1)  # by different statements


def test_a_deny_on_one_resource_denies_the_whole_request() -> None:
    doc = policy(allow("ec2:AttachNetworkInterface"), deny("ec2:AttachNetworkInterface", I1))
    assert not allowed(doc, "ec2:AttachNetworkInterface", ENI1, I1)


def test_actions_match_case_insensitively_with_wildcards() -> None:
    assert action_matches("ec2:ReplaceRoute", "EC2:replaceroute")
    assert action_matches("ec2:Replace*", "ec2:ReplaceRoute")
    assert action_matches("ec2:Describe*", "ec2:DescribeVpcs")
    assert action_matches("ec2:?escribeVpcs", "ec2:DescribeVpcs")
    assert action_matches("*", "ec2:DescribeVpcs")
    assert not action_matches("ec2:Replace*", "ec2:CreateRoute")
    assert not action_matches("ec2:ReplaceRoute", "ec2:ReplaceRouteTableAssociation")
    assert not action_matches("iam:*", "ec2:DescribeVpcs")
    assert allowed(policy(allow("EC2:DESCRIBEVPCS")), "ec2:DescribeVpcs", "*")


def test_resources_match_case_sensitively_with_wildcards() -> None:
    assert resource_matches("*", RTB1)
    assert resource_matches(f"arn:aws:ec2:{REGION}:{ACCOUNT}:route-table/*", RTB1)
    assert resource_matches(f"arn:aws:ec2:{REGION}:{ACCOUNT}:route-table/rtb-?", RTB1)
    assert resource_matches(f"arn:aws:ec2:*:{ACCOUNT}:route-table/rtb-1", RTB1)
    assert resource_matches("arn:aws:ec2:*:*:*", RTB1)
    assert not resource_matches(f"arn:aws:ec2:{REGION}:{ACCOUNT}:route-table/RTB-1", RTB1)
    assert not resource_matches(f"arn:aws:ec2:{REGION}:{ACCOUNT}:network-interface/*", RTB1)
    assert not resource_matches(f"arn:aws:ec2:{REGION}:{ACCOUNT}:route-table/rtb-?", RTB1 + "0")
    # a wildcard stays in its segment...
    assert not resource_matches("arn:aws:ec2:*:route-table/rtb-1", RTB1)
    assert not resource_matches("arn:aws:ec2:eu*route-table/rtb-1", RTB1)
    # ...unless it ends a shorter pattern, then it runs on over the colons
    assert resource_matches("arn:aws:ec2:*", RTB1)


def test_an_action_without_resource_types_needs_resource_star() -> None:
    """Describe* authorizes "*": a statement scoped to ARNs does not cover it."""
    assert allowed(policy(allow("ec2:DescribeRouteTables", "*")), "ec2:DescribeRouteTables", "*")
    scoped = policy(allow("ec2:DescribeRouteTables", RTB1))
    assert not allowed(scoped, "ec2:DescribeRouteTables", "*")
    assert not allowed(policy(allow("ec2:*", "arn:aws:ec2:*:*:*")), "ec2:DescribeVpcs", "*")


def test_not_action_and_not_resource() -> None:
    everything_but = policy({"Effect": "Allow", "NotAction": "ec2:Delete*", "Resource": "*"})
    assert allowed(everything_but, "ec2:ReplaceRoute", RTB1)
    assert not allowed(everything_but, "ec2:DeleteRoute", RTB1)
    other_tables = policy({"Effect": "Allow", "Action": "ec2:ReplaceRoute", "NotResource": RTB1})
    assert allowed(other_tables, "ec2:ReplaceRoute", RTB2)
    assert not allowed(other_tables, "ec2:ReplaceRoute", RTB1)
    fence = policy(
        allow("ec2:*"), {"Effect": "Deny", "NotAction": "ec2:Describe*", "Resource": RTB2}
    )
    assert allowed(fence, "ec2:ReplaceRoute", RTB1)
    assert not allowed(fence, "ec2:ReplaceRoute", RTB2)


def test_a_single_statement_object_and_string_values() -> None:
    doc = {"Version": "2012-10-17", "Statement": allow("ec2:ReplaceRoute", RTB1)}
    assert allowed(doc, "ec2:ReplaceRoute", RTB1)


def test_an_empty_resource_list_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="at least one resource"):
        evaluate(policy(allow("*")), "ec2:DescribeVpcs", [])


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (policy(allow("ec2:*", Condition={"StringEquals": {"ec2:Vpc": "x"}})), "Condition"),
        (policy(allow("ec2:*", Principal="*")), "Principal"),
        (policy(allow("ec2:*", "arn:aws:ec2:*:*:instance/${aws:username}")), "variables"),
        (policy({"Effect": "Allow", "Action": "ec2:*"}), "Resource"),
        (policy({"Effect": "Allow", "Resource": "*"}), "Action"),
        (policy({**allow("ec2:*"), "NotAction": "ec2:Delete*"}), "exactly one"),
        (policy({"Effect": "Maybe", "Action": "ec2:*", "Resource": "*"}), "Effect"),
        (policy(allow("ReplaceRoute")), "service prefix"),
        (policy(allow("ec2:*", "rtb-1")), "ARN"),
        (policy(allow([])), "non-empty"),
        (policy({**allow("ec2:*"), "Extra": 1}), "unknown"),
        ({"Version": "2012-10-17", "Statement": []}, "Statement"),
        ({"Version": "2099-01-01", "Statement": allow("*")}, "Version"),
        ({"Statement": allow("*"), "Comment": "x"}, "unknown"),
        ([allow("*")], "object"),
    ],
)
def test_what_the_lab_does_not_evaluate_is_refused(document: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy.parse(document)


# ----------------------------------------------------------------------------- messages


def test_denial_message_reads_like_ec2s() -> None:
    principal = assumed_role_arn(ACCOUNT, "node-role", "i-0abc")
    assert principal == f"arn:aws:sts::{ACCOUNT}:assumed-role/node-role/i-0abc"
    implicit = denial_message(Decision(False, "ec2:ReplaceRoute", RTB1), principal)
    assert implicit == (
        "You are not authorized to perform this operation. User: "
        f"{principal} is not authorized to perform: ec2:ReplaceRoute on resource: {RTB1} "
        "because no identity-based policy allows the ec2:ReplaceRoute action"
    )
    explicit = denial_message(Decision(False, "ec2:ReplaceRoute", RTB1, "NoRoutes"), principal)
    assert explicit.endswith(
        f"on resource: {RTB1} with an explicit deny in an identity-based policy"
    )


# ----------------------------------------------------------------------------- request resources


def arn(kind: str, ident: str) -> str:
    return f"arn:aws:ec2:{REGION}:{ACCOUNT}:{kind}/{ident}"


def resources(action: str, params: dict[str, str], backend: Any = None) -> list[str]:
    return request_resources(action, params, backend, region=REGION, account=ACCOUNT)


def fake_backend() -> Any:
    """Just what the resolvers look at: ENIs with attachments and Elastic IPs."""
    instance = SimpleNamespace(id="i-1")
    eni = SimpleNamespace(id="eni-1", attachment_id="eni-attach-1", instance=instance)
    spare = SimpleNamespace(id="eni-2", attachment_id=None, instance=None)
    eip = SimpleNamespace(
        allocation_id="eipalloc-1", public_ip="198.51.100.1", association_id="eipassoc-1", eni=eni
    )
    loose = SimpleNamespace(
        allocation_id="eipalloc-2", public_ip="198.51.100.2", association_id=None, eni=None
    )
    return SimpleNamespace(enis={"eni-1": eni, "eni-2": spare}, addresses=[eip, loose])


@pytest.mark.parametrize(
    ("action", "params", "expected"),
    [
        ("CreateRoute", {"RouteTableId": "rtb-1"}, [arn("route-table", "rtb-1")]),
        ("ReplaceRoute", {"RouteTableId": "rtb-1", "NetworkInterfaceId": "eni-9"}, [RTB1]),
        ("ModifyNetworkInterfaceAttribute", {"NetworkInterfaceId": "eni-1"}, [ENI1]),
        (
            "ModifyNetworkInterfaceAttribute",
            {
                "NetworkInterfaceId": "eni-1",
                "SecurityGroupId.2": "sg-2",
                "SecurityGroupId.1": "sg-1",
            },
            [ENI1, arn("security-group", "sg-1"), arn("security-group", "sg-2")],
        ),
        ("AssignPrivateIpAddresses", {"NetworkInterfaceId": "eni-1"}, [ENI1]),
        ("UnassignPrivateIpAddresses", {"NetworkInterfaceId": "eni-1"}, [ENI1]),
        ("AssignIpv6Addresses", {"NetworkInterfaceId": "eni-1"}, [ENI1]),
        ("UnassignIpv6Addresses", {"NetworkInterfaceId": "eni-1"}, [ENI1]),
        (
            "AssociateAddress",
            {"AllocationId": "eipalloc-2", "NetworkInterfaceId": "eni-1"},
            [arn("elastic-ip", "eipalloc-2"), ENI1],
        ),
        (
            "AssociateAddress",
            {"PublicIp": "198.51.100.2", "InstanceId": "i-1"},
            [arn("elastic-ip", "eipalloc-2"), I1],
        ),
        (
            "DisassociateAddress",
            {"AssociationId": "eipassoc-1"},
            [arn("elastic-ip", "eipalloc-1"), ENI1],
        ),
        ("DisassociateAddress", {"PublicIp": "198.51.100.2"}, [arn("elastic-ip", "eipalloc-2")]),
        (
            "AttachNetworkInterface",
            {"NetworkInterfaceId": "eni-1", "InstanceId": "i-1", "DeviceIndex": "1"},
            [I1, ENI1],
        ),
        ("DetachNetworkInterface", {"AttachmentId": "eni-attach-1", "Force": "true"}, [I1, ENI1]),
        ("DescribeRouteTables", {"RouteTableId.1": "rtb-1"}, ["*"]),
        ("DescribeNetworkInterfaces", {}, ["*"]),
        ("DescribeVpcs", {}, ["*"]),
        ("DescribeSubnets", {}, ["*"]),
        ("DescribeAddresses", {"AllocationId.1": "eipalloc-1"}, ["*"]),
    ],
)
def test_request_resources(action: str, params: dict[str, str], expected: list[str]) -> None:
    assert resources(action, params, fake_backend()) == expected


@pytest.mark.parametrize(
    ("action", "params"),
    [
        ("DetachNetworkInterface", {"AttachmentId": "eni-attach-404"}),
        ("DetachNetworkInterface", {}),
        ("DisassociateAddress", {"AssociationId": "eipassoc-404"}),
        ("AssociateAddress", {"PublicIp": "203.0.113.9", "NetworkInterfaceId": "eni-1"}),
        ("ReplaceRoute", {"DestinationCidrBlock": "192.0.2.1/32"}),
    ],
)
def test_ids_ec2_cannot_resolve_are_left_to_ec2(action: str, params: dict[str, str]) -> None:
    with pytest.raises(Unresolvable):
        resources(action, params, fake_backend())


def test_an_unknown_action_is_refused_by_name() -> None:
    with pytest.raises(UnknownAction, match=r"ec2:DeleteRoute.*ACTIONS"):
        resources("DeleteRoute", {"RouteTableId": "rtb-1"})
    assert "DeleteRoute" not in ACTIONS
    with pytest.raises(UnknownAction):
        resources("DescribeInstanceAttribute", {})  # not assumed to be "*" by its name


# ----------------------------------------------------------------------------- example policies


EXAMPLE = policy(
    allow("ec2:DescribeVpcs"),
    allow(
        "ec2:ReplaceRoute",
        ["arn:aws:ec2:REGION:ACCOUNT:route-table/rtb-0123456789abcdef0"],
    ),
    allow("ec2:AttachNetworkInterface", "arn:aws:ec2:REGION:ACCOUNT:instance/i-0aaaaaaaaaaaaaaaa"),
)


def test_localize_replaces_region_account_and_every_example_id() -> None:
    assert example_ids(EXAMPLE) == {"rtb-0123456789abcdef0", "i-0aaaaaaaaaaaaaaaa"}
    local = localize(
        EXAMPLE,
        region=REGION,
        account=ACCOUNT,
        ids={"rtb-0123456789abcdef0": "rtb-1", "i-0aaaaaaaaaaaaaaaa": "i-1", "eni-0x": "eni-1"},
    )
    assert local["Statement"][0]["Resource"] == "*"
    assert local["Statement"][1]["Resource"] == [RTB1]
    assert local["Statement"][2]["Resource"] == I1
    assert EXAMPLE["Statement"][1]["Resource"][0].endswith("rtb-0123456789abcdef0")  # a copy


def test_localize_fails_on_an_example_id_it_cannot_replace() -> None:
    with pytest.raises(PolicyError, match="i-0aaaaaaaaaaaaaaaa"):
        localize(EXAMPLE, region=REGION, account=ACCOUNT, ids={"rtb-0123456789abcdef0": "rtb-1"})
