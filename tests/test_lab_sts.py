"""The lab's STS decisions (lab/sts.py) on hand-made roles: no lab, no moto."""

from __future__ import annotations

from typing import Any, Optional

import pytest

from lab.iam import Policy, PolicyError
from lab.sts import Caller, LabRole, StsError, TrustPolicy, assume_role

NODES = "123456789012"
OWNER = "210987654321"
NODE_ROLE = f"arn:aws:iam::{NODES}:role/node"
ROUTING = f"arn:aws:iam::{OWNER}:role/routing"
MAY_ASSUME = Policy.parse(
    {"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": ROUTING}}
)
NOTHING = Policy.parse(
    {"Statement": {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}}
)


def trust(principal: Any = NODE_ROLE, condition: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": principal},
        "Action": "sts:AssumeRole",
    }
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def role(arn: str = ROUTING, **kw: Any) -> dict[str, LabRole]:
    return {arn: LabRole.declare({"arn": arn, "trust": trust(**kw)})}


def node(policy: Optional[Policy] = MAY_ASSUME, *, chained: bool = False) -> Caller:
    return Caller(NODE_ROLE, f"arn:aws:sts::{NODES}:assumed-role/node/i-1", NODES, policy, chained)


def request(**kw: str) -> dict[str, str]:
    return {"RoleArn": ROUTING, "RoleSessionName": "s", "DurationSeconds": "900", **kw}


def test_a_trusted_caller_with_the_permission_gets_a_session() -> None:
    session, creds = assume_role(role(), node(), request())
    assert creds["AccessKeyId"].startswith("ASIA") and session.access_key == creds["AccessKeyId"]
    assert session.arn == f"arn:aws:sts::{OWNER}:assumed-role/routing/s"
    assert session.caller == node().session_arn


@pytest.mark.parametrize(
    ("roles", "caller", "params"),
    [
        ({}, node(), request()),  # no such role: the same answer as a forbidden one
        (role(principal=f"arn:aws:iam::{NODES}:role/other"), node(), request()),
        (role(), node(NOTHING), request()),  # cross-account: the identity policy is needed too
        (role(principal=NODES), node(NOTHING), request()),
    ],
    ids=["unknown-role", "not-trusted", "no-identity-permission", "account-trust-no-permission"],
)
def test_denied(roles: dict[str, LabRole], caller: Caller, params: dict[str, str]) -> None:
    with pytest.raises(StsError) as info:
        assume_role(roles, caller, params)
    assert (info.value.code, info.value.status) == ("AccessDenied", 403)
    assert info.value.message == (
        f"User: {caller.session_arn} is not authorized to perform: sts:AssumeRole on resource: "
        f"{ROUTING}"
    )


def test_within_one_account_a_trust_naming_the_caller_is_enough() -> None:
    same = f"arn:aws:iam::{NODES}:role/routing"
    roles = {same: LabRole.declare({"arn": same, "trust": trust()})}
    assume_role(roles, node(NOTHING), request(RoleArn=same))
    account_only = {same: LabRole.declare({"arn": same, "trust": trust(principal=NODES)})}
    with pytest.raises(StsError):
        assume_role(account_only, node(NOTHING), request(RoleArn=same))


@pytest.mark.parametrize(
    ("operator", "given", "ok"),
    [
        ("StringEquals", "ext-1", True),
        ("StringEquals", "ext-2", False),
        ("StringEquals", None, False),
        ("StringLike", "ext-9", True),
        ("StringLike", None, False),
        ("StringNotEquals", "ext-2", True),
        ("StringNotEquals", None, True),
    ],
)
def test_the_external_id_condition(operator: str, given: Optional[str], ok: bool) -> None:
    value = "ext-?" if operator == "StringLike" else "ext-1"
    roles = role(condition={operator: {"sts:ExternalId": value}})
    params = request(**({"ExternalId": given} if given else {}))
    if ok:
        assume_role(roles, node(), params)
    else:
        with pytest.raises(StsError, match="AccessDenied"):
            assume_role(roles, node(), params)


def test_an_explicit_deny_in_the_trust_wins() -> None:
    document = trust()
    document["Statement"].append({"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:*"})
    roles = {ROUTING: LabRole.declare({"arn": ROUTING, "trust": document})}
    with pytest.raises(StsError, match="AccessDenied"):
        assume_role(roles, node(), request())


def test_a_chained_session_lasts_an_hour_at_most() -> None:
    assume_role(role(), node(chained=True), request(DurationSeconds="3600"))
    with pytest.raises(StsError) as info:
        assume_role(role(), node(chained=True), request(DurationSeconds="3601"))
    assert info.value.code == "ValidationError"
    assert "role chaining" in info.value.message
    with pytest.raises(StsError, match="ValidationError"):
        assume_role(role(), node(), request(DurationSeconds="899"))


@pytest.mark.parametrize(
    "statement",
    [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        },
        {
            "Effect": "Allow",
            "Principal": {"AWS": NODE_ROLE},
            "Action": "sts:AssumeRole",
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
        },
        {
            "Effect": "Allow",
            "Principal": {"AWS": NODE_ROLE},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceIp": "10.0.0.1"}},
        },
        {"Effect": "Allow", "Principal": {"AWS": NODE_ROLE}, "NotAction": "sts:TagSession"},
    ],
)
def test_what_the_lab_does_not_evaluate_is_refused(statement: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        TrustPolicy.parse({"Statement": [statement]})
