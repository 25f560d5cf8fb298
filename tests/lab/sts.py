"""STS for the lab: AssumeRole with the checks AWS makes and moto does not (pure logic).

moto's STS hands out credentials for any role to anyone: it reads neither the role's trust
policy nor the caller's identity policy, and ignores ``ExternalId``. The lab answers
``AssumeRole`` itself, for the roles a test declares (``Lab.set_role``), and decides as IAM does
for one role and one caller:

- the role's trust policy (`TrustPolicy`) must allow the caller: a statement whose Principal
  names the caller's role ARN, its account (``arn:aws:iam::<account>:root`` or the bare id), or
  ``*``, for ``sts:AssumeRole``, with its Condition met; an explicit Deny wins. The conditions
  the lab evaluates are ``StringEquals`` / ``StringLike`` / ``StringNotEquals`` on
  ``sts:ExternalId`` (a missing id fails StringEquals and StringLike, as in IAM); any other
  operator or key is refused when the role is declared (`PolicyError`), never misread;
- the caller's identity policy must allow ``sts:AssumeRole`` on the role's ARN, except when the
  role is in the caller's account and the trust policy names the caller's role ARN itself (a
  resource-based policy naming the principal is enough within one account);
- a caller that is itself an assumed role (role chaining) gets at most an hour
  (``DurationSeconds`` above 3600 is a ValidationError), any caller at most the role's maximum.

A session's credentials (``ASIA...`` keys, unknown to moto, which then serves the default
account: the lab's) are remembered with the role, so that the EC2 endpoint evaluates the
role's identity policy on the requests they sign (lab.ec2_api).
"""

from __future__ import annotations

import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from xml.sax.saxutils import escape

from .iam import Policy, PolicyError, action_matches, evaluate

STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
TRUST_KEYS = frozenset({"Sid", "Effect", "Principal", "Action", "Condition"})
CONDITION_OPERATORS = frozenset({"StringEquals", "StringLike", "StringNotEquals"})
CONDITION_KEYS = frozenset({"sts:externalid"})
CHAINED_MAX_SECONDS = 3600
MIN_SECONDS = 900


class StsError(Exception):
    """An STS error answer: ``code``, ``message`` and the HTTP status."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


# ---------------------------------------------------------------------------- trust policies


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise PolicyError(f"{where} must be a string or a non-empty list of strings")
    return tuple(items)


@dataclass(frozen=True)
class Condition:
    operator: str
    values: tuple[str, ...]  # of sts:ExternalId

    def met(self, external_id: str | None) -> bool:
        if self.operator == "StringNotEquals":
            return external_id is None or external_id not in self.values
        if external_id is None:
            return False
        if self.operator == "StringEquals":
            return external_id in self.values
        from .iam import _glob

        return any(_glob(v, False).fullmatch(external_id) for v in self.values)


@dataclass(frozen=True)
class TrustStatement:
    effect: str
    principals: tuple[str, ...]  # AWS principals: role ARNs, account roots, ids, "*"
    actions: tuple[str, ...]
    conditions: tuple[Condition, ...]

    def names(self, caller_arn: str, caller_account: str) -> str | None:
        """How the statement names the caller: "exact" (its ARN), "account", or None."""
        for principal in self.principals:
            if principal == caller_arn:
                return "exact"
            if principal in ("*", caller_account, f"arn:aws:iam::{caller_account}:root"):
                return "account"
        return None

    def applies(self, caller_arn: str, account: str, external_id: str | None) -> str | None:
        if not any(action_matches(a, "sts:AssumeRole") for a in self.actions):
            return None
        how = self.names(caller_arn, account)
        if how is None or not all(c.met(external_id) for c in self.conditions):
            return None
        return how


def _trust_statement(raw: Any, where: str) -> TrustStatement:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where} must be an object")
    unknown = set(raw) - TRUST_KEYS
    if unknown:
        raise PolicyError(f"{where} has elements the lab does not evaluate: {sorted(unknown)}")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{where} Effect must be Allow or Deny, not {effect!r}")
    principal = raw.get("Principal")
    if principal == "*":
        principals: tuple[str, ...] = ("*",)
    elif isinstance(principal, dict) and set(principal) == {"AWS"}:
        principals = _strings(principal["AWS"], f"{where} Principal AWS")
    else:
        raise PolicyError(f"{where} Principal must be {{'AWS': ...}} or '*' in the lab")
    actions = _strings(raw.get("Action"), f"{where} Action")
    conditions: list[Condition] = []
    for operator, tests in (raw.get("Condition") or {}).items():
        if operator not in CONDITION_OPERATORS or not isinstance(tests, dict):
            raise PolicyError(f"{where}: the lab does not evaluate the condition {operator!r}")
        for key, values in tests.items():
            if key.lower() not in CONDITION_KEYS:
                raise PolicyError(f"{where}: the lab does not evaluate the condition key {key!r}")
            conditions.append(Condition(operator, _strings(values, f"{where} {operator}")))
    return TrustStatement(effect, principals, actions, tuple(conditions))


@dataclass(frozen=True)
class TrustPolicy:
    statements: tuple[TrustStatement, ...]

    @classmethod
    def parse(cls, document: Any) -> TrustPolicy:
        if not isinstance(document, dict) or "Statement" not in document:
            raise PolicyError("a trust policy is a JSON object with a Statement")
        raw = document["Statement"]
        items = [raw] if isinstance(raw, dict) else raw
        if not isinstance(items, list) or not items:
            raise PolicyError("Statement must be an object or a non-empty list")
        return cls(tuple(_trust_statement(s, f"Statement[{n}]") for n, s in enumerate(items)))

    def decide(self, caller_arn: str, account: str, external_id: str | None) -> str | None:
        """How the policy lets the caller in ("exact" / "account"), None: it does not."""
        found = [(s.effect, s.applies(caller_arn, account, external_id)) for s in self.statements]
        if any(effect == "Deny" and how for effect, how in found):
            return None
        allowed = [how for effect, how in found if effect == "Allow" and how]
        if not allowed:
            return None
        return "exact" if "exact" in allowed else "account"


# ---------------------------------------------------------------------------- roles, sessions


@dataclass(frozen=True)
class LabRole:
    arn: str
    trust: TrustPolicy
    policy: Policy | None  # its identity policy; None: not enforced
    max_seconds: int = 3600
    documents: tuple[dict[str, Any], dict[str, Any] | None] = ({}, None)

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]

    @property
    def name(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    @classmethod
    def declare(cls, data: dict[str, Any]) -> LabRole:
        arn = str(data["arn"])
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[2] != "iam" or not parts[5].startswith("role/"):
            raise ValueError(f"not a role ARN: {arn!r}")
        policy_doc = data.get("policy")
        trust_doc = data["trust"]
        return cls(
            arn,
            TrustPolicy.parse(trust_doc),
            Policy.parse(policy_doc) if policy_doc is not None else None,
            int(data.get("max_seconds", 3600)),
            (trust_doc, policy_doc),
        )


@dataclass(frozen=True)
class Caller:
    """Who signed an AssumeRole: the role ARN, its session's ARN, its identity policy."""

    role_arn: str
    session_arn: str
    account: str
    policy: Policy | None  # None: not enforced
    chained: bool  # itself a session the lab's STS issued


@dataclass(frozen=True)
class Session:
    access_key: str
    role: LabRole
    name: str  # RoleSessionName
    caller: str  # the session ARN of who assumed it
    expires: datetime

    @property
    def arn(self) -> str:
        return f"arn:aws:sts::{self.role.account}:assumed-role/{self.role.name}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "access_key": self.access_key,
            "role_arn": self.role.arn,
            "session_name": self.name,
            "arn": self.arn,
            "caller": self.caller,
        }


def assume_role(
    roles: dict[str, LabRole], caller: Caller, params: dict[str, str]
) -> tuple[Session, dict[str, str]]:
    """Decide an AssumeRole request; the session and its credentials, or StsError."""
    role_arn = params.get("RoleArn", "")
    name = params.get("RoleSessionName", "")
    if not role_arn or not name:
        raise StsError("MissingParameter", "RoleArn and RoleSessionName are required", 400)
    external_id = params.get("ExternalId") or None
    denied = StsError(
        "AccessDenied",
        f"User: {caller.session_arn} is not authorized to perform: sts:AssumeRole on "
        f"resource: {role_arn}",
        403,
    )
    role = roles.get(role_arn)
    if role is None:
        raise denied  # STS does not tell a missing role from a forbidden one
    how = role.trust.decide(caller.role_arn, caller.account, external_id)
    if how is None:
        raise denied
    needs_identity = not (how == "exact" and caller.account == role.account)
    identity = caller.policy  # None: not enforced
    allowed = identity is None or evaluate(identity, "sts:AssumeRole", [role_arn]).allowed
    if needs_identity and not allowed:
        raise denied
    seconds = int(params.get("DurationSeconds") or 3600)
    limit = CHAINED_MAX_SECONDS if caller.chained else role.max_seconds
    if seconds < MIN_SECONDS or seconds > limit:
        what = (
            "exceeds the 1 hour session limit for roles assumed by role chaining"
            if caller.chained and seconds > limit
            else f"must be between {MIN_SECONDS} and {limit}"
        )
        raise StsError("ValidationError", f"The requested DurationSeconds {what}.", 400)
    credentials = _credentials(seconds)
    session = Session(
        credentials["AccessKeyId"],
        role,
        name,
        caller.session_arn,
        datetime.now(timezone.utc) + timedelta(seconds=seconds),
    )
    return session, credentials


def _credentials(seconds: int) -> dict[str, str]:
    rng = secrets.SystemRandom()
    upper = string.ascii_uppercase + string.digits
    chars = string.ascii_letters + string.digits
    expires = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return {
        "AccessKeyId": "ASIA" + "".join(rng.choice(upper) for _ in range(16)),
        "SecretAccessKey": "".join(rng.choice(chars + "/+") for _ in range(40)),
        "SessionToken": "FwoGZXIvYXdzE" + "".join(rng.choice(chars) for _ in range(200)),
        "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def assume_role_body(session: Session, credentials: dict[str, str]) -> bytes:
    role_id = "AROA" + session.role.name.upper().encode().hex()[:17].upper()
    fields = "".join(
        f"<{k}>{escape(credentials[k])}</{k}>"
        for k in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
    )
    return (
        f'<AssumeRoleResponse xmlns="{STS_NAMESPACE}"><AssumeRoleResult>'
        f"<AssumedRoleUser><AssumedRoleId>{escape(role_id)}:{escape(session.name)}"
        f"</AssumedRoleId><Arn>{escape(session.arn)}</Arn></AssumedRoleUser>"
        f"<Credentials>{fields}</Credentials></AssumeRoleResult>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        "</AssumeRoleResponse>"
    ).encode()


def error_body(code: str, message: str) -> bytes:
    """The XML body STS (query protocol) answers errors with."""
    return (
        f'<ErrorResponse xmlns="{STS_NAMESPACE}"><Error><Type>Sender</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()
