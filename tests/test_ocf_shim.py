"""Tests of the OCF protocol shim: exit codes, exit reasons, parameters, deadline, logging.

The same throwaway sample agent runs in-process (``Agent.main`` with explicit argv and environ)
and as a real subprocess under the venv interpreter and Debian's /usr/bin/python3.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import ocf_shim
from ocf_shim import (
    OCF,
    ActionSpec,
    Agent,
    ArgsError,
    ConfigError,
    Deadline,
    GenericError,
    NotInstalledError,
    OCFError,
    Parameter,
    PermError,
    UnimplementedError,
    parse_bool,
    redact,
)

REPO = Path(__file__).resolve().parent.parent
LIB = REPO / "lib"
PREFIX = "ocf-exit-reason:"
SECRET = "s3cr3t-T0ken-value"

SAMPLE_AGENT_SOURCE = '''\
"""Throwaway sample agent for the ocf_shim tests."""

from __future__ import annotations

import json
import sys
import threading
import time

import ocf_shim
from ocf_shim import OCF, ActionSpec, Agent, Parameter

SEEN = []


def act(ctx):
    SEEN.append(ctx)
    mode = ctx.params["mode"]
    ctx.log.info("%s in mode %s", ctx.action, mode)
    if mode == "echo":
        data = {"params": ctx.params, "probe": ctx.is_probe, "total": ctx.deadline.total}
        print(json.dumps(data))
        return OCF.SUCCESS
    if mode == "probe":
        return OCF.NOT_RUNNING if ctx.is_probe else OCF.SUCCESS
    if mode == "notrunning":
        return OCF.NOT_RUNNING
    if mode == "degraded":
        return 190
    if mode == "badrc":
        return 42
    if mode == "crash":
        raise RuntimeError("boom\\nsecond line")
    if mode == "sleep":
        while True:
            time.sleep(10)
    if mode == "exit":
        raise SystemExit(5)
    if mode == "linger":
        # A thread that outlives its action (a parallel change whose sibling failed).
        threading.Thread(target=time.sleep, args=(60,)).start()
        return OCF.SUCCESS
    if mode.startswith("raise:"):
        raise getattr(ocf_shim, mode[len("raise:"):])("raised\\non purpose")
    return OCF.SUCCESS


AGENT = Agent(
    "sample-agent",
    "0.1",
    "A sample agent",
    "A sample agent for the shim tests.",
    [
        Parameter("mode", "Behaviour", "What the handler does.", default="ok"),
        Parameter("ip", "Address", "The address.", required=True, unique=True),
        Parameter("count", "Count", "A number.", type="integer", default=3),
        Parameter("flag", "Flag", "A switch.", type="boolean", default=True),
        Parameter("api_token", "Token", "A credential.", default=None),
        Parameter("label", "Label", "Free text.", default="x"),
    ],
    [
        ActionSpec("start", 30),
        ActionSpec("stop", 40),
        ActionSpec("monitor", 25, interval=10),
        ActionSpec("validate-all", 15),
        ActionSpec("meta-data", 5),
    ],
    {"start": act, "stop": act, "monitor": act, "validate-all": act},
)

if __name__ == "__main__":
    AGENT.run()
'''

HANDLED = ("start", "stop", "monitor", "validate-all")


# -- fixtures and helpers -------------------------------------------------------------------------


class Runner:
    """The sample agent loaded in-process, run with explicit argv and environ."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        module = types.ModuleType("sample_agent")
        code = compile(SAMPLE_AGENT_SOURCE, "sample_agent.py", "exec")
        exec(code, module.__dict__)  # noqa: S102 - our own constant source
        self.agent: Agent = module.AGENT
        self.seen: list[ocf_shim.Context] = module.SEEN
        self.capsys = capsys

    def __call__(self, argv: list[str], environ: dict[str, str]) -> tuple[int, str, str]:
        rc = self.agent.main(argv, environ)
        out, err = self.capsys.readouterr()
        return rc, out, err


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Runner:
    return Runner(capsys)


def parse_xml(text: str) -> ET.Element:
    """Parse the meta-data we generated ourselves (trusted), skipping the prologue lines."""
    body = text.split("\n", 2)[2]
    return ET.fromstring(body)  # noqa: S314


@pytest.fixture
def agent_script(tmp_path: Path) -> Path:
    script = tmp_path / "sample-agent"
    script.write_text(SAMPLE_AGENT_SOURCE)
    return script


def env(**params: str) -> dict[str, str]:
    """An environment with OCF_RESKEY_ parameters; ip is set unless given."""
    out = {"OCF_ROOT": "/usr/lib/ocf"}
    params.setdefault("ip", "192.0.2.10")
    for name, value in params.items():
        out[f"OCF_RESKEY_{name}"] = value
    return out


def reasons(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(PREFIX)]


def assert_one_reason(stderr: str) -> str:
    """Exactly one exit reason, on the last line, single-line; return its text."""
    lines = stderr.splitlines()
    assert lines, "nothing on stderr"
    assert len(reasons(stderr)) == 1, stderr
    assert lines[-1].startswith(PREFIX), stderr
    return lines[-1][len(PREFIX) :]


# -- constants and errors -------------------------------------------------------------------------


def test_ocf_codes() -> None:
    codes = {name: code for name, code in vars(OCF).items() if name.isupper()}
    assert set(codes.values()) == ocf_shim.errors.KNOWN_CODES
    assert codes == {
        "SUCCESS": 0,
        "ERR_GENERIC": 1,
        "ERR_ARGS": 2,
        "ERR_UNIMPLEMENTED": 3,
        "ERR_PERM": 4,
        "ERR_INSTALLED": 5,
        "ERR_CONFIGURED": 6,
        "NOT_RUNNING": 7,
        "RUNNING_PROMOTED": 8,
        "FAILED_PROMOTED": 9,
        "DEGRADED": 190,
        "DEGRADED_PROMOTED": 191,
    }


@pytest.mark.parametrize(
    ("cls", "rc"),
    [
        (OCFError, 1),
        (GenericError, 1),
        (ArgsError, 2),
        (UnimplementedError, 3),
        (PermError, 4),
        (NotInstalledError, 5),
        (ConfigError, 6),
    ],
)
def test_error_classes_carry_their_code(cls: type[OCFError], rc: int) -> None:
    err = cls("why")
    assert err.rc == rc
    assert type(err.rc) is int
    assert err.reason == "why"
    assert str(err) == "why"
    assert isinstance(err, OCFError)
    assert cls("why", OCF.ERR_PERM).rc == OCF.ERR_PERM


def test_public_api_names() -> None:
    names = ["OCF", "OCFError", "GenericError", "ArgsError", "UnimplementedError", "PermError",
             "NotInstalledError", "ConfigError", "Parameter", "ActionSpec", "Agent", "Context",
             "Deadline", "parse_bool", "redact"]  # fmt: skip
    for name in names:
        assert hasattr(ocf_shim, name), name


# -- parse_bool and redact ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("on", True),
        ("On", True),
        ("yes", True),
        ("YES", True),
        ("y", True),
        ("Y", True),
        ("1", True),
        (" true ", True),
        ("\tyes\n", True),
        ("false", False),
        ("FALSE", False),
        ("off", False),
        ("OFF", False),
        ("no", False),
        ("No", False),
        ("n", False),
        ("N", False),
        ("0", False),
        (" 0 ", False),
    ],
)
def test_parse_bool_accepts(text: str, expected: bool) -> None:
    assert parse_bool(text) is expected


@pytest.mark.parametrize(
    "text", ["", " ", "2", "-1", "01", "tru", "yess", "enabled", "t", "f", "nope", "1.0", "o"]
)
def test_parse_bool_rejects(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_bool(text)


@pytest.mark.parametrize(
    "name",
    ["api_token", "secret_access_key", "Password", "aws_key", "SESSION_TOKEN", "client_secret"],
)
def test_redact_hides_credentials(name: str) -> None:
    assert SECRET not in redact(name, SECRET)
    assert redact(name, SECRET) == "<redacted>"


@pytest.mark.parametrize(
    "value",
    [
        f"http://user:{SECRET}@proxy.example:3128",
        f"https://{SECRET}@proxy.example",
        f"http://user:{SECRET}@[2001:db8::1]:3128/path",
        f"  http://u:{SECRET}@h:1?x#y",
        f"socks5h://u:{SECRET}@h",
    ],
)
def test_redact_hides_the_password_of_a_url(value: str) -> None:
    shown = redact("proxy", value)
    assert SECRET not in shown
    assert "***@" in shown


def test_redact_shows_other_values_escaped() -> None:
    assert redact("ip", "192.0.2.1") == "'192.0.2.1'"
    assert "\n" not in redact("label", "a\nb")
    assert len(redact("label", "x" * 10_000)) < 100
    assert redact("count", 3) == "'3'"
    assert redact("api_token", None) == "<unset>"


# -- Deadline (injected clock and sleep; never a real sleep) --------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("budget", "margin"),
    [(20.0, 2.0), (100.0, 3.0), (3600.0, 3.0), (2.0, 0.5), (1.5, 0.5), (6.0, 0.6), (0.6, 0.3)],
)
def test_deadline_default_margin(budget: float, margin: float) -> None:
    clock = FakeClock()
    d = Deadline(budget, clock=clock)
    assert d.total == budget
    assert d.remaining() == pytest.approx(budget - margin)


def test_deadline_counts_down() -> None:
    clock = FakeClock()
    d = Deadline(20, margin_s=2, clock=clock)
    assert d.elapsed() == 0
    assert not d.expired()
    clock.now += 5
    assert d.elapsed() == 5
    assert d.remaining() == 13
    assert d.allows(13)
    assert not d.allows(13.01)
    d.check("waiting")  # no error
    clock.now += 13
    assert d.remaining() == 0
    assert d.expired()
    assert not d.allows(0)
    clock.now += 100
    assert d.remaining() == 0


def test_deadline_counts_what_was_spent_before_it() -> None:
    clock = FakeClock()
    d = Deadline(20, margin_s=2, clock=clock, spent_s=4)
    assert d.elapsed() == 4
    assert d.remaining() == 14
    clock.now += 14
    assert d.expired()
    assert Deadline(20, margin_s=2, clock=clock, spent_s=-1).elapsed() == 0


def python_output(code: str) -> str:
    """What a fresh interpreter with only the shim's library on its path prints for ``code``."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(LIB)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_process_age_counts_from_the_process_creation() -> None:
    code = (
        "import time; time.sleep(1.0)\n"
        "from ocf_shim.deadline import process_age\n"
        "print(process_age())\n"
    )
    started = time.monotonic()
    out = python_output(code)
    took = time.monotonic() - started
    assert 1.0 <= float(out) <= took + 0.05


def test_deadline_check_raises_generic_timeout() -> None:
    clock = FakeClock()
    d = Deadline(20, margin_s=2, clock=clock)
    clock.now += 18.25
    with pytest.raises(GenericError) as info:
        d.check("waiting for the ENI to attach")
    assert info.value.rc == OCF.ERR_GENERIC
    assert info.value.reason == (
        "timed out after 18.2s of the 20s action timeout while waiting for the ENI to attach"
    )


def test_deadline_sleep_uses_injected_sleep() -> None:
    clock = FakeClock()
    d = Deadline(20, margin_s=2, clock=clock)
    d.sleep(4, "polling", sleep=clock.sleep)
    d.sleep(14, "polling", sleep=clock.sleep)
    assert clock.sleeps == [4, 14]
    assert d.expired()


def test_deadline_sleep_that_would_overrun_raises_without_sleeping() -> None:
    clock = FakeClock()
    d = Deadline(20, margin_s=2, clock=clock)
    clock.now += 10
    with pytest.raises(GenericError, match="timed out"):
        d.sleep(8.5, "polling", sleep=clock.sleep)
    assert clock.sleeps == []


def test_deadline_sleep_after_expiry_raises() -> None:
    clock = FakeClock()
    d = Deadline(10, clock=clock)
    clock.now += 9.5
    with pytest.raises(GenericError, match="timed out"):
        d.sleep(0, "polling", sleep=clock.sleep)
    assert clock.sleeps == []


@pytest.mark.parametrize(("budget", "margin"), [(0, None), (-1, None), (10, -1), (10, 10)])
def test_deadline_rejects_nonsense(budget: float, margin: float | None) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        Deadline(budget, margin_s=margin, clock=FakeClock())


# -- declarations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"type": "float"},
        {"type": "select"},
        {"type": "integer", "default": "3"},
        {"type": "integer", "default": True},
        {"type": "boolean", "default": "true"},
        {"type": "string", "default": 3},
        {"required": True, "default": "x"},
        {"name": "bad-name"},
        {"name": "CRM_meta_timeout"},
        {"shortdesc": ""},
        {"longdesc": "bell\x07"},
    ],
)
def test_parameter_rejects_bad_declarations(kwargs: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"name": "p", "shortdesc": "s", "longdesc": "l", **kwargs}
    with pytest.raises(ValueError):  # noqa: PT011
        Parameter(**fields)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "reload-agent"},
        {"name": "frobnicate"},
        {"timeout": 0},
        {"timeout": 1.5},
        {"interval": -1},
        {"depth": -1},
    ],
)
def test_action_spec_rejects_bad_declarations(kwargs: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"name": "start", "timeout": 20, **kwargs}
    with pytest.raises(ValueError):  # noqa: PT011
        ActionSpec(**fields)


def _ok(_ctx: ocf_shim.Context) -> int:
    return 0


@pytest.mark.parametrize(
    ("params", "actions", "handlers"),
    [
        ([], [ActionSpec("start", 20)], {"start": _ok}),
        ([Parameter("a", "s", "l")], [], {"start": _ok}),
        ([Parameter("a", "s", "l")], [ActionSpec("reload", 20)], {"start": _ok}),
        ([Parameter("a", "s", "l")], [ActionSpec("start", 20)], {"meta-data": _ok}),
        ([Parameter("a", "s", "l"), Parameter("a", "s", "l")], [ActionSpec("start", 20)], {}),
    ],
)
def test_agent_rejects_bad_declarations(
    params: list[Parameter], actions: list[ActionSpec], handlers: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        Agent("a", "1", "s", "l", params, actions, handlers)


# -- in-process: the shim's own actions -----------------------------------------------------------


def test_meta_data_needs_no_parameters(run: Runner) -> None:
    rc, out, err = run(["agent", "meta-data"], {})
    assert rc == 0
    assert err == ""
    root = parse_xml(out)
    assert root.tag == "resource-agent"
    assert root.get("name") == "sample-agent"
    assert run.seen == []


def test_meta_data_ignores_a_hostile_environment(run: Runner, tmp_path: Path) -> None:
    environ = {
        "OCF_RESKEY_count": "x\ny",
        "OCF_RESKEY_ip": "",
        "HA_LOGFILE": str(tmp_path / "log"),
        "OCF_RESKEY_CRM_meta_timeout": "1",
    }
    rc, out, err = run(["agent", "meta-data"], environ)
    assert rc == 0
    assert err == ""
    assert out.startswith('<?xml version="1.0"?>\n<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">')
    assert not (tmp_path / "log").exists()


def test_meta_data_advertises_only_declared_actions(run: Runner) -> None:
    _, out, _ = run(["agent", "meta-data"], {})
    root = parse_xml(out)
    names = [a.get("name") for a in root.iter("action")]
    assert names == ["start", "stop", "monitor", "validate-all", "meta-data"]
    assert not {"reload", "reload-agent", "migrate_to", "migrate_from"} & set(names)


@pytest.mark.parametrize("action", ["usage", "help"])
def test_usage(run: Runner, action: str) -> None:
    rc, out, err = run(["agent", action], {})
    assert rc == 0
    assert err == ""
    for name in (*HANDLED, "meta-data"):
        assert name in out


def test_no_action_is_an_args_error(run: Runner) -> None:
    rc, out, err = run(["agent"], env())
    assert rc == 2
    assert out == ""
    assert "start" in err
    assert_one_reason(err)


@pytest.mark.parametrize(
    "action", ["promote", "reload", "migrate_to", "notify", "status", "START", "", "x\ny;rm -rf /"]
)
def test_unknown_action_is_exactly_3(run: Runner, action: str) -> None:
    rc, out, err = run(["agent", action], env())
    assert rc == 3
    assert out == ""
    assert_one_reason(err)
    assert run.seen == []


def test_unknown_action_needs_no_parameters(run: Runner) -> None:
    rc, _, err = run(["agent", "promote"], {})
    assert rc == 3
    assert_one_reason(err)


# -- in-process: parameters -----------------------------------------------------------------------


def test_parameters_are_typed_with_defaults(run: Runner) -> None:
    rc, _, _ = run(["agent", "start"], env())
    assert rc == 0
    (ctx,) = run.seen
    assert ctx.params == {
        "mode": "ok",
        "ip": "192.0.2.10",
        "count": 3,
        "flag": True,
        "api_token": None,
        "label": "x",
    }
    assert ctx.agent == "sample-agent"
    assert ctx.action == "start"


def test_parameters_are_parsed(run: Runner) -> None:
    environ = env(count=" -12 ", flag="Off", api_token=SECRET, label=" spaced ;rm -rf / ")
    environ["OCF_RESKEY_CRM_meta_on_node"] = "node1"
    rc, _, _ = run(["agent", "stop"], environ)
    assert rc == 0
    (ctx,) = run.seen
    assert ctx.params["count"] == -12
    assert ctx.params["flag"] is False
    assert ctx.params["api_token"] == SECRET
    # A string is passed on verbatim: the shim never hands it to a shell.
    assert ctx.params["label"] == " spaced ;rm -rf / "


def test_empty_string_counts_as_unset(run: Runner) -> None:
    rc, _, _ = run(["agent", "start"], env(count="", flag="", mode=""))
    assert rc == 0
    (ctx,) = run.seen
    assert ctx.params["count"] == 3
    assert ctx.params["flag"] is True
    assert ctx.params["mode"] == "ok"


@pytest.mark.parametrize("action", HANDLED)
@pytest.mark.parametrize("ip", [None, ""])
def test_missing_required_parameter_is_6(run: Runner, action: str, ip: str | None) -> None:
    environ = env()
    if ip is None:
        del environ["OCF_RESKEY_ip"]
    else:
        environ["OCF_RESKEY_ip"] = ip
    rc, out, err = run(["agent", action], environ)
    assert rc == 6
    assert out == ""
    assert "'ip'" in assert_one_reason(err)
    assert run.seen == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("count", "three"),
        ("count", "1.5"),
        ("count", "0x10"),
        ("count", "1_000"),
        ("count", "٣"),
        ("count", ";rm -rf /"),
        ("count", "3; rm -rf /"),
        ("count", "$(reboot)"),
        ("flag", "maybe"),
        ("flag", "2"),
        ("flag", ";rm -rf /"),
        ("flag", "yes;rm -rf /"),
    ],
)
def test_bad_typed_value_is_6(run: Runner, name: str, value: str) -> None:
    rc, out, err = run(["agent", "start"], env(**{name: value}))
    assert rc == 6
    assert out == ""
    reason = assert_one_reason(err)
    assert repr(name) in reason
    assert "Traceback" not in err
    assert run.seen == []


@pytest.mark.parametrize(
    "value",
    [
        "a\nb",
        "192.0.2.1\nocf-exit-reason:all good",
        "a\rb",
        "nul\x00byte",
        "esc\x1b[31m",
        "tab\there",
        "del\x7f",
        "c1\x85",
        "ls\u2028sep",
        "undecodable\udcff",
        "x" * 4097,
        "y" * 10_240,
    ],
)
@pytest.mark.parametrize("name", ["ip", "label", "count", "unknown_param"])
def test_hostile_value_is_6(run: Runner, name: str, value: str) -> None:
    rc, out, err = run(["agent", "monitor"], env(**{name: value}))
    assert rc == 6
    assert out == ""
    reason = assert_one_reason(err)
    assert name in reason
    assert len(reason) <= 512
    assert "Traceback" not in err
    assert run.seen == []


def test_longest_allowed_value(run: Runner) -> None:
    rc, _, _ = run(["agent", "start"], env(label="é" * 4096))
    assert rc == 0
    assert run.seen[0].params["label"] == "é" * 4096


def test_crm_meta_values_are_not_parameters(run: Runner) -> None:
    environ = env()
    environ["OCF_RESKEY_CRM_meta_notify_active_uname"] = "n" * 5000
    rc, _, _ = run(["agent", "start"], environ)
    assert rc == 0


def test_hostile_resource_name(run: Runner) -> None:
    environ = env(mode="raise:GenericError")
    environ["OCF_RESOURCE_INSTANCE"] = "res\n%(x)s %s"
    rc, _, err = run(["agent", "start"], environ)
    assert rc == 1
    assert_one_reason(err)
    assert run.seen[0].resource == "res %(x)s %s"


# -- in-process: handler outcomes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "rc"),
    [
        ("raise:OCFError", 1),
        ("raise:GenericError", 1),
        ("raise:ArgsError", 2),
        ("raise:UnimplementedError", 3),
        ("raise:PermError", 4),
        ("raise:NotInstalledError", 5),
        ("raise:ConfigError", 6),
    ],
)
def test_raised_ocf_error_sets_code_and_reason(run: Runner, mode: str, rc: int) -> None:
    code, out, err = run(["agent", "start"], env(mode=mode))
    assert code == rc
    assert out == ""
    assert assert_one_reason(err) == "raised on purpose"


@pytest.mark.parametrize(("mode", "rc"), [("ok", 0), ("notrunning", 7), ("degraded", 190)])
def test_returned_code_is_passed_through(run: Runner, mode: str, rc: int) -> None:
    code, _, err = run(["agent", "monitor"], env(mode=mode))
    assert code == rc
    assert reasons(err) == []


def test_unknown_returned_code_is_1(run: Runner) -> None:
    rc, _, err = run(["agent", "start"], env(mode="badrc"))
    assert rc == 1
    assert_one_reason(err)


def test_unexpected_exception_is_1_without_traceback(run: Runner) -> None:
    rc, out, err = run(["agent", "start"], env(mode="crash"))
    assert rc == 1
    assert out == ""
    reason = assert_one_reason(err)
    assert reason.startswith("unexpected error: RuntimeError: boom")
    assert "Traceback" not in err


def test_unexpected_exception_traceback_at_debug(run: Runner, tmp_path: Path) -> None:
    logfile = tmp_path / "ha.log"
    environ = {**env(mode="crash"), "HA_debug": "1", "HA_LOGFILE": str(logfile)}
    rc, _, err = run(["agent", "start"], environ)
    assert rc == 1
    assert_one_reason(err)
    assert "Traceback" not in err
    assert "Traceback" in logfile.read_text()


def test_system_exit_passes_through(run: Runner) -> None:
    with pytest.raises(SystemExit) as info:
        run(["agent", "start"], env(mode="exit"))
    assert info.value.code == 5


def test_exit_reason_is_single_line_and_capped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fail(_ctx: ocf_shim.Context) -> int:
        raise GenericError("line one\nline two\r\x1b[2J" + "z" * 2000)

    agent = Agent("a", "1", "s", "l", [Parameter("p", "s", "l")], [ActionSpec("start", 5)],
                  {"start": fail})  # fmt: skip
    assert agent.main(["a", "start"], {}) == 1
    reason = assert_one_reason(capsys.readouterr().err)
    assert reason.startswith("line one line two")
    assert len(reason) == 512


# -- in-process: deadline, interval, probe, resource ----------------------------------------------


@pytest.mark.parametrize(
    ("action", "timeout", "interval", "total"),
    [
        ("start", "90000", None, 90.0),
        ("start", "1500", None, 1.5),
        ("start", None, None, 30.0),
        ("start", "", None, 30.0),
        ("start", "0", None, 30.0),
        ("start", "-5000", None, 30.0),
        ("start", "soon", None, 30.0),
        ("stop", None, None, 40.0),
        ("monitor", None, "10000", 25.0),
        ("monitor", None, None, 25.0),
        ("validate-all", None, None, 15.0),
    ],
)
def test_deadline_budget(
    run: Runner,
    action: str,
    timeout: str | None,
    interval: str | None,
    total: float,
) -> None:
    environ = env()
    if timeout is not None:
        environ["OCF_RESKEY_CRM_meta_timeout"] = timeout
    if interval is not None:
        environ["OCF_RESKEY_CRM_meta_interval"] = interval
    assert run(["agent", action], environ)[0] == 0
    assert run.seen[0].deadline.total == total


def test_deadline_fallback_without_action_spec(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[ocf_shim.Context] = []

    def record(ctx: ocf_shim.Context) -> int:
        seen.append(ctx)
        return 0

    agent = Agent("a", "1", "s", "l", [Parameter("p", "s", "l")], [ActionSpec("start", 5)],
                  {"start": record, "status": record})  # fmt: skip
    assert agent.main(["a", "status"], {}) == 0
    assert seen[0].deadline.total == 20.0


@pytest.mark.parametrize(
    ("action", "interval", "probe", "interval_ms"),
    [
        ("monitor", None, True, 0),
        ("monitor", "0", True, 0),
        ("monitor", "", True, 0),
        ("monitor", "junk", True, 0),
        ("monitor", "10000", False, 10000),
        ("start", None, False, 0),
        ("stop", "0", False, 0),
    ],
)
def test_probe_detection(
    run: Runner,
    action: str,
    interval: str | None,
    probe: bool,
    interval_ms: int,
) -> None:
    environ = env(mode="probe")
    if interval is not None:
        environ["OCF_RESKEY_CRM_meta_interval"] = interval
    rc, _, err = run(["agent", action], environ)
    ctx = run.seen[0]
    assert ctx.is_probe is probe
    assert ctx.interval_ms == interval_ms
    assert rc == (7 if probe else 0)
    assert reasons(err) == []


def test_resource_name(run: Runner) -> None:
    run(["agent", "start"], env())
    assert run.seen[0].resource == "sample-agent"
    environ = {**env(), "OCF_RESOURCE_INSTANCE": "vip:0"}
    run(["agent", "start"], environ)
    assert run.seen[1].resource == "vip:0"
    assert run.seen[1].environ is environ


def test_watchdog_interrupts_a_stuck_handler(run: Runner) -> None:
    before = signal.getsignal(signal.SIGALRM)
    environ = {**env(mode="sleep"), "OCF_RESKEY_CRM_meta_timeout": "1500"}
    started = time.monotonic()
    rc, _, err = run(["agent", "start"], environ)
    took = time.monotonic() - started
    assert rc == 1
    assert "timed out" in assert_one_reason(err)
    assert 0.9 < took < 1.4
    assert signal.getsignal(signal.SIGALRM) is before


def test_watchdog_restores_a_pending_timer(run: Runner) -> None:
    fired: list[int] = []

    def outer(signum: int, _frame: object) -> None:
        fired.append(signum)

    previous = signal.signal(signal.SIGALRM, outer)
    old_timer = signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        assert run(["agent", "start"], env())[0] == 0
        assert signal.getsignal(signal.SIGALRM) is outer
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 99.0 < left <= 100.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, *old_timer)
        signal.signal(signal.SIGALRM, previous)
    assert fired == []


# -- in-process: logging --------------------------------------------------------------------------


def test_logfile_lines(run: Runner, tmp_path: Path) -> None:
    logfile = tmp_path / "ha.log"
    environ = {
        **env(api_token=SECRET, mode="raise:PermError"),
        "HA_LOGFILE": str(logfile),
        "HA_debug": "1",
        "OCF_RESOURCE_INSTANCE": "vip",
    }
    rc, _, err = run(["agent", "start"], environ)
    assert rc == 4
    assert err.splitlines() == [f"{PREFIX}raised on purpose"]
    text = logfile.read_text()
    lines = text.splitlines()
    assert lines
    tag = f"sample-agent(vip)[{os.getpid()}]"
    assert all(tag in line for line in lines), text
    assert any("DEBUG" in line for line in lines)
    assert any("ERROR" in line and "raised on purpose" in line for line in lines)
    assert SECRET not in text
    assert "<redacted>" in text


def test_logging_level_info_by_default(run: Runner, tmp_path: Path) -> None:
    logfile = tmp_path / "ha.log"
    for debug in (None, "0", ""):  # ocf-shellfuncs: any other HA_debug is on (test_shim_log.py)
        environ = {**env(), "HA_LOGFILE": str(logfile)}
        if debug is not None:
            environ["HA_debug"] = debug
        assert run(["agent", "start"], environ)[0] == 0
    text = logfile.read_text()
    assert "INFO" in text
    assert "DEBUG" not in text


def test_logging_is_idempotent(run: Runner, tmp_path: Path) -> None:
    logfile = tmp_path / "ha.log"
    environ = {**env(), "HA_LOGFILE": str(logfile)}
    for _ in range(3):
        assert run(["agent", "start"], environ)[0] == 0
    logger = run.seen[-1].log
    assert len(logger.targets) == 1
    assert len(logfile.read_text().splitlines()) == 3


def test_logging_to_stderr_without_targets(run: Runner) -> None:
    environ = {**env(mode="raise:ConfigError"), "HA_LOGFACILITY": "none"}
    rc, _, err = run(["agent", "start"], environ)
    assert rc == 6
    lines = err.splitlines()
    assert len(lines) >= 2
    assert f"sample-agent(sample-agent)[{os.getpid()}]" in lines[0]
    assert_one_reason(err)


def test_logging_falls_back_to_stderr_without_syslog(
    run: Runner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("ocf_shim.log.SYSLOG_ADDRESS", str(tmp_path / "missing"))
    environ = {**env(), "HA_LOGFACILITY": "daemon"}
    rc, _, err = run(["agent", "start"], environ)
    assert rc == 0
    assert "INFO" in err


@pytest.mark.parametrize(("facility", "code"), [("daemon", 3), ("local3", 19), ("LOCAL7", 23)])
def test_logging_to_syslog(
    run: Runner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    facility: str,
    code: int,
) -> None:
    address = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        server.settimeout(5)
        monkeypatch.setattr("ocf_shim.log.SYSLOG_ADDRESS", address)
        environ = {**env(), "HA_LOGFACILITY": facility, "OCF_RESOURCE_INSTANCE": "vip"}
        rc, _, err = run(["agent", "start"], environ)
        message = server.recv(4096).decode()
    assert rc == 0
    assert err == ""
    assert message.startswith(f"<{code * 8 + 6}>sample-agent(vip)[{os.getpid()}]: INFO: ")
    run.seen[0].log.close()


# -- the package itself ---------------------------------------------------------------------------


def _shim_sources() -> list[Path]:
    return sorted((LIB / "ocf_shim").glob("*.py"))


def test_shim_imports_only_the_standard_library() -> None:
    for path in _shim_sources():
        tree = ast.parse(path.read_text(), feature_version=(3, 9))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "__future__", (path, name)


def test_shim_import_is_light() -> None:
    code = (
        "import sys, ocf_shim\n"
        "heavy = ['xml.etree.ElementTree', 'xml.dom.minidom', 'logging', 'ipfailover', 're',\n"
        "         'typing', 'dataclasses', 'enum', 'signal', 'threading', 'socket']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = python_output(code)
    assert out.strip() == "[]"


# -- real subprocesses ----------------------------------------------------------------------------

INTERPRETERS = [
    pytest.param(sys.executable, id="venv"),
    pytest.param(
        "/usr/bin/python3",
        id="debian",
        marks=pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no python3"),
    ),
]


def run_agent(
    python: str,
    script: Path,
    *args: str,
    environ: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run the agent script in a clean environment, as Pacemaker would."""
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OCF_ROOT": "/usr/lib/ocf",
        "PYTHONPATH": str(LIB),
        **(environ or {}),
    }
    return subprocess.run(
        [python, str(script), *args],
        env=clean,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


@pytest.mark.parametrize("python", INTERPRETERS)
@pytest.mark.parametrize(
    ("args", "environ", "rc"),
    [
        ((), {}, 2),
        (("promote",), {}, 3),
        (("frobnicate",), {"OCF_RESKEY_ip": "192.0.2.1"}, 3),
        (("start",), {}, 6),
        (("monitor",), {"OCF_RESKEY_ip": ""}, 6),
        (("start",), {"OCF_RESKEY_ip": "192.0.2.1", "OCF_RESKEY_flag": "maybe"}, 6),
        (("start",), {"OCF_RESKEY_ip": "192.0.2.1", "OCF_RESKEY_count": "1.5"}, 6),
        (("start",), {"OCF_RESKEY_ip": "192.0.2.1", "OCF_RESKEY_count": ";rm -rf /"}, 6),
        (("start",), {"OCF_RESKEY_ip": "192.0.2.1\nocf-exit-reason:fine"}, 6),
        (("start",), {"OCF_RESKEY_ip": "192.0.2.1", "OCF_RESKEY_label": "z" * 10_240}, 6),
        (("start",), {"OCF_RESKEY_ip": "192.0.2.1", "OCF_RESKEY_mode": "raise:PermError"}, 4),
        (("start",), {"OCF_RESKEY_ip": "192.0.2.1", "OCF_RESKEY_mode": "crash"}, 1),
        (("start",), {"OCF_RESKEY_ip": "192.0.2.1", "OCF_RESKEY_mode": "badrc"}, 1),
    ],
)
def test_subprocess_failures(
    python: str, agent_script: Path, args: tuple[str, ...], environ: dict[str, str], rc: int
) -> None:
    proc = run_agent(python, agent_script, *args, environ=environ)
    assert proc.returncode == rc, proc.stderr
    assert proc.stdout == ""
    assert_one_reason(proc.stderr)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("python", INTERPRETERS)
def test_subprocess_success(python: str, agent_script: Path) -> None:
    proc = run_agent(
        python,
        agent_script,
        "monitor",
        environ={
            "OCF_RESKEY_ip": "192.0.2.1",
            "OCF_RESKEY_mode": "echo",
            "OCF_RESKEY_count": "7",
            "OCF_RESKEY_label": ";rm -rf /",
            "OCF_RESKEY_CRM_meta_timeout": "20000",
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert reasons(proc.stderr) == []
    data = json.loads(proc.stdout)
    assert data["params"]["count"] == 7
    assert data["params"]["flag"] is True
    assert data["params"]["label"] == ";rm -rf /"
    assert data["probe"] is True
    assert data["total"] == 20.0


@pytest.mark.parametrize("python", INTERPRETERS)
@pytest.mark.parametrize("action", ["usage", "help", "meta-data"])
def test_subprocess_shim_actions(python: str, agent_script: Path, action: str) -> None:
    proc = run_agent(python, agent_script, action)
    assert proc.returncode == 0
    assert proc.stderr == ""
    if action == "meta-data":
        root = parse_xml(proc.stdout)
        assert root.findtext("version") == "1.1"
    else:
        assert "validate-all" in proc.stdout


@pytest.mark.parametrize("python", INTERPRETERS)
def test_subprocess_crash_traceback_only_in_debug_log(
    python: str, agent_script: Path, tmp_path: Path
) -> None:
    logfile = tmp_path / "ha.log"
    common = {"OCF_RESKEY_ip": "192.0.2.1", "OCF_RESKEY_mode": "crash"}
    proc = run_agent(python, agent_script, "start", environ=common)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    reason = assert_one_reason(proc.stderr)
    assert reason.startswith("unexpected error: RuntimeError:")

    debug = {**common, "HA_debug": "1", "HA_LOGFILE": str(logfile)}
    proc = run_agent(python, agent_script, "start", environ=debug)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"{PREFIX}{reason}"]
    assert "Traceback" in logfile.read_text()


@pytest.mark.parametrize("python", INTERPRETERS)
def test_subprocess_watchdog(python: str, agent_script: Path, tmp_path: Path) -> None:
    logfile = tmp_path / "ha.log"
    started = time.monotonic()
    proc = run_agent(
        python,
        agent_script,
        "start",
        timeout=10,
        environ={
            "OCF_RESKEY_ip": "192.0.2.1",
            "OCF_RESKEY_mode": "sleep",
            "OCF_RESKEY_CRM_meta_timeout": "1500",
            "HA_LOGFILE": str(logfile),
        },
    )
    took = time.monotonic() - started
    assert proc.returncode == 1
    assert "timed out" in assert_one_reason(proc.stderr)
    assert "Traceback" not in proc.stderr
    assert took < 1.45
    assert "timed out" in logfile.read_text()


@pytest.mark.parametrize("python", INTERPRETERS)
def test_subprocess_budget_counts_from_the_process_start(python: str, agent_script: Path) -> None:
    """An interpreter that needs 1.5 s to reach the agent's code (a starved CPU) still ends
    within Pacemaker's 3 s: the budget runs from the process's creation, not from main()."""
    late = (
        "import runpy, sys, time\n"
        "time.sleep(1.5)\n"
        f"sys.argv = [{str(agent_script)!r}, 'start']\n"
        f"runpy.run_path({str(agent_script)!r}, run_name='__main__')\n"
    )
    started = time.monotonic()
    proc = subprocess.run(
        [python, "-c", late],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(LIB),
            "OCF_RESKEY_ip": "192.0.2.1",
            "OCF_RESKEY_mode": "sleep",
            "OCF_RESKEY_CRM_meta_timeout": "3000",
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    took = time.monotonic() - started
    assert proc.returncode == 1
    assert "timed out" in assert_one_reason(proc.stderr)
    assert took < 2.95


@pytest.mark.parametrize("python", INTERPRETERS)
def test_subprocess_ends_without_waiting_for_threads(python: str, agent_script: Path) -> None:
    started = time.monotonic()
    proc = run_agent(
        python,
        agent_script,
        "start",
        timeout=50,
        environ={"OCF_RESKEY_ip": "192.0.2.1", "OCF_RESKEY_mode": "linger"},
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 20  # the thread sleeps 60 s


# -- the configuration parser, OCF_CHECK_LEVEL and lazy handlers ----------------------------------


class Parsed:
    """What the sample parser makes of the parameters."""

    def __init__(self, ip: str) -> None:
        self.ip = ip


def parse_sample(params: Mapping[str, object]) -> Parsed:
    ip = str(params["ip"])
    if not ip[:1].isdigit():
        raise ConfigError(f"parameter 'ip': {ip!r} is not an address")
    return Parsed(ip)


def parsing_agent(handler: ocf_shim.Handler) -> Agent:
    return Agent(
        "parsing-agent",
        "1",
        "A parsing agent",
        "An agent that declares a configuration parser.",
        [Parameter("ip", "Address", "The address.", required=True)],
        [ActionSpec("start", 10), ActionSpec("validate-all", 10), ActionSpec("meta-data", 5)],
        {"start": handler, "validate-all": handler},
        config=parse_sample,
    )


@pytest.fixture
def calls() -> list[ocf_shim.Context]:
    return []


@pytest.fixture
def parsing(calls: list[ocf_shim.Context]) -> Agent:
    def handler(ctx: ocf_shim.Context) -> int:
        calls.append(ctx)
        return OCF.SUCCESS

    return parsing_agent(handler)


@pytest.mark.parametrize(
    "level_env",
    [{"OCF_CHECK_LEVEL": "0"}, {"OCF_CHECK_LEVEL": " 0 "}, {"OCF_RESKEY_OCF_CHECK_LEVEL": "0"}],
)
def test_validate_at_check_level_0_runs_the_parser_alone(
    parsing: Agent, calls: list[ocf_shim.Context], level_env: dict[str, str], capsys: Any
) -> None:
    assert parsing.main(["a", "validate-all"], {**env(), **level_env}) == OCF.SUCCESS
    assert calls == []
    bad = {**env(ip="not-an-ip"), **level_env}
    assert parsing.main(["a", "validate-all"], bad) == OCF.ERR_CONFIGURED
    assert calls == []
    assert "'not-an-ip' is not an address" in assert_one_reason(capsys.readouterr().err)


@pytest.mark.parametrize(
    "level_env",
    [
        {},
        {"OCF_CHECK_LEVEL": "10"},
        {"OCF_CHECK_LEVEL": "x"},
        {"OCF_RESKEY_OCF_CHECK_LEVEL": "20"},
        {"OCF_CHECK_LEVEL": "10", "OCF_RESKEY_OCF_CHECK_LEVEL": "0"},
    ],
)
def test_validate_at_other_levels_runs_the_handler_with_the_parsed_config(
    parsing: Agent, calls: list[ocf_shim.Context], level_env: dict[str, str]
) -> None:
    assert parsing.main(["a", "validate-all"], {**env(), **level_env}) == OCF.SUCCESS
    (ctx,) = calls
    assert ctx.config_as(Parsed).ip == "192.0.2.10"
    with pytest.raises(TypeError):
        ctx.config_as(str)


def test_level_0_is_only_for_validate_and_only_with_a_parser(
    parsing: Agent, calls: list[ocf_shim.Context], run: Runner
) -> None:
    level0 = {**env(), "OCF_CHECK_LEVEL": "0"}
    assert parsing.main(["a", "start"], level0) == OCF.SUCCESS
    assert len(calls) == 1
    # the sample agent declares no parser: its handler runs at every level
    assert run(["agent", "validate-all"], level0)[0] == OCF.SUCCESS
    assert len(run.seen) == 1
    assert run.seen[0].config is None


def test_a_parse_error_fails_every_action_before_its_handler(
    parsing: Agent, calls: list[ocf_shim.Context], capsys: Any
) -> None:
    for action in ("start", "validate-all"):
        assert parsing.main(["a", action], env(ip="x")) == OCF.ERR_CONFIGURED
        assert_one_reason(capsys.readouterr().err)
    assert calls == []


def test_lazy_handler_imports_its_module_when_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    (tmp_path / "lazy_sample_actions.py").write_text(
        "def start(ctx):\n    return 7 if ctx.config.ip == '192.0.2.10' else 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    agent = parsing_agent(ocf_shim.lazy_handler("lazy_sample_actions", "start"))
    assert "lazy_sample_actions" not in sys.modules
    assert agent.main(["a", "validate-all"], {**env(), "OCF_CHECK_LEVEL": "0"}) == 0
    assert "lazy_sample_actions" not in sys.modules
    assert agent.main(["a", "start"], env()) == OCF.NOT_RUNNING
    assert "lazy_sample_actions" in sys.modules
    monkeypatch.delitem(sys.modules, "lazy_sample_actions")
    missing = parsing_agent(ocf_shim.lazy_handler("lazy_sample_actions", "stop"))
    assert missing.main(["a", "start"], env()) == OCF.ERR_GENERIC
    assert "AttributeError" in assert_one_reason(capsys.readouterr().err)


def test_the_log_writes_nothing_below_its_level(tmp_path: Path) -> None:
    logfile = tmp_path / "ha.log"
    log = ocf_shim.get_log("test-levels").configure("tag[1]", {"HA_LOGFILE": str(logfile)})
    assert log is ocf_shim.get_log("test-levels")
    log.debug("hidden %s", "x")
    log.info("shown %s and %d%%", "x", 5)
    log.warning("plain %s")  # no arguments: no formatting
    log.configure("tag[2]", {"HA_LOGFILE": str(logfile), "HA_debug": "1"})
    log.debug("now shown")
    log.close()
    lines = logfile.read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "tag[1]: INFO: shown x and 5%",
        "tag[1]: WARNING: plain %s",
        "tag[2]: DEBUG: now shown",
    ]


# -- any OCF_RESKEY_CRM_meta_timeout: garbage gives the action's default, huge values the cap ---

# Pacemaker passes an operation's timeout to the agent as a C int of milliseconds: 2**31 - 1 ms
# (24.8 days) is the longest it can ask for, and what larger values are clamped to.
CAP_MS = 2**31 - 1
CAP_S = CAP_MS / 1000


@pytest.mark.parametrize(
    ("timeout", "total"),
    [
        (str(10**30), CAP_S),
        (str(10**17), CAP_S),
        pytest.param("9" * 5000, CAP_S, id="5000-digits"),  # int() refuses them on 3.11+
        (str(CAP_MS + 1), CAP_S),
        (str(CAP_MS), CAP_S),
        ("0" * 30 + "90000", 90.0),
        (" 90000 ", 90.0),
        ("+90000", 90.0),
        ("-" + "9" * 30, 30.0),
        ("1e3", 30.0),
        ("90s", 30.0),
        ("\u0669\u0660\u0660\u0660", 30.0),  # Arabic-Indic digits
        ("0x10", 30.0),
    ],
)
def test_any_timeout_value_gives_a_bounded_budget(run: Runner, timeout: str, total: float) -> None:
    environ = {**env(), "OCF_RESKEY_CRM_meta_timeout": timeout}
    assert run(["agent", "start"], environ)[0] == 0
    assert run.seen[0].deadline.total == total


def test_a_huge_interval_is_a_recurring_monitor(run: Runner) -> None:
    environ = {**env(mode="probe"), "OCF_RESKEY_CRM_meta_interval": str(10**30)}
    rc, _, _ = run(["agent", "monitor"], environ)
    assert (rc, run.seen[0].is_probe, run.seen[0].interval_ms) == (0, False, CAP_MS)


@pytest.mark.parametrize("budget", [1e30, float("inf"), 10**40])
def test_deadline_clamps_huge_budgets(budget: float) -> None:
    d = Deadline(budget, clock=FakeClock())
    assert d.total == CAP_S
    assert d.remaining() == CAP_S - 3.0


def test_deadline_refuses_nan() -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        Deadline(float("nan"), clock=FakeClock())


def test_watchdog_arms_for_a_huge_budget() -> None:
    from ocf_shim.watchdog import Watchdog

    before = signal.getitimer(signal.ITIMER_REAL)  # pytest-timeout's, if any: restored
    with Watchdog(Deadline(1e27), "doing nothing"):
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= CAP_S
    after = signal.getitimer(signal.ITIMER_REAL)
    assert after[0] == pytest.approx(before[0], abs=1.0)


@pytest.mark.parametrize("python", INTERPRETERS)
@pytest.mark.parametrize("timeout", [str(10**30), str(10**17)])
def test_subprocess_completes_with_a_huge_timeout(
    python: str, agent_script: Path, timeout: str
) -> None:
    proc = run_agent(
        python,
        agent_script,
        "start",
        environ={
            "OCF_RESKEY_ip": "192.0.2.1",
            "OCF_RESKEY_mode": "echo",
            "OCF_RESKEY_CRM_meta_timeout": timeout,
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Error" not in proc.stderr
    assert json.loads(proc.stdout)["total"] == CAP_S
