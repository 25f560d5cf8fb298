"""IAM for the lab: an identity-policy evaluator for EC2 requests (pure logic, no moto import).

moto's own IAM enforcement cannot test least-privilege policies: for EC2 it checks every request
against Resource "*" (a statement scoped to one route table never matches) and treats any
Condition as failed. So the lab evaluates the policy itself, before moto runs a request:

- `Policy.parse(document)` checks an identity policy and compiles it. Elements the lab does not
  evaluate are refused with `PolicyError` rather than silently misread: Condition, Principal,
  policy variables (`${aws:username}`...). Our policies use none of them.
- `evaluate(policy, "ec2:ReplaceRoute", [arn, ...])` decides like IAM for one identity policy:
  an explicit Deny on any resource wins; otherwise every resource must be allowed by some Allow
  statement; anything not allowed is denied. Action / NotAction match case-insensitively,
  Resource / NotResource case-sensitively, both with the `*` and `?` wildcards.
- `request_resources(action, params, backend, region=, account=)` names the resources EC2
  authorizes for a request, from its query parameters and (for ids EC2 resolves itself, such as
  an attachment id) the moto backend, following the Service Authorization Reference for Amazon
  EC2 ("Actions, resources, and condition keys for Amazon EC2", list_amazonec2). An action it
  does not know raises `UnknownAction`: the lab denies it with a message saying so, so a new EC2
  call in an agent is noticed instead of being let through.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

VERSIONS = ("2012-10-17", "2008-10-17")
STATEMENT_KEYS = frozenset({"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource"})
DOCUMENT_KEYS = frozenset({"Version", "Id", "Statement"})
ARN_PARTS = 6  # arn:partition:service:region:account:resource
_ID_RE = re.compile(r"\b(?:rtb|eni|i|eipalloc|eipassoc|sg|subnet|vpc|igw|eni-attach)-[0-9a-f]+\b")


class PolicyError(ValueError):
    """The document is not an identity policy the lab can evaluate faithfully."""


class UnknownAction(LookupError):
    """The lab does not know which resources EC2 authorizes for this action."""


class Unresolvable(LookupError):
    """The request names an id EC2 must look up and cannot find: EC2 answers with its NotFound
    error before it can authorize anything, so the lab lets the request through to moto."""


# ---------------------------------------------------------------------------- matching


@lru_cache(maxsize=1024)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM wildcards: `*` any run of characters (also none), `?` exactly one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, (re.IGNORECASE if ignore_case else 0) | re.DOTALL)


def action_matches(pattern: str, action: str) -> bool:
    """`ec2:Replace*` matches `ec2:ReplaceRoute`; service prefix and name ignore case."""
    return _glob(pattern, True).fullmatch(action) is not None


def resource_matches(pattern: str, arn: str) -> bool:
    """Match an ARN pattern against a resource, segment by segment, case-sensitively.

    `*` alone matches everything (including the "*" of actions without resource types). Inside
    the partition, service, region and account segments a wildcard stays within its segment; the
    resource segment (everything after the fifth colon) is matched as a whole, slashes and colons
    included. A pattern with fewer segments whose last one ends in `*` lets that `*` run on over
    the remaining segments, as IAM does.
    """
    if pattern == "*":
        return True
    got = arn.split(":", ARN_PARTS - 1)
    want = pattern.split(":", ARN_PARTS - 1)
    if len(want) < len(got) and want[-1].endswith("*"):
        got = [*got[: len(want) - 1], ":".join(got[len(want) - 1 :])]
    if len(want) != len(got):
        return False
    return all(_glob(w, False).fullmatch(g) is not None for w, g in zip(want, got))


# ---------------------------------------------------------------------------- the policy


@dataclass(frozen=True)
class Statement:
    sid: str | None
    effect: str  # "Allow" or "Deny"
    actions: tuple[str, ...]
    not_action: bool  # the actions are NotAction
    resources: tuple[str, ...]
    not_resource: bool  # the resources are NotResource

    def covers_action(self, action: str) -> bool:
        hit = any(action_matches(p, action) for p in self.actions)
        return hit != self.not_action

    def covers_resource(self, arn: str) -> bool:
        hit = any(resource_matches(p, arn) for p in self.resources)
        return hit != self.not_resource

    def applies(self, action: str, arn: str) -> bool:
        return self.covers_action(action) and self.covers_resource(arn)

    @property
    def label(self) -> str:
        return self.sid or f"{self.effect} {', '.join(self.actions)}"


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise PolicyError(f"{where} must be a string or a non-empty list of strings")
    for item in items:
        if "${" in item:
            raise PolicyError(f"{where}: policy variables ({item!r}) are not evaluated by the lab")
    return tuple(items)


def _one_of(raw: Mapping[str, Any], name: str, where: str) -> tuple[tuple[str, ...], bool]:
    plain, negated = name in raw, f"Not{name}" in raw
    if plain == negated:
        raise PolicyError(f"{where} needs exactly one of {name} and Not{name}")
    key = name if plain else f"Not{name}"
    return _strings(raw[key], f"{where} {key}"), negated


def _statement(raw: Any, where: str) -> Statement:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where} must be an object")
    if "Condition" in raw:
        raise PolicyError(
            f"{where} has a Condition: the lab does not evaluate conditions (no request context "
            "is modelled); implement the operators in lab/iam.py before using one"
        )
    if "Principal" in raw or "NotPrincipal" in raw:
        raise PolicyError(f"{where}: an identity policy has no Principal")
    unknown = set(raw) - STATEMENT_KEYS
    if unknown:
        raise PolicyError(f"{where} has unknown elements {sorted(unknown)}")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{where} Effect must be Allow or Deny, not {effect!r}")
    sid = raw.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise PolicyError(f"{where} Sid must be a string")
    actions, not_action = _one_of(raw, "Action", where)
    for action in actions:
        if action != "*" and ":" not in action:
            raise PolicyError(f"{where}: action {action!r} lacks a service prefix")
    resources, not_resource = _one_of(raw, "Resource", where)
    for resource in resources:
        if resource != "*" and not resource.startswith("arn:"):
            raise PolicyError(f"{where}: resource {resource!r} is neither * nor an ARN")
    return Statement(sid, effect, actions, not_action, resources, not_resource)


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]

    @classmethod
    def parse(cls, document: Any) -> Policy:
        if not isinstance(document, dict):
            raise PolicyError("a policy document must be a JSON object")
        unknown = set(document) - DOCUMENT_KEYS
        if unknown:
            raise PolicyError(f"unknown policy elements {sorted(unknown)}")
        version = document.get("Version")
        if version is not None and version not in VERSIONS:
            raise PolicyError(f"unknown policy Version {version!r}")
        raw = document.get("Statement")
        items = [raw] if isinstance(raw, dict) else raw
        if not isinstance(items, list) or not items:
            raise PolicyError("Statement must be an object or a non-empty list")
        return cls(tuple(_statement(item, f"Statement[{n}]") for n, item in enumerate(items)))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    action: str
    resource: str | None = None  # the (first) resource that was not allowed
    deny_statement: str | None = None  # the statement of an explicit deny

    @property
    def explicit(self) -> bool:
        return self.deny_statement is not None


def evaluate(policy: Policy | Mapping[str, Any], action: str, resources: Sequence[str]) -> Decision:
    """IAM's decision for one identity policy, one action and the resources of the request."""
    if not isinstance(policy, Policy):
        policy = Policy.parse(policy)
    if not resources:
        raise ValueError("a request authorizes at least one resource ('*' when it has no type)")
    for arn in resources:
        for statement in policy.statements:
            if statement.effect == "Deny" and statement.applies(action, arn):
                return Decision(False, action, arn, statement.label)
    for arn in resources:
        if not any(s.effect == "Allow" and s.applies(action, arn) for s in policy.statements):
            return Decision(False, action, arn)
    return Decision(True, action)


def denial_message(decision: Decision, principal: str) -> str:
    """What EC2 says in an UnauthorizedOperation (without the encoded authorization message)."""
    why = (
        "with an explicit deny in an identity-based policy"
        if decision.explicit
        else f"because no identity-based policy allows the {decision.action} action"
    )
    return (
        f"You are not authorized to perform this operation. User: {principal} is not "
        f"authorized to perform: {decision.action} on resource: {decision.resource} {why}"
    )


def assumed_role_arn(account: str, role: str, session: str, partition: str = "aws") -> str:
    """The caller as EC2 names an instance role's session (the session is the instance id)."""
    return f"arn:{partition}:sts::{account}:assumed-role/{role}/{session}"


# ---------------------------------------------------------------------------- request resources


@dataclass(frozen=True)
class Arns:
    region: str
    account: str
    partition: str = "aws"

    def of(self, kind: str, ident: str) -> str:
        return f"arn:{self.partition}:ec2:{self.region}:{self.account}:{kind}/{ident}"


Resolver = Callable[[Mapping[str, str], Any, Arns], list[str]]


def _param(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        # EC2 rejects the request (MissingParameter) before authorizing it.
        raise Unresolvable(f"the request has no {name}")
    return value


def _listed(params: Mapping[str, str], name: str) -> list[str]:
    """The values of a query-protocol list parameter: Name.1, Name.2, ..."""
    found = re.compile(rf"{re.escape(name)}\.(\d+)")
    items = sorted((int(m.group(1)), v) for k, v in params.items() if (m := found.fullmatch(k)))
    return [value for _, value in items]


def _route_table(params: Mapping[str, str], backend: Any, arns: Arns) -> list[str]:
    return [arns.of("route-table", _param(params, "RouteTableId"))]


def _network_interface(params: Mapping[str, str], backend: Any, arns: Arns) -> list[str]:
    return [arns.of("network-interface", _param(params, "NetworkInterfaceId"))]


def _modify_eni_attribute(params: Mapping[str, str], backend: Any, arns: Arns) -> list[str]:
    groups = [arns.of("security-group", g) for g in _listed(params, "SecurityGroupId")]
    return [*_network_interface(params, backend, arns), *groups]


def _address_by_ip(backend: Any, public_ip: str) -> Any:
    for eip in backend.addresses:
        if eip.public_ip == public_ip:
            return eip
    raise Unresolvable(f"no Elastic IP {public_ip}")


def _associate_address(params: Mapping[str, str], backend: Any, arns: Arns) -> list[str]:
    allocation = params.get("AllocationId")
    if not allocation:
        eip = _address_by_ip(backend, _param(params, "PublicIp"))
        allocation = str(eip.allocation_id)
    found = [arns.of("elastic-ip", allocation)]
    if params.get("NetworkInterfaceId"):
        found.append(arns.of("network-interface", params["NetworkInterfaceId"]))
    elif params.get("InstanceId"):
        found.append(arns.of("instance", params["InstanceId"]))
    return found


def _disassociate_address(params: Mapping[str, str], backend: Any, arns: Arns) -> list[str]:
    association = params.get("AssociationId")
    eip = None
    if association:
        eip = next((a for a in backend.addresses if a.association_id == association), None)
        if eip is None:
            raise Unresolvable(f"no association {association}")
    else:
        eip = _address_by_ip(backend, _param(params, "PublicIp"))
    found = [arns.of("elastic-ip", str(eip.allocation_id))]
    if eip.eni is not None:
        found.append(arns.of("network-interface", str(eip.eni.id)))
    return found


def _attach_network_interface(params: Mapping[str, str], backend: Any, arns: Arns) -> list[str]:
    return [
        arns.of("instance", _param(params, "InstanceId")),
        arns.of("network-interface", _param(params, "NetworkInterfaceId")),
    ]


def _detach_network_interface(params: Mapping[str, str], backend: Any, arns: Arns) -> list[str]:
    attachment = _param(params, "AttachmentId")
    eni = next((e for e in backend.enis.values() if e.attachment_id == attachment), None)
    if eni is None or eni.instance is None:
        raise Unresolvable(f"no attachment {attachment}")
    return [arns.of("instance", str(eni.instance.id)), arns.of("network-interface", str(eni.id))]


def _everything(params: Mapping[str, str], backend: Any, arns: Arns) -> list[str]:
    return ["*"]


# What EC2 authorizes, per action: the resource types of the Service Authorization Reference for
# Amazon EC2 (list_amazonec2; read in its machine-readable mirror, iann0036/iam-dataset
# aws/iam_definition.json, 2025). "*" marks a required type, others are optional and authorized
# when the request involves such a resource.
ACTIONS: dict[str, Resolver] = {
    # route-table* (conditions ec2:RouteTableID, ec2:Vpc...); the route's target (our ENI) is
    # not a resource type of these actions.
    "CreateRoute": _route_table,
    "ReplaceRoute": _route_table,
    # network-interface*; instance, security-group, subnet optional. The lab adds the security
    # groups a Groups change names; it does not add the instance an ENI is attached to: the
    # reference does not say when that optional type applies (our policies do not rely on it).
    "ModifyNetworkInterfaceAttribute": _modify_eni_attribute,
    # network-interface* each.
    "AssignPrivateIpAddresses": _network_interface,
    "UnassignPrivateIpAddresses": _network_interface,
    "AssignIpv6Addresses": _network_interface,
    "UnassignIpv6Addresses": _network_interface,
    # elastic-ip, instance, network-interface (all listed optional): the Elastic IP, and the ENI
    # or instance the request targets.
    "AssociateAddress": _associate_address,
    # elastic-ip, network-interface (optional): the Elastic IP, and the ENI it is associated
    # with now.
    "DisassociateAddress": _disassociate_address,
    # instance* and network-interface* both; DetachNetworkInterface names only the attachment,
    # EC2 resolves it to the ENI and its instance (so does the lab, in the backend).
    "AttachNetworkInterface": _attach_network_interface,
    "DetachNetworkInterface": _detach_network_interface,
    # No resource types: Resource "*" only.
    "DescribeAddresses": _everything,
    "DescribeInstances": _everything,
    "DescribeNetworkInterfaces": _everything,
    "DescribeRouteTables": _everything,
    "DescribeSubnets": _everything,
    "DescribeVpcs": _everything,
}


def request_resources(
    action: str,
    params: Mapping[str, str],
    backend: Any,
    *,
    region: str,
    account: str,
    partition: str = "aws",
) -> list[str]:
    """The ARNs EC2 authorizes for one request (`["*"]` for actions without resource types).

    Raises UnknownAction for an action not in ACTIONS and Unresolvable when an id EC2 looks up
    itself (an attachment, an association, a public IP) does not exist.
    """
    resolver = ACTIONS.get(action)
    if resolver is None:
        raise UnknownAction(
            f"lab: lab/iam.py does not know which resources EC2 authorizes for ec2:{action}; "
            "add it to ACTIONS (from the Service Authorization Reference) before enforcing a "
            "policy on it"
        )
    return resolver(params, backend, Arns(region, account, partition))


# ---------------------------------------------------------------------------- example policies


def example_ids(document: Any) -> set[str]:
    """The AWS ids (rtb-..., eni-..., i-..., eipalloc-...) in a policy's resources."""
    found: set[str] = set()
    for statement in _statements_of(document):
        for key in ("Resource", "NotResource"):
            value = statement.get(key)
            for item in [value] if isinstance(value, str) else value or []:
                found.update(_ID_RE.findall(item))
    return found


def localize(
    document: Any,
    *,
    region: str,
    account: str,
    ids: Mapping[str, str],
    accounts: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A copy of a shipped example policy for another account: REGION, ACCOUNT and every example
    id replaced. An id in the policy that `ids` does not map is an error, never left as it is.
    `accounts` replaces other account placeholders (OWNER_ACCOUNT of the shared VPC policies)."""
    names = {"ACCOUNT": account, **(accounts or {})}
    missing = example_ids(document) - set(ids)
    if missing:
        raise PolicyError(f"example ids without a replacement: {sorted(missing)}")

    def fix(text: str) -> str:
        if not text.startswith("arn:"):
            return text
        parts = text.split(":", ARN_PARTS - 1)
        if len(parts) == ARN_PARTS:
            parts[3] = region if parts[3] == "REGION" else parts[3]
            parts[4] = names.get(parts[4], parts[4])
            text = ":".join(parts)
        return _ID_RE.sub(lambda m: ids[m.group(0)], text)

    statements = []
    for statement in _statements_of(document):
        copy = dict(statement)
        for key in ("Resource", "NotResource"):
            value = copy.get(key)
            if isinstance(value, str):
                copy[key] = fix(value)
            elif isinstance(value, list):
                copy[key] = [fix(v) for v in value]
        statements.append(copy)
    return {**document, "Statement": statements}


def _statements_of(document: Any) -> Iterable[dict[str, Any]]:
    raw = document.get("Statement") if isinstance(document, dict) else None
    items = [raw] if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise PolicyError("Statement must be an object or a list")
    return [item for item in items if isinstance(item, dict)]
