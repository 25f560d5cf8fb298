"""EC2's request throttling as EC2 does it: token buckets per account, region and API action.

Pure logic (no moto, no sockets): the lab server asks `Buckets.take` before it serves a
request from the agents' side; the harness and the benchmarks use `ThrottleModel` and
`bucket_floor`.

Source: "Request throttling for the Amazon EC2 API", Amazon EC2 Developer Guide,
https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html (read on 2026-12-03
from a stored copy; the older address docs.aws.amazon.com/AWSEC2/latest/APIReference/
throttling.html carries the same page). What it says, and what the lab does with it:

- EC2 throttles per account and per Region with the token bucket algorithm, one bucket per
  API action ("each API is evaluated individually ... requests for other API are not
  affected"). Each request takes one token; a bucket below its capacity gets `refill rate`
  tokens a second; a full bucket discards them. A throttled request fails with
  `RequestLimitExceeded` (HTTP 503, EC2's XML error body) and, in the lab, takes no token.
  Every node of every cluster of the account draws from the same buckets: one lab is one
  account and one Region.
- Request token bucket sizes and refill rates, by category (capacity: "bucket maximum
  capacity", tokens; refill: "bucket refill rate", tokens per second):

  | category | capacity | refill |
  |---|---|---|
  | non-mutating: Describe*, List*, Search*, Get* not in another category | 100 | 20 |
  | unfiltered and unpaginated non-mutating: DescribeInstances, DescribeInstanceStatus, | 50 | 10 |
  |   DescribeNetworkInterfaces, DescribeSecurityGroups, DescribeSnapshots, | | |
  |   DescribeSpotInstanceRequests, DescribeVolumes, without pagination or filter | | |
  | mutating: every other action, unless resource-intensive or uncategorized | 50 | 5 |
  | resource-intensive: AcceptVpcPeeringConnection, AuthorizeSecurityGroupIngress, ... | 50 | 5 |
  | console non-mutating (not modelled: the lab has no console) | 100 | 10 |
  | uncategorized: figures of their own per action (UNCATEGORIZED below) | | |

- For the actions our agents, the incumbents and fence_aws call (`AWS_LIMITS`):

  | action | category | capacity | refill |
  |---|---|---|---|
  | DescribeRouteTables, DescribeSubnets, DescribeVpcs | non-mutating | 100 | 20 |
  | DescribeAddresses | non-mutating | 100 | 20 |
  | DescribeNetworkInterfaces, DescribeInstances, filtered or paginated | non-mutating | 100 | 20 |
  | DescribeNetworkInterfaces, DescribeInstances, neither | unfiltered | 50 | 10 |
  | CreateRoute, ReplaceRoute, DeleteRoute | mutating | 50 | 5 |
  | AssociateAddress, DisassociateAddress | mutating | 50 | 5 |
  | AttachNetworkInterface, DetachNetworkInterface | mutating | 50 | 5 |
  | UnassignIpv6Addresses, StopInstances | mutating | 50 | 5 |
  | AssignPrivateIpAddresses, UnassignPrivateIpAddresses | uncategorized | 100 | 5 |
  | AssignIpv6Addresses, ModifyNetworkInterfaceAttribute | uncategorized | 100 | 5 |
  | StartInstances | uncategorized | 5 | 2 |

The page also lists resource token buckets (RunInstances 1000/2, TerminateInstances 1000/20,
StartInstances 1000/2, StopInstances 1000/20, drawn per instance): not modelled, the lab starts
and stops at most a node or two at a time.

Choices the page leaves open, made here:

- Refill is continuous (a fluid bucket: `refill * elapsed` tokens, capped at the capacity), not
  whole tokens once a second. That is the textbook token bucket and gives the exact bound below;
  EC2 may hand out a second's tokens in one go (at most one second's worth earlier).
- "Unfiltered and unpaginated" means no `Filter.N...`, no `MaxResults` and no `NextToken`
  parameter. The page does not say whether a list of ids (`NetworkInterfaceId.1`) counts as a
  filter; the lab takes the stricter reading (it does not), so such a call uses the smaller
  bucket. That bucket is the action's own (`"<Action>/unfiltered"`), as every limit is per
  action.
- DryRun requests draw like any other (EC2 evaluates them as requests). Requests EC2 would deny
  (IAM) draw too: the bucket is checked first.

Background load (other clusters and tools of the same account): `background[bucket]` tokens a
second drawn continuously from that bucket, i.e. the bucket fills at `refill - background`
(never below zero tokens, never above capacity; a bucket whose background equals or exceeds its
refill stays empty once drained). The buckets start full: at a steady background below the
refill rate, that is where they settle.

The bound ("bucket floor") for N calls of one action arriving at once, retried as soon as a
token is there: `max(0, N - tokens left) / (refill - background)` seconds until the last one is
answered (`bucket_floor`).

Configurable, as AWS raises limits per account on request: `ThrottleModel(limits={...},
background={...}, scale=...)`; keys are bucket names (an action, or `<Action>/unfiltered`) or a
category (`non-mutating`, `unfiltered`, `mutating`, `resource-intensive`); the environment
variable LAB_THROTTLE holds the same as JSON, or `off` (see `ThrottleModel.from_env`).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

SOURCE_TITLE = "Request throttling for the Amazon EC2 API"
SOURCE_URL = "https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html"
ENV = "LAB_THROTTLE"
UNFILTERED_SUFFIX = "/unfiltered"
# Slack for float arithmetic: a call due "exactly" when the bucket holds one token gets it.
EPSILON = 1e-9


@dataclass(frozen=True)
class Limit:
    """One bucket's figures: capacity (tokens) and refill rate (tokens per second)."""

    capacity: float
    refill: float

    def __post_init__(self) -> None:
        if self.capacity < 0 or self.refill < 0:
            raise ValueError(f"a bucket needs capacity >= 0 and refill >= 0, not {self}")


NON_MUTATING = "non-mutating"
UNFILTERED = "unfiltered"
MUTATING = "mutating"
RESOURCE_INTENSIVE = "resource-intensive"
CATEGORY_LIMITS: dict[str, Limit] = {
    NON_MUTATING: Limit(100, 20),
    UNFILTERED: Limit(50, 10),
    MUTATING: Limit(50, 5),
    RESOURCE_INTENSIVE: Limit(50, 5),
}
NON_MUTATING_PREFIXES = ("Describe", "List", "Search", "Get")
UNFILTERED_ACTIONS = frozenset(
    {
        "DescribeInstances",
        "DescribeInstanceStatus",
        "DescribeNetworkInterfaces",
        "DescribeSecurityGroups",
        "DescribeSnapshots",
        "DescribeSpotInstanceRequests",
        "DescribeVolumes",
    }
)
RESOURCE_INTENSIVE_ACTIONS = frozenset(
    {
        "AcceptVpcPeeringConnection",
        "AuthorizeSecurityGroupIngress",
        "CancelSpotInstanceRequests",
        "CreateKeyPair",
        "CreateVpcPeeringConnection",
        "DeleteVpcPeeringConnection",
        "RejectVpcPeeringConnection",
        "RevokeSecurityGroupIngress",
        "RequestSpotInstances",
    }
)
# The page's "uncategorized actions" the lab can meet (agents, tests, topology, fence_aws); the
# rest of that table are services the lab has nothing of (VPN, Verified Access, BYOIP...).
UNCATEGORIZED: dict[str, Limit] = {
    "AssignIpv6Addresses": Limit(100, 5),
    "AssignPrivateIpAddresses": Limit(100, 5),
    "UnassignPrivateIpAddresses": Limit(100, 5),
    "ModifyNetworkInterfaceAttribute": Limit(100, 5),
    "CreateNetworkInterface": Limit(100, 5),
    "DeleteNetworkInterface": Limit(100, 5),
    "CreateTags": Limit(100, 10),
    "DeleteTags": Limit(100, 10),
    "AssociateIamInstanceProfile": Limit(100, 5),
    "DisassociateIamInstanceProfile": Limit(100, 5),
    "ModifyInstanceMetadataOptions": Limit(100, 5),
    "RunInstances": Limit(5, 2),
    "StartInstances": Limit(5, 2),
    "TerminateInstances": Limit(100, 5),
}
# What the agents call (lib/ipfailover/botomodel.py) and the incumbents and fence_aws add, at
# AWS's figures: written out for the README, the benchmarks and the tests.
AGENT_ACTIONS = (
    "DescribeRouteTables",
    "DescribeNetworkInterfaces",
    "DescribeSubnets",
    "DescribeVpcs",
    "DescribeAddresses",
    "DescribeInstances",
    "CreateRoute",
    "ReplaceRoute",
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "AssignIpv6Addresses",
    "UnassignIpv6Addresses",
    "AssociateAddress",
    "DisassociateAddress",
    "AttachNetworkInterface",
    "DetachNetworkInterface",
    "ModifyNetworkInterfaceAttribute",
    "StopInstances",
    "StartInstances",
)


def category(action: str) -> str:
    """The page's category of an action (for an uncategorized one: the category by nature)."""
    if action.endswith(UNFILTERED_SUFFIX):
        return UNFILTERED
    if action in RESOURCE_INTENSIVE_ACTIONS:
        return RESOURCE_INTENSIVE
    if action.startswith(NON_MUTATING_PREFIXES):
        return NON_MUTATING
    return MUTATING


def aws_limit(bucket: str) -> Limit:
    """AWS's default figures for a bucket (an action name or `<Action>/unfiltered`)."""
    return UNCATEGORIZED.get(bucket) or CATEGORY_LIMITS[category(bucket)]


AWS_LIMITS: dict[str, Limit] = {
    **{action: aws_limit(action) for action in AGENT_ACTIONS},
    **{a + UNFILTERED_SUFFIX: aws_limit(a + UNFILTERED_SUFFIX) for a in sorted(UNFILTERED_ACTIONS)},
}


def bucket_of(action: str, params: Mapping[str, str]) -> str:
    """The bucket a request draws from: its action's, or that action's smaller bucket when it
    is one of the unfiltered-and-unpaginated subset and has neither filter nor pagination."""
    if action in UNFILTERED_ACTIONS and not any(
        key.lower().startswith("filter.") or key.lower() in ("maxresults", "nexttoken")
        for key in params
    ):
        return action + UNFILTERED_SUFFIX
    return action


def bucket_floor(
    calls: float, tokens_left: float, refill_rate: float, background_rate: float = 0.0
) -> float:
    """Seconds until the last of `calls` calls of one action, all there at once and each
    retried the moment a token is there, is answered: max(0, calls - tokens left) divided by
    (refill rate - background rate). Infinite when the background takes the whole refill."""
    missing = max(0.0, calls - tokens_left)
    if missing == 0:
        return 0.0
    net = refill_rate - background_rate
    return missing / net if net > 0 else math.inf


def _lookup(table: Mapping[str, Any], bucket: str) -> Any:
    """A bucket's entry: by its name, else by its action (for `<Action>/unfiltered`, only an
    entry naming that bucket or its category counts), else by its category."""
    if bucket in table:
        return table[bucket]
    return table.get(category(bucket))


@dataclass
class ThrottleModel:
    """The figures the lab throttles with: AWS's, unless overridden.

    `limits`: bucket or category -> Limit (or [capacity, refill] in JSON), as AWS raises them
    per account on request. `background`: bucket or category -> tokens per second others of the
    account draw. `scale`: multiplies every capacity and refill rate (small buckets on purpose,
    for scale tests). `enabled=False`: no throttling at all.
    """

    limits: dict[str, Limit] = field(default_factory=dict)
    background: dict[str, float] = field(default_factory=dict)
    scale: float = 1.0
    enabled: bool = True

    def __post_init__(self) -> None:
        self.limits = {
            k: v if isinstance(v, Limit) else Limit(*map(float, v)) for k, v in self.limits.items()
        }
        self.background = {k: float(v) for k, v in self.background.items()}
        if self.scale <= 0:
            raise ValueError("scale must be positive")
        if any(v < 0 for v in self.background.values()):
            raise ValueError("a background rate must not be negative")

    @classmethod
    def off(cls) -> ThrottleModel:
        return cls(enabled=False)

    def limit(self, bucket: str) -> Limit:
        found = _lookup(self.limits, bucket)
        base = found if found is not None else aws_limit(bucket)
        return Limit(base.capacity * self.scale, base.refill * self.scale)

    def background_rate(self, bucket: str) -> float:
        rate: float | None = _lookup(self.background, bucket)
        return rate or 0.0

    def floor(self, bucket: str, calls: float, tokens_left: float | None = None) -> float:
        """`bucket_floor` with this model's figures; tokens left default to a full bucket."""
        limit = self.limit(bucket)
        left = limit.capacity if tokens_left is None else tokens_left
        return bucket_floor(calls, left, limit.refill, self.background_rate(bucket))

    def to_json(self) -> dict[str, Any]:
        return {
            "limits": {k: [v.capacity, v.refill] for k, v in self.limits.items()},
            "background": dict(self.background),
            "scale": self.scale,
            "enabled": self.enabled,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ThrottleModel:
        unknown = set(data) - {"limits", "background", "scale", "enabled"}
        if unknown:
            raise ValueError(f"unknown throttle settings {sorted(unknown)}")
        return cls(
            limits=dict(data.get("limits", {})),
            background=dict(data.get("background", {})),
            scale=float(data.get("scale", 1.0)),
            enabled=bool(data.get("enabled", True)),
        )

    @classmethod
    def from_env(cls, value: str | None) -> ThrottleModel:
        """LAB_THROTTLE: unset, empty or `aws`: AWS's figures; `off`: none; else a JSON object
        as `to_json` writes, e.g. {"limits": {"ReplaceRoute": [10, 1]}, "background":
        {"mutating": 2}} or {"scale": 0.1}."""
        text = (value or "").strip()
        if text in ("", "aws"):
            return cls()
        if text == "off":
            return cls.off()
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not 'aws', 'off' or a JSON object")
            return cls.from_json(data)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{ENV}={text!r}: {err}") from None


@dataclass
class Bucket:
    """One token bucket, filled continuously, drawn by requests and by the background."""

    limit: Limit
    background: float
    tokens: float
    stamp: float

    def advance(self, now: float) -> None:
        elapsed = max(0.0, now - self.stamp)
        net = self.limit.refill - self.background
        self.tokens = min(self.limit.capacity, max(0.0, self.tokens + net * elapsed))
        self.stamp = max(self.stamp, now)

    def take(self, now: float) -> bool:
        self.advance(now)
        if self.tokens + EPSILON < 1.0:
            return False
        self.tokens = max(0.0, self.tokens - 1.0)
        return True


@dataclass
class Count:
    answered: int = 0  # got a token (whatever EC2 then answered)
    throttled: int = 0


class Buckets:
    """The account's buckets, made on first use (full), with per-action counters.

    Thread-safe; `clock` is injectable (monotonic seconds) so tests need no sleeps.
    """

    def __init__(
        self, model: ThrottleModel | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.model = model or ThrottleModel()
        self.clock = clock
        self._buckets: dict[str, Bucket] = {}
        self._counts: dict[str, Count] = {}
        self._lock = threading.Lock()

    def configure(self, model: ThrottleModel) -> None:
        """A new model: every bucket starts over, full; counters are kept."""
        with self._lock:
            self.model = model
            self._buckets.clear()

    def reset(self) -> None:
        """Full buckets and zero counters (a fresh lab)."""
        with self._lock:
            self._buckets.clear()
            self._counts.clear()

    def take(self, action: str, params: Mapping[str, str]) -> bool:
        """Whether the request may go on (it took a token) or is throttled (it took none)."""
        if not self.model.enabled:
            return True
        name = bucket_of(action, params)
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(name)
            if bucket is None:
                limit = self.model.limit(name)
                bucket = Bucket(limit, self.model.background_rate(name), limit.capacity, now)
                self._buckets[name] = bucket
            granted = bucket.take(now)
            count = self._counts.setdefault(action, Count())
            if granted:
                count.answered += 1
            else:
                count.throttled += 1
        return granted

    def counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {action: asdict(count) for action, count in sorted(self._counts.items())}

    def state(self) -> dict[str, Any]:
        """The model and every bucket used so far, tokens as of now."""
        now = self.clock()
        with self._lock:
            buckets = {}
            for name, bucket in sorted(self._buckets.items()):
                bucket.advance(now)
                buckets[name] = {
                    "tokens": bucket.tokens,
                    "capacity": bucket.limit.capacity,
                    "refill": bucket.limit.refill,
                    "background": bucket.background,
                }
            return {"model": self.model.to_json(), "buckets": buckets}
