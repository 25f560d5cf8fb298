"""The agent: one declaration gives meta-data, parameter checks, logging and action dispatch.

Importing it costs next to nothing (no re, logging, typing, dataclasses, enum, signal or
threading): a syntax check must cost little more than starting Python. What only a running
handler needs (the watchdog) is imported when a handler runs.
"""

from __future__ import annotations

import os
import sys

from .deadline import MAX_BUDGET_MS, Deadline, process_age
from .errors import KNOWN_CODES, OCF, ConfigError, GenericError, OCFError, parse_bool
from .log import DEBUG, get_log
from .spec import check_text
from .text import EXIT_REASON_PREFIX, clean, hide_userinfo, one_line, redact, show

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Callable, NoReturn, Optional, TypeVar

    from .log import Log
    from .spec import ActionSpec, Parameter, ParamValue
    from .watchdog import Watchdog

    Handler = Callable[["Context"], int]
    C = TypeVar("C")
    ConfigParser = Callable[[Mapping[str, ParamValue]], object]

__all__ = ["Agent", "Context", "check_level", "lazy_handler"]

DEFAULT_TIMEOUT_S = 20
MAX_VALUE_LEN = 4096
SHIM_ACTIONS = ("meta-data", "usage", "help")
# What a stop handler never reports (errors.py): such an error of a stop becomes 1.
STOP_NEVER = frozenset({OCF.ERR_ARGS, OCF.ERR_INSTALLED, OCF.ERR_CONFIGURED, OCF.NOT_RUNNING})


class Context:
    """What a handler gets: the action, its parameters (and the agent's parsed ``config``, when
    the agent declares a parser), its deadline, its log and its OCF check level (0 when unset:
    a monitor operation's ``OCF_CHECK_LEVEL`` attribute, the ``depth`` of the meta-data's
    monitor actions)."""

    __slots__ = (
        "action",
        "agent",
        "check_level",
        "config",
        "deadline",
        "environ",
        "interval_ms",
        "is_probe",
        "log",
        "params",
        "resource",
    )

    def __init__(
        self,
        *,
        agent: str,
        action: str,
        params: dict[str, ParamValue],
        deadline: Deadline,
        log: Log,
        interval_ms: int,
        is_probe: bool,
        resource: str,
        environ: Mapping[str, str],
        config: object = None,
        check_level: int = 0,
    ) -> None:
        self.agent = agent
        self.action = action
        self.params = params
        self.config = config
        self.deadline = deadline
        self.log = log
        self.interval_ms = interval_ms
        self.is_probe = is_probe
        self.resource = resource
        self.environ = environ
        self.check_level = check_level

    def config_as(self, kind: type[C]) -> C:
        """The configuration the agent's parser made (see ``Agent``), checked to be a ``kind``."""
        if not isinstance(self.config, kind):
            raise TypeError(f"{self.agent} {self.action}: no {kind.__name__} was parsed")
        return self.config


def lazy_handler(module: str, function: str) -> Handler:
    """A handler that imports ``module`` only when it runs: an agent's declaration stays cheap
    to import, and what only the actions need (clients, plans) is loaded for them alone."""

    def handler(ctx: Context) -> int:
        from importlib import import_module

        result: int = getattr(import_module(module), function)(ctx)
        return result

    handler.__qualname__ = handler.__name__ = f"{module}.{function}"
    return handler


def _is_integer(text: str) -> bool:
    """``[+-]?[0-9]+``"""
    digits = text[1:] if text[:1] in ("+", "-") else text
    return digits.isascii() and digits.isdigit()


def check_level(env: Mapping[str, str]) -> Optional[int]:
    """OCF_CHECK_LEVEL as Pacemaker passes it (``crm_resource --validate=LEVEL``, or an
    operation's OCF_CHECK_LEVEL attribute), or None when unset or not a number."""
    raw = (
        env.get("OCF_CHECK_LEVEL", "").strip() or env.get("OCF_RESKEY_OCF_CHECK_LEVEL", "").strip()
    )
    return int(raw) if _is_integer(raw) and len(raw) <= 6 else None


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
        config: Optional[ConfigParser] = None,
    ) -> None:
        """``logger`` names the logger the shim configures (default: the agent's name); a
        library shared by several agents logs through one name and passes it here.

        ``config`` parses the parameters into the agent's configuration (``Context.config``)
        and raises ConfigError on bad values. It must be pure and quick (no client, no I/O): the
        shim runs it before any handler, so bad input fails the same way in every action, and
        validate-all with OCF_CHECK_LEVEL=0 runs it alone."""
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
        self.config = config

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
            return OCF.ERR_ARGS
        action = argv[1]
        if action == "meta-data":
            sys.stdout.write(self.metadata_xml())
            sys.stdout.flush()
            return OCF.SUCCESS
        if action in ("usage", "help"):
            sys.stdout.write(self.usage())
            sys.stdout.flush()
            return OCF.SUCCESS

        if environ is not None:
            return self._run(action, environ)
        # A real agent process (environment from the process) counts its budget from its own
        # creation and may end itself at the deadline; the watchdog's last resort, once armed,
        # stays so until the result has been reported.
        armed: list[Watchdog] = []
        try:
            return self._run(action, os.environ, armed, process_age())
        finally:
            for watchdog in armed:
                watchdog.release()

    def run(self, argv: Optional[Sequence[str]] = None) -> NoReturn:
        """The agent process's entry point: ``main()``, then the process ends at once with its
        exit code. The interpreter's usual teardown would first wait for every thread still
        running (a parallel EC2 change whose sibling failed, a call that outlived its action),
        without a bound: a stop reported after its timeout is a fenced node."""
        try:
            rc = self.main(argv)
        finally:
            from contextlib import suppress

            for stream in (sys.stdout, sys.stderr):
                with suppress(OSError, ValueError):  # a closed or broken pipe: nothing to say
                    stream.flush()
        os._exit(rc)

    def _run(
        self,
        action: str,
        env: Mapping[str, str],
        hard_stop: Optional[list[Watchdog]] = None,
        spent: float = 0.0,
    ) -> int:
        resource = one_line(env.get("OCF_RESOURCE_INSTANCE", ""), 128) or self.name
        tag = f"{self.name}({resource})[{os.getpid()}]"
        log = get_log(self.logger).configure(tag, env)

        handler = self.handlers.get(action)
        if handler is None:
            reason = f"action {show(action)} is not implemented by {self.name}"
            log.error("%s", one_line(reason))
            _exit_reason(reason)
            return OCF.ERR_UNIMPLEMENTED

        deadline = Deadline(self._budget(action, env), spent_s=spent)
        in_handler = False
        try:
            params = self.read_params(env)
            config = self.config(params) if self.config is not None else None
            if action == "validate-all" and self.config is not None and check_level(env) == 0:
                log.debug("validate-all at OCF_CHECK_LEVEL 0: the parameters are valid")
                return OCF.SUCCESS
            from .watchdog import Watchdog

            # Armed before the handler's first record: the log never blocks (log.py), and the
            # watchdog ends the action in time even if stderr, its last resort, does.
            watchdog = Watchdog(deadline, f"running {action}", None if hard_stop is None else log)
            if hard_stop is not None:
                hard_stop.append(watchdog)
            with watchdog:
                if log.enabled(DEBUG):
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
                    config=config,
                    deadline=deadline,
                    log=log,
                    interval_ms=interval_ms,
                    is_probe=action == "monitor" and interval_ms == 0,
                    resource=resource,
                    environ=env,
                    check_level=check_level(env) or 0,
                )
                in_handler = True
                rc = _checked(action, handler(ctx))
        except OCFError as err:
            log.error("%s", one_line(err.reason))
            _exit_reason(err.reason)
            # A problem of this node must not read as "wrong everywhere" or "not installed" from
            # a stop (errors.py: the exit-code rule); bad parameters keep their 6.
            node_local = action == "stop" and in_handler and err.rc in STOP_NEVER
            return OCF.ERR_GENERIC if node_local else int(err.rc)
        except Exception as err:
            reason = f"unexpected error: {type(err).__name__}: {err}"
            log.error("%s", one_line(reason))
            log.debug("traceback of the unexpected error", exc_info=True)
            _exit_reason(reason)
            return OCF.ERR_GENERIC

        log.debug("%s finished with %d after %.1fs", action, rc, deadline.elapsed())
        return rc

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

    def read_params(self, env: Mapping[str, str]) -> dict[str, ParamValue]:
        """The declared parameters from ``OCF_RESKEY_*`` of ``env``, checked and converted
        (defaults for the unset ones); ConfigError for a bad or missing one."""
        declared = {p.name for p in self.parameters}
        for key, raw in env.items():
            if key.startswith("OCF_RESKEY_"):
                name = key[len("OCF_RESKEY_") :]
                if name in declared or not name.startswith("CRM_meta_"):
                    _check_value(name, raw)
        params: dict[str, ParamValue] = {}
        # A required parameter may come under a deprecated name (``Parameter.replaces``): the
        # agent's parser, which maps the old names, then checks that it was given.
        stand_ins = {
            p.replaces
            for p in self.parameters
            if p.replaces and self.config is not None and env.get(f"OCF_RESKEY_{p.name}", "")
        }
        for p in self.parameters:
            raw = env.get(f"OCF_RESKEY_{p.name}", "")
            if raw == "":
                if p.required and p.name not in stand_ins:
                    raise ConfigError(f"parameter {p.name!r} is required")
                params[p.name] = p.default
            else:
                params[p.name] = _convert(p, raw)
        return params


def _checked(action: str, rc: object) -> int:
    """A handler's result, or GenericError when it is no OCF code or one a stop never reports."""
    if isinstance(rc, bool) or not isinstance(rc, int) or int(rc) not in KNOWN_CODES:
        raise GenericError(f"the {action} handler returned an invalid exit code {show(rc)}")
    if action == "stop" and int(rc) in STOP_NEVER:
        raise GenericError(f"the stop handler returned {int(rc)}, which a stop never reports")
    return int(rc)


def _check_value(name: str, raw: str) -> None:
    if len(raw) > MAX_VALUE_LEN:
        raise ConfigError(
            f"parameter {show(name)} is longer than {MAX_VALUE_LEN} characters ({len(raw)})"
        )
    if clean(raw) != raw:
        raise ConfigError(f"parameter {show(name)} contains a newline or control character")


def _convert(p: Parameter, raw: str) -> ParamValue:
    if p.type == "integer":
        text = raw.strip()
        if not _is_integer(text):
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
    """A number of milliseconds from the environment (``CRM_meta_timeout``, ``_interval``): 0
    when unset, not an integer, zero or negative (the action's default then applies), and at most
    ``MAX_BUDGET_MS``, the largest Pacemaker can pass (a C int): any number of digits is read
    without ``int()`` on a long text, which Python 3.11 refuses beyond 4300 digits."""
    text = (raw or "").strip()
    if not _is_integer(text) or text.startswith("-"):
        return 0
    digits = text.lstrip("+").lstrip("0")
    if len(digits) > len(str(MAX_BUDGET_MS)):
        return MAX_BUDGET_MS
    return min(int(digits or "0"), MAX_BUDGET_MS)


def _exit_reason(reason: str) -> None:
    """Write the exit reason Pacemaker shows; it must be the last line on stderr."""
    text = one_line(hide_userinfo(reason))  # a proxy's password, whoever wrote the reason
    sys.stderr.write(f"{EXIT_REASON_PREFIX}{text or 'unknown error'}\n")
    sys.stderr.flush()
