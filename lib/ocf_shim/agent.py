"""The agent: one declaration gives meta-data, parameter checks, logging and action dispatch."""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Callable, Optional, TextIO

from .deadline import Deadline
from .errors import OCF, ConfigError, OCFError, parse_bool
from .spec import ActionSpec, Parameter, ParamValue, check_text

__all__ = ["Agent", "Context", "Handler", "redact"]

DEFAULT_TIMEOUT_S = 20
MAX_VALUE_LEN = 4096
MAX_REASON_LEN = 512
EXIT_REASON_PREFIX = "ocf-exit-reason:"
SHIM_ACTIONS = ("meta-data", "usage", "help")
SECRET_WORDS = ("secret", "token", "password", "key")
SYSLOG_ADDRESS = "/dev/log"

# C0 and C1 controls (newline included), DEL, Unicode line separators and lone surrogates (what
# undecodable bytes in the environment turn into): none of them belongs in a parameter value.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_INTEGER = re.compile(r"[+-]?[0-9]+\Z")

_KNOWN_CODES = frozenset(int(c) for c in OCF)
# Handlers each main() call added, by logger name, so a second call replaces rather than adds.
_installed_handlers: dict[str, list[logging.Handler]] = {}


@dataclass
class Context:
    """What a handler gets."""

    agent: str
    action: str
    params: dict[str, ParamValue]
    deadline: Deadline
    log: logging.Logger
    interval_ms: int
    is_probe: bool
    resource: str
    environ: Mapping[str, str]


Handler = Callable[[Context], int]


def one_line(text: str, limit: int = MAX_REASON_LEN) -> str:
    """Make ``text`` safe as one log or exit-reason line: controls become spaces, length capped."""
    return _CONTROL.sub(" ", text).strip()[:limit]


def show(value: object, limit: int = 64) -> str:
    """A short, escaped rendering of an untrusted value for messages."""
    text = value if isinstance(value, str) else str(value)
    shown = repr(text[:limit])
    return shown + "..." if len(text) > limit else shown


def redact(name: str, value: object) -> str:
    """Render a parameter value for the log, hiding anything that may be a credential."""
    if value is None or value == "":
        return "<unset>"
    lowered = name.lower()
    if any(word in lowered for word in SECRET_WORDS):
        return "<redacted>"
    return show(value)


class Agent:
    """An OCF resource agent declared once: parameters, actions and their handlers."""

    def __init__(  # noqa: PLR0917 - the public API takes these positionally
        self,
        name: str,
        version: str,
        shortdesc: str,
        longdesc: str,
        parameters: Sequence[Parameter],
        actions: Sequence[ActionSpec],
        handlers: Mapping[str, Handler],
        logger: Optional[str] = None,
    ) -> None:
        """``logger`` names the logger the shim configures (default: the agent's name); a
        library shared by several agents logs through one name and passes it here."""
        check_text("agent name", name)
        if one_line(name) != name or " " in name:
            raise ValueError(f"invalid agent name {name!r}")
        check_text("agent version", version)
        check_text("agent shortdesc", shortdesc)
        check_text("agent longdesc", longdesc)
        if not parameters:
            raise ValueError("the OCF 1.1 schema needs at least one parameter")
        if not actions:
            raise ValueError("the OCF 1.1 schema needs at least one action")
        names = [p.name for p in parameters]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate parameters: {duplicates}")
        for shim_action in SHIM_ACTIONS:
            if shim_action in handlers:
                raise ValueError(f"{shim_action!r} is handled by the shim, not by a handler")
        for spec in actions:
            if spec.name not in handlers and spec.name not in SHIM_ACTIONS:
                raise ValueError(f"action {spec.name!r} is advertised but has no handler")
        self.name = name
        self.version = version
        self.shortdesc = shortdesc
        self.longdesc = longdesc
        self.parameters: tuple[Parameter, ...] = tuple(parameters)
        self.actions: tuple[ActionSpec, ...] = tuple(actions)
        self.handlers: dict[str, Handler] = dict(handlers)
        self.logger = logger or name

    # -- meta-data and usage -------------------------------------------------------------------

    def metadata_xml(self) -> str:
        from .metadata import render

        return render(
            name=self.name,
            version=self.version,
            shortdesc=self.shortdesc,
            longdesc=self.longdesc,
            parameters=self.parameters,
            actions=self.actions,
        )

    def usage(self) -> str:
        actions = [*self.handlers, "meta-data", "usage"]
        return f"usage: {self.name} {{{'|'.join(actions)}}}\n"

    # -- main ----------------------------------------------------------------------------------

    def main(
        self, argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None
    ) -> int:
        """Run the action named by ``argv[1]`` and return the OCF exit code."""
        if argv is None:
            argv = sys.argv
        if len(argv) < 2:
            sys.stderr.write(self.usage())
            _exit_reason("no action given")
            return int(OCF.ERR_ARGS)
        action = argv[1]
        if action == "meta-data":
            sys.stdout.write(self.metadata_xml())
            sys.stdout.flush()
            return int(OCF.SUCCESS)
        if action in ("usage", "help"):
            sys.stdout.write(self.usage())
            sys.stdout.flush()
            return int(OCF.SUCCESS)

        env: Mapping[str, str] = os.environ if environ is None else environ
        # A real agent process (environment from the process) may end itself at the deadline.
        return self._run(action, env, hard_stop=environ is None)

    def _run(self, action: str, env: Mapping[str, str], hard_stop: bool = False) -> int:
        resource = one_line(env.get("OCF_RESOURCE_INSTANCE", ""), 128) or self.name
        log = _setup_logging(self.name, resource, env, self.logger)

        handler = self.handlers.get(action)
        if handler is None:
            reason = f"action {show(action)} is not implemented by {self.name}"
            log.error("%s", one_line(reason))
            _exit_reason(reason)
            return int(OCF.ERR_UNIMPLEMENTED)

        deadline = Deadline(self._budget(action, env))
        try:
            with _Watchdog(deadline, f"running {action}", log if hard_stop else None):
                params = self._read_params(env)
                log.debug(
                    "%s starting (timeout %.0fs): %s",
                    action,
                    deadline.total,
                    ", ".join(f"{n}={redact(n, v)}" for n, v in params.items()) or "-",
                )
                interval_ms = _int_or_zero(env.get("OCF_RESKEY_CRM_meta_interval"))
                ctx = Context(
                    agent=self.name,
                    action=action,
                    params=params,
                    deadline=deadline,
                    log=log,
                    interval_ms=interval_ms,
                    is_probe=action == "monitor" and interval_ms == 0,
                    resource=resource,
                    environ=env,
                )
                rc = handler(ctx)
        except OCFError as err:
            log.error("%s", one_line(err.reason))
            _exit_reason(err.reason)
            return int(err.rc)
        except Exception as err:
            reason = f"unexpected error: {type(err).__name__}: {err}"
            log.error("%s", one_line(reason))
            log.debug("traceback of the unexpected error", exc_info=True)
            _exit_reason(reason)
            return int(OCF.ERR_GENERIC)

        if isinstance(rc, bool) or not isinstance(rc, int) or int(rc) not in _KNOWN_CODES:
            reason = f"the {action} handler returned an invalid exit code {show(rc)}"
            log.error("%s", reason)
            _exit_reason(reason)
            return int(OCF.ERR_GENERIC)
        log.debug("%s finished with %d after %.1fs", action, int(rc), deadline.elapsed())
        return int(rc)

    # -- helpers -------------------------------------------------------------------------------

    def _budget(self, action: str, env: Mapping[str, str]) -> float:
        timeout_ms = _int_or_zero(env.get("OCF_RESKEY_CRM_meta_timeout"))
        if timeout_ms > 0:
            return timeout_ms / 1000.0
        specs = [a for a in self.actions if a.name == action]
        if not specs:
            return float(DEFAULT_TIMEOUT_S)
        interval_ms = _int_or_zero(env.get("OCF_RESKEY_CRM_meta_interval"))
        for spec in specs:
            if (spec.interval or 0) * 1000 == interval_ms:
                return float(spec.timeout)
        return float(specs[0].timeout)

    def _read_params(self, env: Mapping[str, str]) -> dict[str, ParamValue]:
        declared = {p.name for p in self.parameters}
        for key, raw in env.items():
            if key.startswith("OCF_RESKEY_"):
                name = key[len("OCF_RESKEY_") :]
                if name in declared or not name.startswith("CRM_meta_"):
                    _check_value(name, raw)
        params: dict[str, ParamValue] = {}
        for p in self.parameters:
            raw = env.get(f"OCF_RESKEY_{p.name}", "")
            if raw == "":
                if p.required:
                    raise ConfigError(f"parameter {p.name!r} is required")
                params[p.name] = p.default
            else:
                params[p.name] = _convert(p, raw)
        return params


def _check_value(name: str, raw: str) -> None:
    if len(raw) > MAX_VALUE_LEN:
        raise ConfigError(
            f"parameter {show(name)} is longer than {MAX_VALUE_LEN} characters ({len(raw)})"
        )
    if _CONTROL.search(raw):
        raise ConfigError(f"parameter {show(name)} contains a newline or control character")


def _convert(p: Parameter, raw: str) -> ParamValue:
    if p.type == "integer":
        text = raw.strip()
        if not _INTEGER.match(text):
            raise ConfigError(f"parameter {p.name!r} must be an integer, got {redact(p.name, raw)}")
        return int(text)
    if p.type == "boolean":
        try:
            return parse_bool(raw)
        except ValueError:
            raise ConfigError(
                f"parameter {p.name!r} must be a boolean (true/false, yes/no, on/off, 1/0),"
                f" got {redact(p.name, raw)}"
            ) from None
    return raw


def _int_or_zero(raw: Optional[str]) -> int:
    """An integer environment value, or 0 when unset, invalid or negative."""
    if raw is None:
        return 0
    text = raw.strip()
    if len(text) > 18 or not _INTEGER.match(text):
        return 0
    return max(0, int(text))


def _exit_reason(reason: str) -> None:
    """Write the exit reason Pacemaker shows; it must be the last line on stderr."""
    sys.stderr.write(f"{EXIT_REASON_PREFIX}{one_line(reason) or 'unknown error'}\n")
    sys.stderr.flush()


class _Watchdog:
    """A SIGALRM at the deadline raises the timed-out error in the main thread.

    It is the backstop for code that blocks without looking at the deadline. On exit it disarms,
    restores the previous handler and re-arms any timer that was pending before (pytest-timeout).

    A signal handler only runs between Python bytecodes: a main thread stuck in C (a DNS lookup
    that waits for an unreachable resolver, a blocking system call) would not see it until the
    call returns, possibly after Pacemaker's timeout. So, given ``hard_stop`` (the logger), a
    thread ends the process at half the deadline's margin past it, with the exit reason.
    """

    def __init__(
        self, deadline: Deadline, doing: str, hard_stop: Optional[logging.Logger] = None
    ) -> None:
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

    def _last_resort(self, log: logging.Logger) -> None:
        if self._done.wait(self._deadline.remaining() + self._deadline.margin / 2):
            return
        reason = (
            f"{self._deadline.timeout_error(self._doing).reason} (blocked in a system call, "
            "such as a DNS lookup; ended before the cluster's timeout)"
        )
        try:
            # Logging may wait for a lock the stuck thread holds: give it a moment only.
            writer = threading.Thread(target=log.error, args=("%s", one_line(reason)), daemon=True)
            writer.start()
            writer.join(0.2)
            os.write(2, f"{EXIT_REASON_PREFIX}{one_line(reason)}\n".encode("utf-8", "replace"))
        finally:
            os._exit(int(OCF.ERR_GENERIC))

    def __enter__(self) -> _Watchdog:
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

    def __exit__(self, *exc_info: object) -> None:
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


def _setup_logging(agent: str, resource: str, env: Mapping[str, str], name: str) -> logging.Logger:
    """Configure the logger ``name`` from HA_LOGFACILITY, HA_LOGFILE and HA_debug."""
    log = logging.getLogger(name)
    for old in _installed_handlers.pop(name, []):
        log.removeHandler(old)
        old.close()
    log.propagate = False
    log.setLevel(logging.DEBUG if _debug_level(env.get("HA_debug")) > 0 else logging.INFO)

    tag = f"{agent}({resource})[{os.getpid()}]".replace("%", "%%")
    plain = logging.Formatter(f"{tag}: %(levelname)s: %(message)s")
    stamped = logging.Formatter(f"%(asctime)s {tag}: %(levelname)s: %(message)s")
    handlers: list[logging.Handler] = []

    facility = env.get("HA_LOGFACILITY", "").strip().lower()
    if facility and facility != "none":
        syslog = _syslog_handler(facility)
        if syslog is not None:
            syslog.setFormatter(plain)
            handlers.append(syslog)
    logfile = env.get("HA_LOGFILE", "")
    if logfile:
        try:
            filehandler = logging.FileHandler(logfile, mode="a", encoding="utf-8")
        except OSError:
            pass
        else:
            filehandler.setFormatter(stamped)
            handlers.append(filehandler)
    if not handlers:
        stream: TextIO = sys.stderr
        stderr = logging.StreamHandler(stream)
        stderr.setFormatter(stamped)
        handlers.append(stderr)

    for h in handlers:
        log.addHandler(h)
    _installed_handlers[name] = handlers
    return log


def _syslog_handler(facility: str) -> Optional[logging.Handler]:
    if not os.path.exists(SYSLOG_ADDRESS):
        return None
    import logging.handlers

    code = logging.handlers.SysLogHandler.facility_names.get(
        facility, logging.handlers.SysLogHandler.LOG_DAEMON
    )
    try:
        return logging.handlers.SysLogHandler(address=SYSLOG_ADDRESS, facility=code)
    except OSError:
        return None


def _debug_level(raw: Optional[str]) -> float:
    """HA_debug is a number; anything else means 0."""
    try:
        return float(raw) if raw is not None else 0.0
    except ValueError:
        return 0.0
