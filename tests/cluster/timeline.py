"""The Pacemaker timeline of a failover, from the nodes' pacemaker.log (pure functions).

Lines look like ``Nov 23 19:29:38.081 b pacemaker-fenced    [32] (fn) \tnotice: <message>``.
`events` keeps what tells the story of a failover: membership loss, the fencing decision and
its result, changes of node health attributes (`#health-*`), and the operations of the
resources asked about, each once (the same message logged by several daemons or nodes counts
once), in time order.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

LINE = re.compile(
    r"^(?P<stamp>\w{3} [ \d]\d \d\d:\d\d:\d\d\.\d{3}) (?P<host>\S+) +(?P<daemon>[\w-]+)\s*"
    r"\[\d+\] \([^)]*\)\s+(?P<level>\w+): (?P<message>.*)$"
)
MEMBERSHIP_LOST = re.compile(r"^Node (\S+) state is now lost")
WILL_BE_FENCED = re.compile(r"^Cluster node (\S+) will be fenced: (.*)$")
FENCE_REQUESTED = re.compile(r"^Requesting fencing \((\w+)\) of node (\S+)")
FENCE_DEVICE = re.compile(
    r"^Operation '(\w+)' \[\d+\] targeting (\S+) using (\S+) returned (-?\d+)"
)
FENCED = re.compile(r"^Peer (\S+) was terminated \((\w+)\) by (\S+) on behalf of \S+: (\w+)")
INITIATING = re.compile(r"^Initiating (\w+) operation (\S+) (?:locally )?on (\S+)")
QUIET = ("ok", "Cancelled")  # monitor results that tell nothing about a failover
# pacemaker-attrd's change of a node health attribute (aws-health's #health-aws)
HEALTH = re.compile(r"^Setting (#health-[\w-]+)\[(\S+)\]: (\S+) -> (\S+)")
RESULT = re.compile(r"^Result of (\w+) operation for (\S+) on (\S+): ([^|]*?)\s*(?:\||$)")


@dataclass(frozen=True)
class Event:
    time: float  # time.time()
    node: str  # whose log
    text: str


def parse_stamp(stamp: str, year: int | None = None) -> float:
    year = year if year is not None else time.localtime().tm_year
    moment = datetime.datetime.strptime(f"{year} {stamp}", "%Y %b %d %H:%M:%S.%f")
    return moment.timestamp()  # naive: local time, as Pacemaker logs


def _op_resource(op_key: str) -> str:
    """rsc_ip_app_start_0 -> rsc_ip_app; rsc_ip_app_monitor_10000 -> rsc_ip_app."""
    return op_key.rsplit("_", 2)[0]


def describe(message: str, resources: Sequence[str]) -> str | None:  # noqa: PLR0911
    """A short sentence for a log message that belongs to the timeline, else None."""
    if m := MEMBERSHIP_LOST.match(message):
        return f"{m.group(1)} left the membership (lost)"
    if m := WILL_BE_FENCED.match(message):
        return f"scheduler: {m.group(1)} will be fenced ({m.group(2)})"
    if m := FENCE_REQUESTED.match(message):
        return f"fencing ({m.group(1)}) of {m.group(2)} requested"
    if m := FENCE_DEVICE.match(message):
        action, target, device, rc = m.groups()
        return f"{device}: {action} of {target} returned {rc}"
    if m := FENCED.match(message):
        target, action, by, result = m.groups()
        return f"{target} fenced ({action}) by {by}: {result}"
    if m := HEALTH.match(message):
        attribute, node, old, new = m.groups()
        return f"{node}: {attribute} {old} -> {new}"
    if m := INITIATING.match(message):
        op, key, node = m.groups()
        if _op_resource(key) in resources and op != "monitor":
            return f"{_op_resource(key)}: {op} on {node} initiated"
        return None
    if m := RESULT.match(message):
        op, resource, node, result = m.groups()
        if resource in resources and (op != "monitor" or result.strip() not in QUIET):
            return f"{resource}: {op} on {node}: {result.strip()}"
    return None


def events(
    logs: Iterable[tuple[str, str]],
    resources: Sequence[str],
    since: float,
    until: float | None = None,
    year: int | None = None,
) -> list[Event]:
    """The timeline from (node, pacemaker.log text) pairs, between since and until."""
    found: dict[str, Event] = {}
    for node, text in logs:
        for line in text.splitlines():
            m = LINE.match(line)
            if m is None:
                continue
            at = parse_stamp(m.group("stamp"), year)
            if at < since or (until is not None and at > until):
                continue
            sentence = describe(m.group("message"), resources)
            if sentence is None:
                continue
            known = found.get(sentence)
            # the same sentence again later is a new event (a second start, say)
            key = sentence if known is None or abs(known.time - at) < 0.5 else f"{sentence}@{at}"
            if key not in found or at < found[key].time:
                found[key] = Event(at, node, sentence)
    return sorted(found.values(), key=lambda e: e.time)
