"""The time budget of one action."""

from __future__ import annotations

import os
import time

from .errors import GenericError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional


# The longest budget: Pacemaker hands an operation's timeout to the agent as a C int of
# milliseconds, so 2**31 - 1 ms (24.8 days) is the most it can ask for. Larger budgets are clamped
# to it, which also keeps every wait (setitimer, threading timeouts) far from an OverflowError.
MAX_BUDGET_MS = 2**31 - 1
MAX_BUDGET_S = MAX_BUDGET_MS / 1000


def process_age() -> float:
    """Seconds since this process was created (by the fork of pacemaker-execd, whose timer for
    the action starts then), or 0.0 where Linux's /proc cannot tell.

    On a starved CPU the interpreter's start and the imports before the first line of the action
    can take seconds; a budget counted from there would end after Pacemaker's timeout.
    """
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        started = int(fields[19]) / ticks  # starttime, field 22: ticks since boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


class Deadline:
    """The budget of an action minus a safety margin, so the agent fails before Pacemaker kills it.

    The default margin is 10 % of the budget, at least 0.5 s and at most 3 s (and never more than
    half the budget, so tiny budgets still leave some time). A budget beyond ``MAX_BUDGET_S``
    (infinity included) is clamped to it. ``spent_s`` is what the budget lost before the deadline
    was made (the agent process's age: ``process_age()``).
    """

    def __init__(
        self,
        budget_s: float,
        margin_s: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
        spent_s: float = 0.0,
    ) -> None:
        if not budget_s > 0:
            raise ValueError(f"budget must be positive, got {budget_s!r}")
        budget_s = min(budget_s, MAX_BUDGET_S)
        if margin_s is None:
            margin_s = min(max(0.5, 0.1 * budget_s), 3.0, budget_s / 2)
        if not 0 <= margin_s < budget_s:
            raise ValueError(f"margin must be in [0, {budget_s}), got {margin_s!r}")
        self._budget = float(budget_s)
        self._margin = float(margin_s)
        self._clock = clock
        self._start = clock() - max(0.0, spent_s)

    @property
    def total(self) -> float:
        """The whole budget in seconds (the action timeout)."""
        return self._budget

    @property
    def margin(self) -> float:
        return self._margin

    def elapsed(self) -> float:
        return self._clock() - self._start

    def remaining(self) -> float:
        """Seconds left before the budget minus the margin; never negative."""
        return max(0.0, self._budget - self._margin - self.elapsed())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def timeout_error(self, doing: str) -> GenericError:
        """The error raised when the deadline is hit while ``doing`` something."""
        return GenericError(
            f"timed out after {self.elapsed():.1f}s of the {self._budget:.0f}s action timeout"
            f" while {doing}"
        )

    def check(self, doing: str) -> None:
        if self.expired():
            raise self.timeout_error(doing)

    def allows(self, seconds: float) -> bool:
        """True when ``seconds`` more still fit before the deadline."""
        left = self.remaining()
        return left > 0.0 and max(0.0, seconds) <= left

    def sleep(
        self, seconds: float, doing: str, sleep: Callable[[float], object] = time.sleep
    ) -> None:
        """Sleep, or raise the timed-out error at once when the sleep would overrun the deadline."""
        self.check(doing)
        if not self.allows(seconds):
            raise self.timeout_error(doing)
        sleep(max(0.0, seconds))
