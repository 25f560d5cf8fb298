"""The exit-code rule of lib/ocf_shim/errors.py, where the shim enforces it: a stop never reports
2, 5, 6 or 7 for a problem of this node (Pacemaker would read them as "try elsewhere", "wrong
everywhere" or "not running"); bad parameters still give 6 in every action."""

from __future__ import annotations

import pytest

import ocf_shim
from ocf_shim import (
    OCF,
    ActionSpec,
    Agent,
    ArgsError,
    ConfigError,
    GenericError,
    NotInstalledError,
    OCFError,
    Parameter,
    PermError,
)


def agent_raising(error: OCFError | None, returned: int = OCF.SUCCESS) -> Agent:
    def handler(_ctx: ocf_shim.Context) -> int:
        if error is not None:
            raise error
        return returned

    def parse(params: object) -> object:
        if getattr(params, "get", lambda _k: None)("p") == "bad":
            raise ConfigError("parameter 'p': bad")
        return params

    actions = [ActionSpec(name, 5) for name in ("start", "stop", "monitor")]
    handlers = dict.fromkeys(("start", "stop", "monitor"), handler)
    return Agent("a", "1", "s", "l", [Parameter("p", "s", "l")], actions, handlers, config=parse)


@pytest.mark.parametrize(
    ("error", "stop_rc"),
    [
        (ArgsError("no such profile here"), OCF.ERR_GENERIC),
        (NotInstalledError("botocore too old"), OCF.ERR_GENERIC),
        (ConfigError("the ENI is gone"), OCF.ERR_GENERIC),
        (OCFError("said not running", OCF.NOT_RUNNING), OCF.ERR_GENERIC),
        (PermError("denied"), OCF.ERR_PERM),
        (GenericError("unreachable"), OCF.ERR_GENERIC),
    ],
)
def test_a_stop_handler_never_reports_node_local_codes(
    error: OCFError, stop_rc: int, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = agent_raising(error)
    assert agent.main(["a", "stop"], {}) == stop_rc
    assert error.reason in capsys.readouterr().err  # the reason still says what is wrong
    # Other actions keep the error's own code.
    assert agent.main(["a", "start"], {}) == error.rc


@pytest.mark.parametrize("returned", [OCF.NOT_RUNNING, OCF.ERR_ARGS, OCF.ERR_CONFIGURED])
def test_a_stop_handler_returning_such_a_code_fails_with_1(returned: int) -> None:
    assert agent_raising(None, returned).main(["a", "stop"], {}) == OCF.ERR_GENERIC
    assert agent_raising(None, OCF.SUCCESS).main(["a", "stop"], {}) == OCF.SUCCESS


def test_bad_parameters_give_6_in_stop_too() -> None:
    env = {"OCF_RESKEY_p": "bad"}
    for action in ("start", "stop", "monitor"):
        assert agent_raising(None).main(["a", action], env) == OCF.ERR_CONFIGURED
