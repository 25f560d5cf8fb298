"""Authenticated proxies without the lab: no password in a log record (file, syslog, stderr) or
an exit reason whoever wrote the message; parameter errors that never echo it; the credentials
file's checks (2, naming the file, never its content); the URL botocore gets (it decodes the
percent-encoding back to the same user and password); a proxy's 407/403 as a 4 at once.
"""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path
from typing import Any

import pytest

import ocf_shim
from ipfailover.aws import proxy as proxy_mod
from ipfailover.aws.errors import is_transient, map_exception
from ipfailover.config.params import AwsSettings, parse_aws_settings
from ocf_shim import (
    OCF,
    ActionSpec,
    Agent,
    ArgsError,
    ConfigError,
    GenericError,
    Parameter,
    hide_userinfo,
    redact,
)

SECRET = "Sup3r-S3cret-61d4"
HOST = "proxy.example.com:3128"


def leaked(text: str, password: str = SECRET) -> bool:
    from urllib.parse import quote

    basic = base64.b64encode(f"user:{password}".encode()).decode()
    return any(form in text for form in (password, quote(password, safe=""), basic))


# -- the log and the exit reason hide every URL's user information -------------------------------


@pytest.mark.parametrize(
    "message",
    [
        f'Failed to connect to proxy URL: "http://user:{SECRET}@{HOST}"',
        f"ProxyError('Cannot connect to proxy.', http://user:{SECRET}@{HOST}/)",
        f"two: https://a:{SECRET}@h1 and http://b:{SECRET}@h2:1/x",
        f"raw slash http://user:{SECRET}/x@{HOST} end",
        f"raw at http://user:p@{SECRET}@{HOST} end",
        f"quoted 'http://user:{SECRET}@{HOST}'",
        f"<http://user:{SECRET}@{HOST}>",
        f"Traceback:\n  File x\nValueError: socks5h://user:{SECRET}@{HOST}",
    ],
)
def test_hide_userinfo(message: str) -> None:
    shown = hide_userinfo(message)
    assert SECRET not in shown
    assert "***@" in shown


@pytest.mark.parametrize(
    "message",
    ["no url here", "mail root@example.com", "http://host:3128/path", "a@b and c://d"],
)
def test_hide_userinfo_leaves_other_text(message: str) -> None:
    assert hide_userinfo(message) == message


@pytest.mark.parametrize(
    "value",
    [
        f"http://user:{SECRET}@{HOST}",
        f"http://user:{SECRET}/x@{HOST}",  # not a valid URL: still hidden
        f"http://user:{SECRET}#@{HOST}",
        f"http://user:p@{SECRET}@{HOST}",
        f"user:{SECRET}@{HOST}",  # no scheme
        f"  user:{SECRET}@{HOST}",
    ],
)
def test_redact_hides_the_password_of_any_url_like_value(value: str) -> None:
    assert not leaked(redact("proxy", value))


def test_redact_keeps_values_that_are_no_credentials() -> None:
    assert redact("tag", "owner=root@example") == "'owner=root@example'"


def sample_agent(reason: str) -> Agent:
    def fail(ctx: Any) -> int:
        ctx.log.debug("settings: proxy http://user:%s@%s", SECRET, HOST)
        ctx.log.info("a library said: %s", f"http://user:{SECRET}@{HOST} refused")
        raise GenericError(reason)

    return Agent(
        "leak-agent",
        "0.1",
        "A test agent",
        "An agent for the redaction tests.",
        [Parameter("proxy", "Proxy", "A proxy URL.")],
        [ActionSpec("start", 20), ActionSpec("stop", 20), ActionSpec("meta-data", 5)],
        {"start": fail, "stop": fail},
    )


def test_no_password_in_records_or_exit_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """stderr, HA_LOGFILE and syslog, at debug, with the password in the parameter, a debug
    record, an info record and the exit reason."""
    address = str(tmp_path / "devlog")
    logfile = tmp_path / "ha.log"
    monkeypatch.setattr("ocf_shim.log.SYSLOG_ADDRESS", address)
    environ = {
        "OCF_ROOT": "/usr/lib/ocf",
        "OCF_RESKEY_proxy": f"http://user:{SECRET}@{HOST}",
        "HA_debug": "1",
        "HA_LOGFILE": str(logfile),
        "HA_LOGFACILITY": "daemon",
    }
    agent = sample_agent(
        f'EC2 failed: Failed to connect to proxy URL: "http://user:{SECRET}@{HOST}"'
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        server.settimeout(5)
        rc = agent.main(["agent", "start"], environ)
        datagrams = []
        server.setblocking(False)
        while True:
            try:
                datagrams.append(server.recv(65536).decode())
            except BlockingIOError:
                break
    ocf_shim.get_log("ocf").close()
    err = capsys.readouterr().err
    log = logfile.read_text()
    assert rc == OCF.ERR_GENERIC
    assert len(datagrams) >= 3 and "DEBUG" in log  # every record went to both targets
    assert "ocf-exit-reason:EC2 failed" in err
    for text in (err, log, *datagrams):
        assert not leaked(text), text
        assert "***@" in text


def test_metadata_holds_no_value(capsys: pytest.CaptureFixture[str]) -> None:
    agent = sample_agent("x")
    assert agent.main(["agent", "meta-data"], {"OCF_RESKEY_proxy": f"http://u:{SECRET}@h"}) == 0
    assert SECRET not in capsys.readouterr().out


# -- parameter errors never echo the password ---------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        f"http://user:{SECRET}/x@{HOST}",
        f"http://user:{SECRET}#@{HOST}",
        f"http://user:{SECRET}?@{HOST}",
        f"http://user:p@{SECRET}@{HOST}",
        f"user:{SECRET}@{HOST}",
        f"ftp://user:{SECRET}@{HOST}",
        f"http://user:{SECRET}@proxy.example.com:99999",
        f"http://user:{SECRET}@pro xy:3128",
        f"http://user:{SECRET}\u00e9@{HOST}",
        f"http://user:{SECRET}%C3%A9@{HOST}",  # decodes to non-ASCII
        f"http://user:{SECRET}%0A@{HOST}",  # decodes to a newline
        f"http://us%3Aer:{SECRET}@{HOST}",  # a ':' in the user
        f"http://:{SECRET}@{HOST}",  # no user
        f"http://{SECRET}@{HOST}",  # no password: botocore would send nothing
        f"http://{SECRET}:@{HOST}",
    ],
)
def test_a_refused_proxy_never_shows_the_password(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_aws_settings({"proxy": value})
    assert not leaked(caught.value.reason), caught.value.reason


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"proxy_credentials_file": "/etc/p"}, "'proxy' is not"),
        ({"proxy": f"http://u:{SECRET}@{HOST}", "proxy_credentials_file": "/etc/p"}, "keep one"),
        ({"proxy": f"http://{HOST}", "proxy_credentials_file": "p"}, "absolute path"),
    ],
)
def test_credentials_file_parameter_errors(params: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_aws_settings(params)
    assert says in caught.value.reason
    assert not leaked(caught.value.reason)


def test_other_url_parameters_never_show_a_password() -> None:
    for name in ("endpoint_url", "sts_endpoint_url"):
        with pytest.raises(ConfigError) as caught:
            parse_aws_settings({name: f"https://user:{SECRET}@ec2.example.com"})
        assert not leaked(caught.value.reason), caught.value.reason


# -- the credentials file ------------------------------------------------------------------------


def credentials(tmp_path: Path, content: bytes, mode: int = 0o600, uid: int = 0) -> str:
    path = tmp_path / "proxy-credentials"
    path.write_bytes(content)
    os.chown(path, uid, 0)
    path.chmod(mode)
    return str(path)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


@needs_root
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"user:pass\n", ("user", "pass")),
        (b"user:pass\r\n", ("user", "pass")),
        (b"user:pass", ("user", "pass")),
        (b"dom\\svc@ha:p@ss:w/rd %#?~\n", ("dom\\svc@ha", "p@ss:w/rd %#?~")),
    ],
)
def test_read_credentials(tmp_path: Path, content: bytes, expected: tuple[str, str]) -> None:
    assert proxy_mod.read_credentials(credentials(tmp_path, content)) == expected


@needs_root
@pytest.mark.parametrize(
    ("content", "mode", "uid", "says"),
    [
        (b"user:" + SECRET.encode(), 0o644, 0, "mode 0644"),
        (b"user:" + SECRET.encode(), 0o604, 0, "mode 0604"),
        (b"user:" + SECRET.encode(), 0o620, 0, "mode 0620"),
        (b"user:" + SECRET.encode(), 0o600, 1000, "owned by uid 1000"),
        (SECRET.encode(), 0o600, 0, "one line user:password"),
        (b":" + SECRET.encode(), 0o600, 0, "one line user:password"),
        (b"user:" + SECRET.encode() + b"\nmore", 0o600, 0, "more than one line"),
        (b"user:" + SECRET.encode() + b"\t", 0o600, 0, "control character"),
        (b"user:\xff" + SECRET.encode(), 0o600, 0, "not UTF-8"),
        (b"user:" + SECRET.encode() * 1000, 0o600, 0, "larger than"),
        (b"user:\n", 0o600, 0, "must both be given"),
        ("user:\u00e9".encode() + SECRET.encode(), 0o600, 0, "printable ASCII"),
    ],
)
def test_unsafe_or_malformed_credentials_are_a_2_naming_the_file(
    tmp_path: Path, content: bytes, mode: int, uid: int, says: str
) -> None:
    path = credentials(tmp_path, content, mode, uid)
    with pytest.raises(ArgsError) as caught:
        proxy_mod.read_credentials(path)
    assert caught.value.rc == OCF.ERR_ARGS
    assert says in caught.value.reason and path in caught.value.reason
    assert SECRET not in caught.value.reason


@needs_root
def test_credentials_file_that_is_missing_a_directory_or_a_symlink(tmp_path: Path) -> None:
    with pytest.raises(ArgsError, match="does not exist"):
        proxy_mod.read_credentials(str(tmp_path / "absent"))
    with pytest.raises(ArgsError, match="not a regular file"):
        proxy_mod.read_credentials(str(tmp_path))
    target = credentials(tmp_path, b"user:pass\n")
    link = tmp_path / "link"
    link.symlink_to(target)  # the file it names is what is checked
    assert proxy_mod.read_credentials(str(link)) == ("user", "pass")


@needs_root
@pytest.mark.parametrize(
    ("user", "password"),
    [("user", "pass"), ("dom\\svc@ha", "p@ss:w/rd %#?&=+~"), ("u", "p")],
)
def test_botocore_gets_back_the_same_user_and_password(
    tmp_path: Path, user: str, password: str
) -> None:
    """The URL of proxy_url() read by botocore's own proxy configuration: the Basic
    credentials it sends are the file's user and password, as they are."""
    from botocore.httpsession import ProxyConfiguration

    path = credentials(tmp_path, f"{user}:{password}\n".encode())
    settings = AwsSettings(proxy=f"http://{HOST}", proxy_credentials_file=path)
    url = proxy_mod.proxy_url(settings)
    assert url is not None and url.endswith(f"@{HOST}")
    headers = ProxyConfiguration().proxy_headers_for(url)
    scheme, _, token = headers["Proxy-Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(token).decode() == f"{user}:{password}"


def test_percent_encoded_parameter_decoded_by_botocore() -> None:
    from botocore.httpsession import ProxyConfiguration

    url = parse_aws_settings({"proxy": f"http://dom%5Csvc%40ha:p%40ss%3Aw%2Frd%20%25@{HOST}"}).proxy
    assert url is not None
    token = ProxyConfiguration().proxy_headers_for(url)["Proxy-Authorization"].split()[1]
    assert base64.b64decode(token).decode() == "dom\\svc@ha:p@ss:w/rd %"


def test_proxy_url_without_credentials_file_is_the_parameter() -> None:
    assert proxy_mod.proxy_url(AwsSettings()) is None
    url = f"http://u:{SECRET}@{HOST}"
    assert proxy_mod.proxy_url(AwsSettings(proxy=url)) == url


# -- a proxy's refusal ---------------------------------------------------------------------------


def tunnel_error(status: str) -> BaseException:
    """What botocore raises when the proxy answers CONNECT with ``status``, built as botocore
    and urllib3 build it (the URL as botocore masks it)."""
    from botocore.exceptions import ProxyConnectionError
    from urllib3.exceptions import ProxyError

    cause = OSError(f"Tunnel connection failed: {status}")
    inner = ProxyError("Cannot connect to proxy.", cause)
    return ProxyConnectionError(proxy_url=f"http://***:***@{HOST}", error=inner)


@pytest.mark.parametrize(
    ("status", "says"),
    [("407 Proxy Authentication Required", "refused the credentials"), ("403 Forbidden", "rules")],
)
def test_a_proxy_refusal_is_a_4_and_not_retried(status: str, says: str) -> None:
    exc = tunnel_error(status)
    assert not is_transient(exc)
    error = map_exception(exc, "EC2 DescribeNetworkInterfaces")
    assert error.rc == OCF.ERR_PERM
    assert says in error.reason and "EC2 DescribeNetworkInterfaces" in error.reason


@pytest.mark.parametrize("status", ["502 Bad Gateway", "503 Service Unavailable"])
def test_other_tunnel_failures_stay_transient(status: str) -> None:
    exc = tunnel_error(status)
    assert is_transient(exc)
    assert proxy_mod.tunnel_status(exc) is None


def test_a_407_answer_to_an_http_request_is_a_4() -> None:
    """An http endpoint: the proxy's 407 is the response itself (botocore: ClientError)."""
    import botocore.session
    from botocore.stub import Stubber

    from ipfailover.aws.client import Api
    from ocf_shim import Deadline

    client = botocore.session.Session().create_client(
        "ec2", region_name="eu-central-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    stubber = Stubber(client)
    stubber.add_client_error("describe_vpcs", "407", "Proxy Authentication Required", 407)
    slept: list[float] = []
    with stubber:
        api = Api(client, Deadline(20), sleep=slept.append)
        with pytest.raises(ocf_shim.PermError, match="407"):
            api.call("DescribeVpcs")
    assert api.calls == 1 and slept == []


# -- a CIB secret pacemaker-execd could not read ------------------------------------------------


def test_an_unread_cib_secret_is_a_2_when_the_client_is_made() -> None:
    """execd runs only a stop with the placeholder: the syntax check lets it through (a 6
    would fail the stop, and get the node fenced), the client refuses it with a 2 naming
    cibsecret (a stop turns that into a warning: its AWS part is best effort)."""
    settings = parse_aws_settings({"proxy": "lrm://"})
    with pytest.raises(ArgsError, match="cibsecret sync"):
        proxy_mod.proxy_url(settings)
