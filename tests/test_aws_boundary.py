"""The AWS boundary: every exception botocore raises or lets through becomes an OCF error with
the code of its family, at every point of building the client and of sending a request.

The table is every class of ``botocore.exceptions`` (walked, each built with generic arguments)
plus what botocore lets through (a damaged model's ``JSONDecodeError``, ``OSError``,
``ssl.SSLError``, a stale model's ``KeyError``/``AttributeError``, ``RecursionError``), raised
at session creation, credential resolution, client creation and sending.
"""

from __future__ import annotations

import inspect
import json
import ssl
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.client
import botocore.exceptions as bex
import botocore.session
import pytest

from ipfailover.aws import client as aws
from ipfailover.aws.client import Api, bypass_proxy_for_imds, connect
from ipfailover.config.params import AwsSettings
from ocf_shim import OCF, Deadline, OCFError

POINTS = ("session", "credentials", "client", "sending")


def build(cls: type[BaseException]) -> BaseException:
    """An instance of ``cls`` from generic arguments (botocore's take their ``fmt`` fields)."""
    if issubclass(cls, bex.ClientError):
        error = {"Error": {"Code": "UnauthorizedOperation", "Message": "denied"}}
        return cls(error, "DescribeRouteTables")  # type: ignore[call-arg]
    if cls is bex.WaiterError:
        return bex.WaiterError("waiter", "reason", {})
    fmt = getattr(cls, "fmt", None)
    if isinstance(fmt, str):
        parsed = string.Formatter().parse(fmt)
        fields = {f.split(".")[0].split("[")[0] for _, f, _, _ in parsed if f}
        return cls(**dict.fromkeys(fields, "x"))
    return cls("x")


def botocore_classes() -> list[type[BaseException]]:
    return [
        cls
        for _, cls in inspect.getmembers(bex, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__.startswith("botocore")
    ]


def let_through() -> list[BaseException]:
    try:
        json.loads('{"shapes": ')
    except json.JSONDecodeError as exc:
        damaged = exc
    return [
        damaged,
        OSError(5, "Input/output error"),
        FileNotFoundError(2, "No such file or directory", "/usr/local/bin/helper"),
        PermissionError(13, "Permission denied", "/usr/local/bin/helper"),
        ssl.SSLError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
        KeyError("DescribeRouteTablesRequest"),
        AttributeError("'NoneType' object has no attribute 'members'"),
        RecursionError("maximum recursion depth exceeded"),
        ValueError("x"),
    ]


NODE = {
    "ProfileNotFound",
    "PartialCredentialsError",
    "ConfigNotFound",
    "ConfigParseError",
    "InvalidConfigError",
    "InfiniteLoopConfigError",
    "UnknownCredentialError",
}
SOFTWARE = {"DataNotFoundError", "UnknownServiceError", "ApiVersionNotFoundError"}
NETWORK = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "ProxyConnectionError",
    "SSLError",
    "OSError",
}


def expected(exc: BaseException, point: str) -> set[int]:
    """The rule: node-local set-up 2, denied 4, missing software 5, values wrong in themselves
    6, network trouble and everything else 1 (a program of credential_process that is missing
    or not executable is this node's problem: 2)."""
    name = type(exc).__name__
    local = point == "credentials" and isinstance(exc, (FileNotFoundError, PermissionError))
    rules = (
        (isinstance(exc, bex.ClientError), {OCF.ERR_PERM}),
        (name in NODE or local, {OCF.ERR_ARGS}),
        (name in SOFTWARE, {OCF.ERR_INSTALLED}),
        (isinstance(exc, (bex.ParamValidationError, bex.ValidationError)), {OCF.ERR_CONFIGURED}),
        (name in NETWORK or not isinstance(exc, bex.BotoCoreError), {OCF.ERR_GENERIC}),
    )
    for applies, rcs in rules:
        if applies:
            return rcs
    return {OCF.ERR_GENERIC, OCF.ERR_ARGS, OCF.ERR_PERM, OCF.ERR_INSTALLED}


TABLE = [build(cls) for cls in botocore_classes()] + let_through()


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def raise_at(
    point: str, exc: BaseException, monkeypatch: pytest.MonkeyPatch, client: Any = None
) -> Api:
    """Connect with ``exc`` raised at ``point``; for "sending", call with ``client``."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise exc

    fake = FakeTime()
    deadline = Deadline(6.0, clock=fake.clock)
    if point == "sending":
        monkeypatch.setattr(client, "_make_api_call", boom)

        def delays() -> Iterator[float]:
            while True:
                yield 0.5

        api = Api(client, deadline, attempt_time=0.5, sleep=fake.sleep, delays=delays)
        api.call("DescribeRouteTables", RouteTableIds=["rtb-11111111"])
        return api
    target = {"session": "__init__", "credentials": "get_credentials", "client": "create_client"}
    monkeypatch.setattr(botocore.session.Session, target[point], boom)
    settings = AwsSettings(endpoint_url="http://127.0.0.1:9")
    return connect(settings, "eu-central-1", deadline, "test")


@pytest.mark.usefixtures("node_env")
@pytest.mark.parametrize("point", POINTS)
def test_every_exception_at_every_point_is_an_ocf_error_of_its_family(
    point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = []
    client = None
    if point == "sending":
        settings = AwsSettings(endpoint_url="http://127.0.0.1:9")
        client = connect(settings, "eu-central-1", Deadline(10), "test").client
    for exc in TABLE:
        name = type(exc).__name__
        with monkeypatch.context() as patch:
            try:
                api = raise_at(point, exc, patch, client)
            except OCFError as error:
                rc, reason = error.rc, error.reason
            except BaseException as other:  # what the table looks for
                wrong.append(f"{name}: escaped as {type(other).__name__}: {other}")
                continue
            else:
                wrong.append(f"{name}: no error ({api})")
                continue
        if rc not in expected(exc, point):
            wrong.append(f"{name}: rc {rc}, expected {sorted(expected(exc, point))}: {reason}")
        if "unexpected" in reason or not reason.strip():
            wrong.append(f"{name}: reason {reason!r}")
        named = isinstance(exc, (bex.ClientError, bex.NoCredentialsError)) or name in reason
        if rc == OCF.ERR_GENERIC and not named:
            wrong.append(f"{name}: the reason does not name the class: {reason}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.usefixtures("node_env")
def test_network_trouble_while_sending_is_retried_until_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    exc = bex.EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    settings = AwsSettings(endpoint_url="http://127.0.0.1:9")
    fake = FakeTime()
    api = connect(settings, "eu-central-1", Deadline(6.0, clock=fake.clock), "test")

    def boom(*args: Any) -> Any:
        calls.append(args)
        raise exc

    monkeypatch.setattr(api.client, "_make_api_call", boom)
    retrying = Api(api.client, api.deadline, attempt_time=0.5, sleep=fake.sleep)
    with pytest.raises(OCFError) as info:
        retrying.call("DescribeRouteTables")
    assert info.value.rc == OCF.ERR_GENERIC
    assert len(calls) > 1
    assert "EndpointConnectionError" in info.value.reason


@pytest.mark.usefixtures("node_env")
def test_a_failing_credential_process_is_transient_and_a_missing_one_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What botocore really raises: CredentialRetrievalError for a helper that exits 1 (may
    work on the next try: 1), FileNotFoundError from Popen for a missing program (2)."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    config = tmp_path / "config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    settings = AwsSettings(profile="helper", endpoint_url="http://127.0.0.1:9")
    for program, rc in (("/bin/false", OCF.ERR_GENERIC), (str(tmp_path / "none"), OCF.ERR_ARGS)):
        config.write_text(f"[profile helper]\ncredential_process = {program}\n")
        with pytest.raises(OCFError) as info:
            connect(settings, "eu-central-1", Deadline(10), "test")
        assert info.value.rc == rc, info.value.reason


@pytest.mark.usefixtures("node_env")
@pytest.mark.parametrize(
    ("config", "profile", "words"),
    [
        ("[default]\nregion = eu-central-1\n", "missing", "not in this node"),
        ("[profile half]\naws_access_key_id = AKIDEXAMPLE\n", "half", "PartialCredentials"),
        ("[profile broken\n", "broken", "Parse"),
    ],
)
def test_this_nodes_aws_configuration_gives_2_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str, profile: str, words: str
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    path = tmp_path / "config"
    path.write_text(config)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    settings = AwsSettings(profile=profile, endpoint_url="http://127.0.0.1:9")
    with pytest.raises(OCFError) as info:
        connect(settings, "eu-central-1", Deadline(10), "test")
    assert info.value.rc == OCF.ERR_ARGS, info.value.reason
    assert words in info.value.reason
    assert "AKIDEXAMPLE" not in info.value.reason


@pytest.mark.usefixtures("node_env")
@pytest.mark.parametrize("how", ["missing", "empty", "garbage", "directory as config"])
def test_unusable_local_files_give_2_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    bundle = tmp_path / "ca.pem"
    settings = AwsSettings(endpoint_url="https://127.0.0.1:9", ca_bundle=str(bundle))
    named = str(bundle)
    if how == "empty":
        bundle.write_text("")
    elif how == "garbage":
        bundle.write_text("not a certificate\n")
    elif how == "directory as config":
        (tmp_path / "config.d").mkdir()
        named = str(tmp_path / "config.d")
        monkeypatch.setenv("AWS_CONFIG_FILE", named)
        settings = AwsSettings(endpoint_url="https://127.0.0.1:9")
    fake = FakeTime()
    with pytest.raises(OCFError) as info:
        connect(settings, "eu-central-1", Deadline(10, clock=fake.clock), "test")
    assert info.value.rc == OCF.ERR_ARGS, info.value.reason
    assert named in info.value.reason
    assert fake.now == 0.0  # at once: no network attempt, no wait


@pytest.mark.usefixtures("node_env")
def test_a_ca_bundle_from_the_environment_is_checked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "gone.pem"))
    with pytest.raises(OCFError) as info:
        connect(AwsSettings(), "eu-central-1", Deadline(10), "test")
    assert info.value.rc == OCF.ERR_ARGS
    assert "gone.pem" in info.value.reason


def test_imds_addresses_bypass_any_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's credential fetch decides with get_environ_proxies, as its IMDS fetcher does."""
    from botocore.utils import get_environ_proxies

    env = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    env["NO_PROXY"] = env["no_proxy"] = "example.com"
    bypass_proxy_for_imds(env)
    bypass_proxy_for_imds(env)  # idempotent
    assert env["NO_PROXY"].split(",").count(aws.IMDS_HOST) == 1
    assert env["NO_PROXY"].startswith("example.com,")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for url in ("http://169.254.169.254/latest/api/token", "http://[fd00:ec2::254]/latest"):
        assert get_environ_proxies(url) == {}, url
    assert get_environ_proxies("https://ec2.eu-central-1.amazonaws.com/")
