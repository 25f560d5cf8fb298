"""aws-eni's attach/detach decision table: pure functions from what EC2 says about the ENI to the
next move, the plan of start (the one place that says which EC2 calls bring the ENI here, with
whose credentials: validate-all checks the same steps with DryRun), and the pacing of the waits.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:
    from ipfailover.aws.ec2 import Eni


# Waiting: poll quickly while a move is young, then spare the account's throttling bucket.
FAST_POLL = 0.1
MEDIUM_POLL = 0.2
SLOW_POLL = 0.5
RESEND_AFTER = 1.0  # seconds before a detach/attach that did not show up is sent again
FORCE_AFTER_SHARE = 0.4  # force a stuck detach after this share of the remaining budget...
FORCE_AFTER_MAX = 20.0  # ...but never later than this many seconds
DESCRIBE_ALLOWANCE = 0.3  # time kept for the describe call that follows a poll sleep


class Action(enum.Enum):
    DONE = "done"
    ATTACH = "attach"
    DETACH = "detach"
    FORCE_DETACH = "force-detach"
    WAIT = "wait"


@dataclass(frozen=True)
class Move:
    action: Action
    why: str  # what is going on, for the log and for the error when time runs out
    waiting_on: Optional[str] = None  # the other instance whose detach we are waiting for


@dataclass(frozen=True)
class Progress:
    """What this action did so far, in seconds of its deadline's clock (``Deadline.elapsed``)."""

    now: float
    held_since: Optional[float] = None  # start: first seen on another instance; stop: first detach
    detach_sent: Optional[float] = None  # our last normal detach request
    forced_at: Optional[float] = None  # our forced detach request
    attach_sent: Optional[float] = None  # our last attach request

    def waited(self, began: float) -> float:
        """Seconds since our last request (or ``began``): how long this phase has taken."""
        sent = [t for t in (self.detach_sent, self.forced_at, self.attach_sent) if t is not None]
        return self.now - max([began, *sent])


def holder(eni: Eni) -> Optional[str]:
    """The instance the ENI is attached, attaching or detaching to/from; None when available."""
    att = eni.attachment
    if att is None or att.status == "detached":
        return None
    return att.instance_id or "another owner"


def attached_here(eni: Eni, instance_id: str) -> bool:
    att = eni.attachment
    return att is not None and att.instance_id == instance_id and att.status == "attached"


@dataclass(frozen=True)
class Detach:
    """Detach the ENI from its holder: next_move sends it while the ENI is attached there, and
    forces it after the grace when ``may_force`` (force_detach)."""

    attachment_id: str
    holder: str
    may_force: bool
    operation: str = "DetachNetworkInterface"
    principal: str = "node"  # whose credentials make the call


@dataclass(frozen=True)
class Attach:
    eni_id: str
    instance_id: str
    device_index: int
    operation: str = "AttachNetworkInterface"
    principal: str = "node"


@dataclass(frozen=True)
class ConfigureOs:
    """The OS change once the ENI is here: the record, then link, addresses, rules and routes
    (what exactly follows from the ENI as attached; see os_plan). Check mode skips it."""

    policy_routing: bool


Step = Union[Detach, Attach, ConfigureOs]


def plan_start(
    eni: Eni, instance_id: str, device_index: int, force_detach: bool, policy_routing: bool
) -> tuple[Step, ...]:
    """What start does: the EC2 calls that bring ``eni`` here, in the order next_move sends them
    as EC2 shows progress (none when it is attached here already), then the OS change."""
    steps: list[Step] = []
    if not attached_here(eni, instance_id):
        if holder(eni) is not None and eni.attachment is not None:
            steps.append(Detach(eni.attachment.id, holder(eni) or "", force_detach))
        steps.append(Attach(eni.id, instance_id, device_index))
    steps.append(ConfigureOs(policy_routing))
    return tuple(steps)


def _since(progress: Progress, when: Optional[float]) -> Optional[float]:
    return None if when is None else progress.now - when


def next_move(  # noqa: PLR0911 - a decision table reads best as one
    eni: Eni, instance_id: str, progress: Progress, force_detach: bool, force_after: float
) -> Move:
    """The next step to bring ``eni`` to ``instance_id``."""
    who = holder(eni)
    att = eni.attachment
    if who is None or att is None:
        if eni.status not in ("available", ""):
            return Move(Action.WAIT, f"{eni.id} is {eni.status} without an attachment")
        sent = _since(progress, progress.attach_sent)
        if sent is not None and sent < RESEND_AFTER:
            return Move(Action.WAIT, f"{eni.id} is not attaching yet after the attach request")
        return Move(Action.ATTACH, f"{eni.id} is available")
    if who == instance_id:
        if att.status == "attached":
            return Move(Action.DONE, f"{eni.id} is attached to this instance")
        if att.status == "attaching":
            return Move(Action.WAIT, f"{eni.id} is still attaching to this instance")
        return Move(Action.WAIT, f"{eni.id} is still {att.status} from this instance")
    held = _since(progress, progress.held_since) or 0.0
    if (
        force_detach
        and progress.forced_at is None
        and att.status in ("attached", "detaching")
        and held >= force_after
    ):
        return Move(
            Action.FORCE_DETACH,
            f"{eni.id} is still {att.status} on {who} after {held:.1f}s: forcing the detach",
            who,
        )
    if att.status == "attached":
        sent = _since(progress, progress.detach_sent)
        if progress.forced_at is None and (sent is None or sent >= RESEND_AFTER):
            return Move(Action.DETACH, f"{eni.id} is attached to {who}", who)
        return Move(
            Action.WAIT, f"{eni.id} is still attached to {who} after the detach request", who
        )
    if att.status == "attaching":
        return Move(Action.WAIT, f"{eni.id} is attaching to {who}; it is detached once attached")
    return Move(Action.WAIT, f"{eni.id} is still {att.status} from {who}", who)


def next_release_move(
    eni: Eni, instance_id: str, progress: Progress, force_detach: bool, force_after: float
) -> Move:
    """The next step to get ``eni`` off ``instance_id`` (it may stay wherever else it is)."""
    att = eni.attachment
    if att is None or att.status == "detached" or att.instance_id != instance_id:
        return Move(Action.DONE, f"{eni.id} is not attached to this instance")
    since_first = _since(progress, progress.held_since)
    if (
        force_detach
        and progress.forced_at is None
        and att.status == "detaching"
        and since_first is not None
        and since_first >= force_after
    ):
        return Move(
            Action.FORCE_DETACH,
            f"{eni.id} is still detaching from this instance after {since_first:.1f}s: forcing",
        )
    if att.status in ("attached", "attaching"):
        since_last = _since(progress, progress.detach_sent)
        if progress.forced_at is None and (since_last is None or since_last >= RESEND_AFTER):
            return Move(Action.DETACH, f"{eni.id} is {att.status} to this instance")
        return Move(Action.WAIT, f"{eni.id} is still {att.status} after the detach request")
    return Move(Action.WAIT, f"{eni.id} is still {att.status} from this instance")


def stuck_reason(move: Move, progress: Progress, force_detach: bool) -> str:
    """The exit reason when the time runs out while ``move`` says we are waiting."""
    waited = ""
    if progress.held_since is not None:
        waited = f" for {progress.now - progress.held_since:.1f}s"
    reason = f"gave up waiting{waited}: {move.why}"
    if move.waiting_on is not None:
        if progress.forced_at is not None:
            reason += " even after a forced detach"
        elif force_detach:
            reason += "; the forced detach did not fit in the start timeout: raise the timeout"
        else:
            reason += (
                f"; {move.waiting_on} may be hung: fence or stop it, or set force_detach=true "
                "(see its caveats)"
            )
    return reason


def poll_interval(waited: float) -> float:
    """Seconds to the next ``DescribeNetworkInterfaces`` after waiting ``waited`` for a move."""
    if waited < 2.0:
        return FAST_POLL
    if waited < 10.0:
        return MEDIUM_POLL
    return SLOW_POLL


def force_after(remaining: float) -> float:
    """After how many seconds a stuck detach is forced (when force_detach allows it)."""
    return max(0.0, min(FORCE_AFTER_MAX, FORCE_AFTER_SHARE * remaining))
