"""aws-health's pure part: AWS's instance events as the metadata service shows them, and the
decision what this node's ``#health-aws`` should be. No I/O here: actions.py reads and writes.

The rules (the README's aws-health section explains them to users):

- Only events of State "active" count; others are logged and ignored. So is an active event whose
  NotBefore is before this node booted: the reboot or stop/start it announced has happened.
- A scheduled event is *due* from NotBefore - lead_time; a spot interruption notice is due at
  once. A rebalance recommendation is never due (logged only): it is a risk, not a notice, and
  often comes to nothing; the interruption notice that may follow is acted on.
- Green only on a positive read without a due event. A metadata read that fails keeps the last
  value (red stays red, green stays green, nothing stays nothing). Red is held at least
  ``hold_time`` seconds, and otherwise until no event is due any more.
- Red only when it is safe: another node online, not in standby or maintenance, green itself,
  and (optionally) the user's condition true on it. A node with a later event of its own is a
  target: it waits until this one is green again, and moving to it is no worse than staying.
  No other node may be red already. Every node that wants red publishes its *claim* (the
  NotBefore of its earliest due event) first; a node turns red only once its claim has been
  visible for ``settle`` seconds and no other claim comes before its own in the order
  (NotBefore, node name). Until then it is on hold: ``#health-aws`` does not change (never
  yellow) and the hold's reason is published. After turning red it reads again and backs off
  if another node turned red with an earlier claim (``conflict``).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple, Optional

RED = "red"
GREEN = "green"
MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
SPOT_ACTIONS = ("terminate", "stop", "hibernate")
MAX_EVENTS = 100


class EventError(ValueError):
    """What the metadata service returned is not what AWS documents: read as "unknown"."""


def parse_time(text: object) -> float:
    """Seconds since the epoch of a time as IMDS writes it: ``21 Jan 2019 09:00:43 GMT``
    (scheduled events) or ``2017-09-18T08:22:00Z`` (spot, rebalance). Parsed by hand: strptime's
    %b follows the locale (an SAP host in German reads "Mär", not "Mar")."""
    import calendar

    bad = EventError(f"{text!r:.60} is not a time IMDS writes")
    if not isinstance(text, str) or len(text) > 40 or not text.isascii():
        raise bad
    words = text.split()
    try:
        if len(words) == 5 and words[4] in ("GMT", "UTC"):
            day, month, year, clock = (
                int(words[0]),
                MONTHS[words[1].title()],
                int(words[2]),
                words[3],
            )
        elif len(words) == 1 and text.endswith("Z") and "T" in text:
            date, clock = text[:-1].split("T")
            year, month, day = (int(part) for part in date.split("-"))
        else:
            raise bad
        hour, minute, second = (int(part) for part in clock.split(":"))
    except (KeyError, ValueError):
        raise bad from None
    if not (
        1970 <= year <= 9999
        and 1 <= month <= 12
        and 1 <= day <= calendar.monthrange(year, month)[1]
        and 0 <= hour <= 23
        and 0 <= minute <= 59
        and 0 <= second <= 60
    ):
        raise bad
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


def show_time(epoch: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class Event(NamedTuple):
    """One thing AWS will do to this instance."""

    source: str  # "scheduled", "spot" or "rebalance"
    code: str  # e.g. system-reboot; spot: "spot-" + action; rebalance: "rebalance"
    event_id: str
    not_before: float
    not_after: Optional[float] = None

    def describe(self) -> str:
        ident = f" {self.event_id}" if self.event_id else ""
        return f"{self.code}{ident} at {show_time(self.not_before)}"


class Reading(NamedTuple):
    """A positive read of the metadata service: the events that count, and log lines about the
    ones that do not."""

    events: tuple[Event, ...]
    ignored: tuple[str, ...] = ()


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise EventError(f"{what} is not JSON: {text[:60]!r}") from None


def _short(value: object) -> str:
    return str(value)[:80].replace("\n", " ")


def parse_scheduled(text: str, boot_time: float) -> Reading:
    """``events/maintenance/scheduled``: a JSON list of events (``[]``: none)."""
    data = _json(text, "events/maintenance/scheduled")
    if not isinstance(data, list) or len(data) > MAX_EVENTS:
        raise EventError("events/maintenance/scheduled is not a list of events")
    events: list[Event] = []
    ignored: list[str] = []
    for item in data:
        if not isinstance(item, dict):
            raise EventError("events/maintenance/scheduled holds something other than an event")
        code = _short(item.get("Code", "?"))
        event_id = _short(item.get("EventId", ""))
        state = item.get("State")
        if state != "active":
            ignored.append(f"event {code} {event_id} is {_short(state)!r}, not active: ignored")
            continue
        event = Event(
            "scheduled",
            code,
            event_id,
            parse_time(item.get("NotBefore")),
            parse_time(item["NotAfter"]) if item.get("NotAfter") else None,
        )
        if event.not_before <= boot_time:
            ignored.append(
                f"event {event.describe()} began before this node booted "
                f"({show_time(boot_time)}): done, ignored"
            )
            continue
        events.append(event)
    return Reading(tuple(events), tuple(ignored))


def parse_spot(text: Optional[str]) -> Optional[Event]:
    """``spot/instance-action`` (None: 404, no notice)."""
    if text is None:
        return None
    data = _json(text, "spot/instance-action")
    if not isinstance(data, dict) or data.get("action") not in SPOT_ACTIONS:
        raise EventError(f"spot/instance-action is not a notice: {text[:60]!r}")
    return Event("spot", f"spot-{data['action']}", "", parse_time(data.get("time")))


def parse_rebalance(text: Optional[str]) -> Optional[Event]:
    """``events/recommendations/rebalance`` (None: 404, no recommendation)."""
    if text is None:
        return None
    data = _json(text, "events/recommendations/rebalance")
    if not isinstance(data, dict):
        raise EventError(f"events/recommendations/rebalance is not an object: {text[:60]!r}")
    return Event("rebalance", "rebalance", "", parse_time(data.get("noticeTime")))


def read_events(
    scheduled: str, spot: Optional[str], rebalance: Optional[str], boot_time: float
) -> Reading:
    """The three metadata paths as one reading (EventError: unknown, keep the last state)."""
    reading = parse_scheduled(scheduled, boot_time)
    events = list(reading.events)
    ignored = list(reading.ignored)
    notice = parse_spot(spot)
    if notice is not None:
        events.append(notice)
    recommendation = parse_rebalance(rebalance)
    if recommendation is not None:
        ignored.append(
            f"rebalance recommendation since {show_time(recommendation.not_before)}: not acted "
            "on (a risk, not a notice); the spot interruption notice is"
        )
    return Reading(tuple(events), tuple(ignored))


# ---------------------------------------------------------------------------------- decision


class Peer(NamedTuple):
    """Another node as the cluster shows it."""

    name: str
    online: bool
    standby: bool = False
    maintenance: bool = False
    health: Optional[str] = None  # its #health-aws
    claim: Optional[float] = None  # its aws-health-event: the NotBefore it wants red for
    safe: Optional[str] = None  # its value of safe_attribute


class Memory(NamedTuple):
    """What this node last published (kept in the state file)."""

    health: Optional[str] = None  # None: nothing published yet
    since: float = 0.0  # when health took its value
    read_at: Optional[float] = None  # the last positive read of the metadata service
    claim: Optional[float] = None
    claim_since: Optional[float] = None  # when the claim was first visible
    hold: Optional[str] = None


class Decision(NamedTuple):
    health: Optional[str]  # what #health-aws should be (None: leave it unset)
    claim: Optional[float]  # the claim to publish (None: delete it)
    hold: Optional[str]  # the hold reason to publish (None: delete it)
    why: str


class Settings(NamedTuple):
    lead_time: float
    hold_time: float
    settle: float
    safe_value: Optional[str] = None  # None: no user condition


def due(event: Event, now: float, lead_time: float) -> bool:
    if event.source == "spot":
        return True
    return now >= event.not_before - lead_time


def target_problem(peer: Peer, settings: Settings) -> Optional[str]:
    """Why ``peer`` cannot take this node's resources (None: it can)."""
    checks = (
        (not peer.online, "offline"),
        (peer.standby, "in standby"),
        (peer.maintenance, "in maintenance"),
        (peer.health != GREEN, f"#health-aws is {peer.health or 'unset'}"),
        (
            settings.safe_value is not None and peer.safe != settings.safe_value,
            f"the safe condition is {peer.safe or 'unset'}, not {settings.safe_value}",
        ),
    )
    return next((why for failed, why in checks if failed), None)


def decide(
    *,
    me: str,
    now: float,
    reading: Optional[Reading],
    memory: Memory,
    peers: tuple[Peer, ...],
    settings: Settings,
) -> Decision:
    """What this node publishes now. ``reading`` None: the metadata service could not be read."""
    if reading is None:
        age = f"{now - memory.read_at:.0f}s ago" if memory.read_at is not None else "never"
        return Decision(
            memory.health,
            memory.claim,
            memory.hold,
            f"instance metadata unreadable: keeping {memory.health or 'nothing'} (last read {age})",
        )
    due_now = sorted(
        (e for e in reading.events if due(e, now, settings.lead_time)), key=lambda e: e.not_before
    )
    if not due_now:
        if memory.health == RED and now - memory.since < settings.hold_time:
            left = settings.hold_time - (now - memory.since)
            return Decision(RED, memory.claim, None, f"no event due; red held {left:.0f}s more")
        later = [e.describe() for e in reading.events]
        why = "no active event due" + (f" (later: {', '.join(later)})" if later else "")
        return Decision(GREEN, None, None, why)
    return _event_due(due_now[0], me=me, now=now, memory=memory, peers=peers, settings=settings)


def _event_due(
    first: Event,
    *,
    me: str,
    now: float,
    memory: Memory,
    peers: tuple[Peer, ...],
    settings: Settings,
) -> Decision:
    claim = first.not_before
    if memory.health == RED:
        return Decision(RED, claim, None, f"red for {first.describe()}")
    online = [p for p in peers if p.online and p.name != me]
    red = sorted(p.name for p in online if p.health == RED)
    if red:
        return Decision(memory.health, claim, f"waiting-for-{red[0]}", f"{red[0]} is red already")
    mine = (claim, me)
    before = sorted(
        (p.claim, p.name) for p in online if p.claim is not None and (p.claim, p.name) < mine
    )
    if before:
        return Decision(
            memory.health,
            claim,
            f"after-{before[0][1]}",
            f"{before[0][1]} has an earlier claim ({show_time(before[0][0])})",
        )
    if memory.claim_since is None or now - memory.claim_since < settings.settle:
        return Decision(
            memory.health, claim, "settling", f"claim for {first.describe()} published, settling"
        )
    problems = {p.name: target_problem(p, settings) for p in online}
    targets = sorted(name for name, problem in problems.items() if problem is None)
    if not targets:
        detail = "; ".join(f"{name}: {problem}" for name, problem in sorted(problems.items()))
        return Decision(
            memory.health,
            claim,
            "no-safe-target",
            f"{first.describe()} is due but no node can take over ({detail or 'no other node'})",
        )
    return Decision(
        RED, claim, None, f"{first.describe()} is due; {', '.join(targets)} can take over"
    )


def conflict(me: str, claim: float, peers: tuple[Peer, ...]) -> Optional[str]:
    """After turning red: another red node whose claim comes before ours (we back off), or None."""
    mine = (claim, me)
    for peer in sorted(peers, key=lambda p: p.name):
        if peer.name == me or not peer.online or peer.health != RED:
            continue
        theirs = (peer.claim if peer.claim is not None else float("-inf"), peer.name)
        if theirs < mine:
            return peer.name
    return None
