"""The backstop of the deadline: SIGALRM in the main thread, and a last-resort thread.

Imported only when an action's handler runs: a syntax check needs neither signal nor threading.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from .errors import OCF
from .text import EXIT_REASON_PREFIX, one_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, Optional

    from .deadline import Deadline
    from .log import Log


class Watchdog:
    """A SIGALRM at the deadline raises the timed-out error in the main thread.

    It is the backstop for code that blocks without looking at the deadline. On exit it disarms,
    restores the previous handler and re-arms any timer that was pending before (pytest-timeout).

    A signal handler only runs between Python bytecodes: a main thread stuck in C (a DNS lookup
    that waits for an unreachable resolver, a blocking system call) would not see it until the
    call returns, possibly after Pacemaker's timeout. So, given ``hard_stop`` (the logger), a
    thread ends the process at half the deadline's margin past it, with the exit reason. It stays
    armed after the handler, until ``release()``: the result's records and exit reason are
    written after it, to a stderr that may block (the log itself never does).
    """

    def __init__(self, deadline: Deadline, doing: str, hard_stop: Optional[Log] = None) -> None:
        self._deadline = deadline
        self._doing = doing
        self._armed = False
        self._disarming = False
        self._old_handler: Any = signal.SIG_DFL
        self._old_timer = (0.0, 0.0)
        self._armed_at = 0.0
        self._hard_stop = hard_stop
        self._done = threading.Event()

    def _fire(self, signum: int, frame: Optional[FrameType]) -> None:
        if not self._disarming:
            raise self._deadline.timeout_error(self._doing)

    def _last_resort(self, log: Log) -> None:
        if self._done.wait(self._deadline.remaining() + self._deadline.margin / 2):
            return
        reason = (
            f"{self._deadline.timeout_error(self._doing).reason} (blocked in a system call, "
            "such as a DNS lookup; ended before the cluster's timeout)"
        )

        def say() -> None:
            log.error("%s", one_line(reason))
            os.write(2, f"{EXIT_REASON_PREFIX}{one_line(reason)}\n".encode("utf-8", "replace"))

        try:
            # stderr may block (a full pipe; the log itself does not): give it a moment only.
            writer = threading.Thread(target=say, daemon=True)
            writer.start()
            writer.join(0.2)
        finally:
            os._exit(int(OCF.ERR_GENERIC))

    def __enter__(self) -> Watchdog:
        if self._hard_stop is not None:
            threading.Thread(
                target=self._last_resort, args=(self._hard_stop,), name="deadline", daemon=True
            ).start()
        if not hasattr(signal, "setitimer") or threading.current_thread() is not (
            threading.main_thread()
        ):
            return self
        self._old_handler = signal.signal(signal.SIGALRM, self._fire)
        self._armed_at = time.monotonic()
        self._armed = True
        self._old_timer = signal.setitimer(
            signal.ITIMER_REAL, max(self._deadline.remaining(), 0.001)
        )
        return self

    def release(self) -> None:
        """End the last resort (``hard_stop``): the action has reported its result."""
        self._done.set()

    def __exit__(self, *exc_info: object) -> None:
        if self._hard_stop is None:
            self._done.set()
        if not self._armed:
            return
        self._disarming = True
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            old = self._old_handler
            signal.signal(signal.SIGALRM, signal.SIG_DFL if old is None else old)
            delay, interval = self._old_timer
            if delay > 0:
                left = delay - (time.monotonic() - self._armed_at)
                signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), interval)
            self._armed = False
