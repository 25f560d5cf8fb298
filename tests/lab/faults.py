"""Fault rules and the call log of the lab server (pure logic, no moto, no sockets).

A rule matches an EC2 action name (or "*") and optionally a node. Of the calls it matches, the
n-th one is hit when floor(n * rate) > floor((n - 1) * rate): deterministic, so rate=0.5 hits
calls 2, 4, 6... and rate=1 hits all. With `count`, the rule only looks at its next `count`
matching calls and then expires.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any
from xml.sax.saxutils import escape

# late: the call is carried out at once, its answer is held for `delay` seconds (a slow or
# lost response: the change happened, the caller does not know it yet).
KINDS = ("throttle", "error", "latency", "reset", "blackhole", "late")
DEFAULT_BLACKHOLE_SECONDS = 30.0


@dataclass
class FaultRule:
    action: str = "*"
    kind: str = "throttle"
    rate: float = 1.0
    code: str | None = None
    status: int | None = None
    delay: float | None = None
    count: int | None = None
    node: str | None = None
    seen: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        if self.kind in ("latency", "late") and self.delay is None:
            raise ValueError(f"a {self.kind} fault needs a delay")
        if self.kind == "throttle":
            self.code = self.code or "RequestLimitExceeded"
            self.status = self.status or 503
        elif self.kind == "error":
            self.code = self.code or "InternalError"
            self.status = self.status or 500

    def matches(self, action: str, node: str) -> bool:
        return self.action in ("*", action) and self.node in (None, node) and not self.expired

    @property
    def expired(self) -> bool:
        return self.count is not None and self.seen >= self.count

    def fires(self) -> bool:
        """Count one matching call; tell whether the fault hits it."""
        self.seen += 1
        n = self.seen
        return math.floor(n * self.rate + 1e-9) > math.floor((n - 1) * self.rate + 1e-9)


@dataclass
class Decision:
    """What to do with one call: sleep `latency` first, then apply `fault` (None: serve it),
    then hold the answer `late` seconds."""

    latency: float = 0.0
    late: float = 0.0
    fault: FaultRule | None = None


class FaultTable:
    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(rule) for rule in self._rules]

    def decide(self, action: str, node: str) -> Decision:
        decision = Decision()
        with self._lock:
            for rule in self._rules:
                if not rule.matches(action, node) or not rule.fires():
                    continue
                if rule.kind == "latency":
                    decision.latency += rule.delay or 0.0
                elif rule.kind == "late":
                    decision.late += rule.delay or 0.0
                elif decision.fault is None:
                    decision.fault = rule
            self._rules = [rule for rule in self._rules if not rule.expired]
        return decision


@dataclass
class CallRecord:
    time: float
    node: str
    service: str
    action: str
    status: int | None = None
    fault: str | None = None
    access_key: str | None = None
    error_code: str | None = None


@dataclass
class CallLog:
    records: list[CallRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, record: CallRecord) -> CallRecord:
        with self.lock:
            self.records.append(record)
        return record

    def clear(self) -> None:
        with self.lock:
            self.records.clear()

    def select(
        self, node: str | None = None, since: float | None = None, service: str | None = "ec2"
    ) -> list[dict[str, Any]]:
        with self.lock:
            return [
                asdict(r)
                for r in self.records
                if (node is None or r.node == node)
                and (since is None or r.time >= since)
                and (service is None or r.service == service)
            ]


def ec2_error_body(code: str, message: str) -> bytes:
    """The XML body EC2 (query protocol) answers errors with; botocore reads Code from it."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()


MESSAGES = {
    "RequestLimitExceeded": "Request limit exceeded.",
    "UnauthorizedOperation": "You are not authorized to perform this operation.",
    "InternalError": "An internal error has occurred.",
    "Unavailable": "The service is unavailable. Please try again shortly.",
    "DryRunOperation": "Request would have succeeded, but DryRun flag is set.",
}


def error_message(code: str) -> str:
    return MESSAGES.get(code, f"Injected lab fault {code}.")


def now() -> float:
    return time.time()
