"""Authenticated proxies, in the lab: the agents reach EC2 only through a real proxy in the VPC
namespace that demands ``Proxy-Authorization`` (lab/proxy.py), with the user and password in the
``proxy`` parameter (plain, and percent-encoded) or in ``proxy_credentials_file``; a wrong
password is a 4 at the first answer, with a reason and no password; and no output of any action
(stdout, stderr, exit reason, the HA_LOGFILE with HA_debug=1) holds the password in any form.

The https case uses the regional endpoint ``https://ec2.<region>.amazonaws.com`` with no
``endpoint_url`` (a node has no DNS: only the proxy can reach it) and the lab CA as
``ca_bundle``, so every call goes through a CONNECT tunnel; the http case the lab's
``endpoint_url``, forwarded in absolute form.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from agentkit import PYTHONS, agent, node_addresses

AGENT = agent("aws-secip")
IP = "10.0.1.50"
USER, PASSWORD = "ipf-proxy", "Plain-Pa55word-7f3a"
# What users put in passwords: every character that needs percent-encoding in a URL.
ODD_USER, ODD_PASSWORD = "corp\\svc@ha", "p@ss:w/rd %#?&=+ ~-91c2"
USERS = {USER: PASSWORD, ODD_USER: ODD_PASSWORD}


@pytest.fixture
def proxy(lab: Any) -> Iterator[Any]:
    with lab.proxy(USERS) as running:
        yield running


@pytest.fixture
def ca_bundle(lab: Any, tmp_path: Path) -> str:
    path = tmp_path / "lab-ca.pem"
    path.write_text(lab.ca_pem())
    return str(path)


def url(lab: Any, node: str, user: str | None = None, password: str | None = None) -> str:
    host = lab.proxy_address(node)
    if user is None:
        return f"http://{host}:3128"
    return f"http://{quote(user, safe='')}:{quote(password or '', safe='')}@{host}:3128"


def https_params(ca_bundle: str, proxy_url: str, **extra: str) -> dict[str, str]:
    """The regional https endpoint (no endpoint_url): reachable only through the proxy."""
    return {"ip": IP, "proxy": proxy_url, "ca_bundle": ca_bundle, **extra}


def forms(user: str, password: str) -> list[str]:
    """Every form in which a password could leak: as it is, percent-encoded (the URL), and the
    Basic credentials of the Proxy-Authorization header."""
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    return [password, quote(password, safe=""), basic]


def leaks(texts: list[str], user: str, password: str) -> list[str]:
    return [form for form in forms(user, password) for text in texts if form in text]


def eni_holding(lab: Any) -> set[str]:
    holders: set[str] = lab.holders(IP)
    return holders


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize(
    ("user", "password"), [(USER, PASSWORD), (ODD_USER, ODD_PASSWORD)], ids=["plain", "encoded"]
)
def test_start_monitor_stop_through_the_proxy(
    lab: Any, proxy: Any, ca_bundle: str, *, python: str, user: str, password: str
) -> None:
    params = https_params(ca_bundle, url(lab, "a", user, password))
    eni = lab.nodes["a"].eni_id
    steps = [("start", None, 0), ("monitor", 10000, 0), ("stop", None, 0), ("monitor", 10000, 7)]
    for action, interval, expected in steps:
        result = lab.run_agent("a", AGENT, action, params, interval_ms=interval, python=python)
        assert result.rc == expected, (action, result.exit_reason, result.stderr[-2000:])
        assert not leaks([result.stdout, result.stderr], user, password)
        if action == "start":
            assert eni_holding(lab) == {eni}
    assert eni_holding(lab) == set()
    assert proxy.tunnels("a") >= 4  # at least one per action: nothing else reaches EC2
    assert proxy.denied() == 0
    assert {r.user for r in proxy.records} == {user}
    assert lab.calls(node="a"), "the calls through the tunnels reached the lab's EC2"


@pytest.mark.parametrize("python", PYTHONS)
def test_http_endpoint_through_the_proxy(lab: Any, proxy: Any, python: str) -> None:
    params = {"ip": IP, "endpoint_url": lab.endpoint_url, "proxy": url(lab, "a", USER, PASSWORD)}
    for action, interval, expected in (("start", None, 0), ("monitor", 1000, 0), ("stop", None, 0)):
        result = lab.run_agent("a", AGENT, action, params, interval_ms=interval, python=python)
        assert result.rc == expected, (action, result.exit_reason, result.stderr[-2000:])
    assert proxy.forwarded("a") >= 3
    assert proxy.tunnels() == 0


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("endpoint", ["https", "http"])
@pytest.mark.parametrize("credentials", ["wrong", "missing"])
def test_a_refused_password_fails_at_once_without_the_password(
    lab: Any, proxy: Any, ca_bundle: str, *, python: str, endpoint: str, credentials: str
) -> None:
    wrong = "Wrong-Pa55word-0b1e"
    proxy_url = url(lab, "a", USER, wrong) if credentials == "wrong" else url(lab, "a")
    params = https_params(ca_bundle, proxy_url)
    if endpoint == "http":
        params = {"ip": IP, "proxy": proxy_url, "endpoint_url": lab.endpoint_url}
    start = lab.run_agent("a", AGENT, "start", params, python=python)
    assert start.exit_reason is not None
    if endpoint == "https":
        assert start.rc == 4, (start.exit_reason, start.stderr[-2000:])
        assert "407" in start.exit_reason
    else:
        # An http endpoint: the proxy's 407 is the answer to the request itself, which botocore
        # tries to read as EC2's XML and fails before anyone sees the status (README: Proxies).
        assert start.rc == 1, (start.exit_reason, start.stderr[-2000:])
    assert not leaks([start.stdout, start.stderr], USER, wrong)
    assert proxy.denied("a") == 1  # not retried until the deadline: the answer will not change
    assert lab.calls(node="a") == []
    assert eni_holding(lab) == set()
    # A stop never says 4 (the exit-code rule): its AWS part is best effort.
    stop = lab.run_agent("a", AGENT, "stop", params, python=python)
    assert stop.rc in (0, 1), stop.exit_reason
    monitor = lab.run_agent("a", AGENT, "monitor", params, interval_ms=10000, python=python)
    assert monitor.rc in (1, 4, 7), monitor.exit_reason


def write_credentials(tmp_path: Path, text: str, mode: int = 0o600, uid: int = 0) -> str:
    path = tmp_path / "proxy-credentials"
    path.write_text(text, encoding="utf-8")
    os.chown(path, uid, 0)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize(
    ("user", "password"), [(USER, PASSWORD), (ODD_USER, ODD_PASSWORD)], ids=["plain", "odd"]
)
def test_credentials_file(
    lab: Any,
    proxy: Any,
    ca_bundle: str,
    tmp_path: Path,
    *,
    python: str,
    user: str,
    password: str,
) -> None:
    """The file holds the user and password as they are (not percent-encoded)."""
    path = write_credentials(tmp_path, f"{user}:{password}\n")
    params = https_params(ca_bundle, url(lab, "a"), proxy_credentials_file=path)
    for action, interval, expected in (("start", None, 0), ("monitor", 1000, 0), ("stop", None, 0)):
        result = lab.run_agent("a", AGENT, action, params, interval_ms=interval, python=python)
        assert result.rc == expected, (action, result.exit_reason, result.stderr[-2000:])
        assert not leaks([result.stdout, result.stderr], user, password)
    assert proxy.tunnels("a") >= 3
    assert {r.user for r in proxy.records} == {user}


@pytest.mark.parametrize(
    ("mode", "uid", "text", "says"),
    [
        (0o644, 0, f"{USER}:{PASSWORD}\n", "mode 0644"),
        (0o640, 0, f"{USER}:{PASSWORD}\n", "mode 0640"),
        (0o600, 65534, f"{USER}:{PASSWORD}\n", "not root"),
        (0o600, 0, f"{PASSWORD}\n", "one line user:password"),
        (0o600, 0, f"{USER}:{PASSWORD}\nsecond line\n", "more than one line"),
    ],
    ids=["world-readable", "group-readable", "not-root", "no-user", "two-lines"],
)
def test_an_unsafe_or_malformed_credentials_file_is_a_2_on_this_node(
    lab: Any,
    proxy: Any,
    ca_bundle: str,
    tmp_path: Path,
    *,
    mode: int,
    uid: int,
    text: str,
    says: str,
) -> None:
    path = write_credentials(tmp_path, text, mode, uid)
    params = https_params(ca_bundle, url(lab, "a"), proxy_credentials_file=path)
    start = lab.run_agent("a", AGENT, "start", params)
    assert start.rc == 2, (start.exit_reason, start.stderr[-2000:])
    assert start.exit_reason is not None
    assert says in start.exit_reason and path in start.exit_reason
    assert not leaks([start.stdout, start.stderr], USER, PASSWORD)
    assert proxy.records == []  # refused before anything was sent
    stop = lab.run_agent("a", AGENT, "stop", params)
    assert stop.rc in (0, 1), stop.exit_reason  # a stop never says 2


def test_a_missing_credentials_file_is_a_2(lab: Any, ca_bundle: str, tmp_path: Path) -> None:
    path = str(tmp_path / "absent")
    params = https_params(ca_bundle, url(lab, "a"), proxy_credentials_file=path)
    start = lab.run_agent("a", AGENT, "start", params)
    assert start.rc == 2 and path in (start.exit_reason or ""), start.exit_reason


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"proxy_credentials_file": "/etc/x"}, "'proxy' is not"),
        ({"proxy": "http://u:p@h:3128", "proxy_credentials_file": "/etc/x"}, "keep one"),
        ({"proxy": "http://h:3128", "proxy_credentials_file": "etc/x"}, "absolute path"),
    ],
)
def test_credentials_file_parameter_errors_are_a_6(
    lab: Any, params: dict[str, str], says: str
) -> None:
    result = lab.run_agent("a", AGENT, "validate-all", {"ip": IP, **params})
    assert result.rc == 6 and says in (result.exit_reason or ""), result.exit_reason


@pytest.mark.parametrize("python", PYTHONS)
def test_no_output_of_any_action_holds_the_password(
    lab: Any, proxy: Any, ca_bundle: str, tmp_path: Path, python: str
) -> None:
    """Every action with HA_debug=1 and an HA_LOGFILE, with the right password, a wrong one,
    and values the syntax check refuses (a raw "/" or "#" in the password, no scheme): the
    password appears in no stdout, stderr, exit reason or log record, in no form."""
    logfile = tmp_path / "ha.log"
    env = {"HA_debug": "1", "HA_LOGFILE": str(logfile)}
    wrong = "Wrong-Pa55word-0b1e"
    good = https_params(ca_bundle, url(lab, "a", ODD_USER, ODD_PASSWORD))
    bad = https_params(ca_bundle, url(lab, "a", USER, wrong))
    http_bad = {"ip": IP, "endpoint_url": lab.endpoint_url, "proxy": bad["proxy"]}
    host = lab.proxy_address("a")
    refused = [
        f"http://{USER}:{PASSWORD}/x@{host}:3128",  # "/" not encoded
        f"http://{USER}:{PASSWORD}#@{host}:3128",  # "#" not encoded
        f"{USER}:{PASSWORD}@{host}:3128",  # no scheme
        f"http://{USER}:{PASSWORD}@{host}:99999",  # no such port
        f"ftp://{USER}:{PASSWORD}@{host}:3128",  # not http(s)
    ]
    runs: list[tuple[str, dict[str, str], int | None]] = [("meta-data", good, None)]
    runs += [("validate-all", good, None), ("start", good, None)]
    runs += [("monitor", good, 10000), ("stop", good, None)]
    runs += [("start", bad, None), ("validate-all", bad, None), ("start", http_bad, None)]
    runs += [("validate-all", {**good, "proxy": value}, None) for value in refused]
    runs += [("start", {**good, "proxy": value}, None) for value in refused]
    outputs: list[str] = []
    codes = []
    for action, params, interval in runs:
        result = lab.run_agent(
            "a", AGENT, action, params, interval_ms=interval, python=python, extra_env=env
        )
        codes.append((action, result.rc))
        outputs += [result.stdout, result.stderr, result.exit_reason or ""]
    log = logfile.read_text(encoding="utf-8", errors="replace")
    assert "DEBUG" in log and "proxy=" in log  # the debug records were written
    assert codes[1:5] == [("validate-all", 0), ("start", 0), ("monitor", 0), ("stop", 0)]
    assert [rc for _, rc in codes[5:8]] == [4, 4, 1]  # the last: an http endpoint
    assert all(rc == 6 for _, rc in codes[8:]), codes
    found = leaks([*outputs, log], ODD_USER, ODD_PASSWORD)
    found += leaks([*outputs, log], USER, wrong) + leaks([*outputs, log], USER, PASSWORD)
    assert not found


ROLE = "arn:aws:iam::123456789012:role/ha-proxy-test"


@pytest.mark.parametrize("python", PYTHONS)
def test_sts_goes_through_the_proxy_too(lab: Any, proxy: Any, python: str) -> None:
    """role_arn: AssumeRole (the lab's STS, at sts_endpoint_url) and the EC2 calls made with the
    role's credentials all pass the proxy, with its credentials: every request the lab saw from
    the node is one the proxy forwarded."""
    lab.set_role(ROLE, lab.nodes_trust())
    params = {
        "ip": IP,
        "endpoint_url": lab.endpoint_url,
        "sts_endpoint_url": lab.endpoint_url,
        "role_arn": ROLE,
        "proxy": url(lab, "a", ODD_USER, ODD_PASSWORD),
    }
    for action, interval, expected in (("start", None, 0), ("monitor", 1000, 0), ("stop", None, 0)):
        result = lab.run_agent("a", AGENT, action, params, interval_ms=interval, python=python)
        assert result.rc == expected, (action, result.exit_reason, result.stderr[-2000:])
        assert not leaks([result.stdout, result.stderr], ODD_USER, ODD_PASSWORD)
    sessions = [s for s in lab.role_sessions() if s["role_arn"] == ROLE]
    assert len(sessions) == 3  # one AssumeRole per action
    sts_calls = lab.calls(node="a", service="sts")
    ec2_calls = lab.calls(node="a", service="ec2")
    assert len(sts_calls) == 3 and ec2_calls
    assert proxy.forwarded("a") == len(sts_calls) + len(ec2_calls)
    assert {r.user for r in proxy.records} == {ODD_USER}


@pytest.mark.parametrize("python", PYTHONS)
def test_a_cib_secret_missing_on_this_node(
    lab: Any, proxy: Any, ca_bundle: str, python: str
) -> None:
    """pacemaker-execd runs a stop with the placeholder ``lrm://`` when it cannot read the CIB
    secret here (it fails the other actions itself): the stop removes the address from the OS
    and succeeds; any other action, given it, is a 2 naming cibsecret."""
    good = https_params(ca_bundle, url(lab, "a", USER, PASSWORD))
    assert lab.run_agent("a", AGENT, "start", good, python=python).rc == 0
    missing = {**good, "proxy": "lrm://"}
    start = lab.run_agent("a", AGENT, "start", missing, python=python)
    assert start.rc == 2 and "cibsecret" in (start.exit_reason or ""), start.exit_reason
    stop = lab.run_agent("a", AGENT, "stop", missing, python=python)
    assert stop.rc == 0, (stop.exit_reason, stop.stderr[-2000:])
    assert not any(entry.startswith(f"{IP}/") for entry in node_addresses(lab, "a"))
