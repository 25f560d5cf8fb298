"""The validators of single parameter values (ipfailover.config.syntax, and the IPv6 gateway,
integers and AWS settings of ipfailover.config.params): what each accepts and refuses, with
which message.

They are written with ``re`` and ``ipaddress``. Where ``ipaddress`` differs between Python
versions (octets with a leading zero, IPv4-mapped addresses shown and classified by their IPv4
address from 3.13 on), the rule is pinned here and checked under every interpreter of the
compatibility matrix found on the machine. What the kernel, AWS and botocore accept (issue 12)
is pinned by tests/test_params_accept.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable, Union

import pytest

from compat.__main__ import find_interpreter
from ipfailover.config import params, syntax
from ocf_shim import ConfigError

ROOT = Path(__file__).resolve().parent.parent
Value = Union[str, int, bool, None]


def outcome(function: Callable[..., object], *args: object) -> object:
    """The validator's result, or its message (every refusal is a ConfigError, exit 6)."""
    try:
        return function(*args)
    except ConfigError as exc:
        error = exc
    assert error.rc == 6
    return str(error)


def refused(name: str, value: object, what: str) -> str:
    return f"parameter {name!r}: {syntax.quote(value)} is not {what}"


NOT_IP = "an IPv4 or IPv6 address"

# =============================================================================================
# Addresses
# =============================================================================================

# value -> the canonical text, or the message. The version pins: leading zeros are refused on
# every Python (3.9.0-3.9.4 read them as decimal); an IPv4-mapped address is written in hex and
# is not a loopback, link-local... address (3.13 writes ::ffff:1.2.3.4 and classifies it by its
# IPv4 address); zones are read as Python 3.9 reads them.
ADDRESSES = {
    "10.0.1.50": "10.0.1.50",
    " 1.2.3.4\n": "1.2.3.4",
    " 2001:DB8:0:1:0:0:0:50 ": "2001:db8:0:1::50",
    "1:0:0:2:0:0:3:4": "1::2:0:0:3:4",
    "::1:2:3:4:5:6:7": "0:1:2:3:4:5:6:7",
    "1:2:3:4:5:6:1.2.3.4": "1:2:3:4:5:6:102:304",
    "::1.2.3.4": "::102:304",
    "::1:ffff:1.2.3.4": "::1:ffff:102:304",
    "240.0.0.0": "240.0.0.0",
    "fec0::": "fec0::",
    "0.0.0.0": "parameter 'ip': 0.0.0.0 cannot be a service address",
    "127.255.255.255": "parameter 'ip': 127.255.255.255 cannot be a service address",
    "224.0.0.0": "parameter 'ip': 224.0.0.0 cannot be a service address",
    "0:0:0:0:0:0:0:1": "parameter 'ip': ::1 cannot be a service address",
    "ff02::1%eth0": "parameter 'ip': ff02::1%eth0 cannot be a service address",
    "169.254.0.0": "parameter 'ip': 169.254.0.0 is link-local; use a routable address",
    "FE80::1": "parameter 'ip': fe80::1 is link-local; use a routable address",
    "fe80::1%eth0": "parameter 'ip': fe80::1%eth0 is link-local; use a routable address",
    "2001:db8::1%0": "parameter 'ip': '2001:db8::1%0' has a zone; give the address alone",
    "::ffff:1.2.3.4%eth0": "parameter 'ip': '::ffff:1.2.3.4%eth0' has a zone; give the address "
    "alone",
    "::ffff:1.2.3.4": "parameter 'ip': ::ffff:102:304 is IPv4-mapped; give the IPv4 address "
    "itself",
    "::ffff:127.0.0.1": "parameter 'ip': ::ffff:7f00:1 is IPv4-mapped; give the IPv4 address "
    "itself",
    "::ffff:0.0.0.0": "parameter 'ip': ::ffff:0:0 is IPv4-mapped; give the IPv4 address itself",
    "255.255.255.255": "parameter 'ip': 255.255.255.255 is the broadcast address",
    **{
        text: refused("ip", text, NOT_IP)
        for text in (
            "10.0.0.01", "01.2.3.4", "1.2.3.00", "::ffff:01.2.3.4", "::1.2.3.04", "256.1.1.1",
            "1.2.3", "1.2.3.4/32", "1.2.3.4%eth0", "\u0661.2.3.4", "0x1.2.3.4", "", "1::2::3",
            "1:2:3:4:5:6:7:8:9", "12345::", "\uff46e80::1", "fe80::1%", "fe80::1%a%b",
            "fe80::1/64", "1:2:3:4:5:6:7:1.2.3.4", "::256.1.1.1",
        )
    },
}  # fmt: skip
# value -> the canonical text, or None for a refusal (one message for all)
GATEWAYS: dict[Value, object] = {
    "": None, None: None, "fe80::1": "fe80::1", " FE80::1 ": "fe80::1",
    "2001:db8::1": "2001:db8::1", "::ffff:10.0.0.1": "::ffff:a00:1",
    "::ffff:127.0.0.1": "::ffff:7f00:1",
    **dict.fromkeys(("fe80::1%eth0", "::1", "::", "ff02::2", "10.0.0.1", "fe80::1 %eth0",
                     "fe80::g", "fe80::01.2.3.4", 6, True), "refused"),
}  # fmt: skip


@pytest.mark.parametrize(("value", "expected"), ADDRESSES.items())
def test_parse_ip(value: str, expected: str) -> None:
    assert outcome(syntax.parse_ip, "ip", value) == expected


@pytest.mark.parametrize(("value", "expected"), GATEWAYS.items())
def test_parse_ipv6_gateway(value: Value, expected: object) -> None:
    if expected == "refused":
        expected = (
            f"parameter 'ipv6_gateway': {syntax.quote(value)} is not a unicast IPv6 address "
            "(e.g. the router's link-local fe80::... address)"
        )
    assert outcome(params.parse_ipv6_gateway, value) == expected


def test_parse_ip_returns_text_and_its_version() -> None:
    ip = syntax.parse_ip("ip", "2001:0db8::0050")
    assert ip == "2001:db8::50"
    assert syntax.address_version(ip) == 6
    assert syntax.address_version(syntax.parse_ip("ip", "10.1.2.3")) == 4
    assert str(syntax.ip_object(ip)) == "2001:db8::50"
    with pytest.raises(ValueError, match="not an IP address"):
        syntax.address_version("eth0")


PIN_SCRIPT = """
import json, sys
from ipfailover.config import params, syntax
from ocf_shim import ConfigError
def outcome(function, *args):
    try:
        return function(*args)
    except ConfigError as exc:
        return str(exc)
values = json.loads(sys.argv[1])
print(json.dumps([[outcome(syntax.parse_ip, "ip", v), outcome(params.parse_ipv6_gateway, v),
                   outcome(syntax.parse_url, "u", "http://[" + v + "]/")] for v in values]))
"""


@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_addresses_are_read_alike_on_every_python(version: str) -> None:
    python = find_interpreter(version)
    if python is None:
        pytest.skip(f"Python {version} is not available here")
    values = [v for v in ADDRESSES if v] + ["::ffff:169.254.1.1", "::ffff:224.0.0.1"]
    args = [json.dumps(values)]
    env = {"PYTHONPATH": str(ROOT / "lib"), "PATH": "/usr/bin:/bin"}
    here, there = (
        subprocess.run(
            [str(py), "-c", PIN_SCRIPT, *args], env=env, capture_output=True, text=True, check=True
        ).stdout
        for py in (sys.executable, python)
    )
    assert json.loads(there) == json.loads(here)


# =============================================================================================
# Ids, tags, interfaces
# =============================================================================================


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("rtb-0123abcd", ("rtb-0123abcd",)),
        ("rtb-0123456789abcdef0, rtb-0123abcd", ("rtb-0123456789abcdef0", "rtb-0123abcd")),
        ("rtb-0123abcd\u3000rtb-0123abcd", ("rtb-0123abcd",)),
        ("rtb-0123abcd\x85rtb-0123abce", ("rtb-0123abcd", "rtb-0123abce")),
        (",,, ,", "parameter 'routing_table' is empty"),
        (",".join(["rtb-0123abcd"] * 201),
         "parameter 'routing_table' lists 201 ids; at most 200 are supported"),
        *[(v, f"parameter 'routing_table': {syntax.quote(v.strip())} is not a rtb- id (expected "
              "rtb- followed by 8 or 17 hexadecimal digits)")
          for v in (" rtb-0123ABCD", "rtb-0123abc", "rtb-0123abcde", "eni-0123abcd",
                    "rtb-\u0661123abcd", "rtb-0123abcd\u200brtb-0123abcd")],
    ],
)  # fmt: skip
def test_parse_id_list(value: str, expected: object) -> None:
    assert outcome(syntax.parse_id_list, "routing_table", value, "rtb") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("aws:cloudformation:stack-name=s", ("aws:cloudformation:stack-name", "s")),
        (" k = v ", ("k", "v")), ("k==v", ("k", "=v")), ("k=", ("k", "")),
        ("\u3000k=v", ("k", "v")), ("k=v=w", ("k", "v=w")), ("a" * 128 + "=v", ("a" * 128, "v")),
        *[(v, refused("tag", v, "of the form Key=Value"))
          for v in ("k=v,w", "=v", "k", "k,=v", "a" * 129 + "=v", "k=" + "v" * 257)],
    ],
)  # fmt: skip
def test_parse_tag(value: str, expected: object) -> None:
    assert outcome(syntax.parse_tag, "tag", value) == expected


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        *[(v, True) for v in ("eth0", "a" * 15, "\uff45th0", "_eth", "e.", "br-1@x",
                              "eth\u0661", "x\xe9", "\xe9" * 7, "a;b", "\udcff", "...", "-x")],
        *[(v, False) for v in ("a" * 16, "eth0\n", ".", "..", "eth0:1", "", "x\xe0", "\xe9" * 8,
                               "a\xa0", "a/b", "a b", ":1")],
    ],
)  # fmt: skip
def test_parse_interface(value: str, ok: bool) -> None:
    """The kernel's dev_valid_name() on the UTF-8 bytes ("à" ends in 0xa0, a kernel blank);
    the messages are tests/test_params_accept.py's."""
    assert (outcome(syntax.parse_interface, "interface", value) == value) is ok


# =============================================================================================
# AWS settings, integers
# =============================================================================================

ACCEPTED = {
    "region": ["eu-central-1", "us-gov-west-1", "us-isob-east-1", "eusc-de-east-1",
               "eu-" + "a" * 57 + "-1", "us-gov-west-123"],
    "profile": ["default", "d\xe9faut", "my profile", "a/b", "a\u0301"],
    "role_arn": ["arn:aws:iam::123456789012:role/name",
                 "arn:aws-us-gov:iam::123456789012:role/path/name+=,.@-_",
                 "arn:aws-iso-b:iam::123456789012:role/a!b/c~d/ha",
                 "arn:aws:iam::123456789012:role/a//ha",
                 "arn:aws:iam::123456789012:role/" + "p" * 510 + "/ha"],
    "ca_bundle": ["/etc/ssl/ca.pem", "/", "/etc/ssl/Corp CA.pem", "/" + "\xe9" * 2047],
    "endpoint_url": ["https://ec2.eu-central-1.amazonaws.com", "http://[::1]:8080/x",
                     "http://h:00080/p", " http://a ", "http://a/", "http://[::]", "http://a.b.",
                     "http://" + "b" * 63 + ".c"],
    # (user without a password: refused, tests/test_proxy_redaction.py)
    "proxy": ["http://proxy:3128", "http://u:p%40ss@proxy:3128", "https://u!$&'()*+,;=:~@h/p"],
}  # fmt: skip
REFUSED = {
    "region": ["EU-central-1", "eu-central-\u0661", "eu--1", "e-a-1",
               "eu-central-1-2", "eu-" + "a" * 59 + "-1", "ab-c-1234", "a-b-1"],
    "profile": ["prof\n", " p", "p "],
    "role_arn": ["arn:aws:iam::12345678901:role/name", "arn:aws:iam::123456789012:role/",
                 "arn:aws:iam::123456789012:role/" + "a" * 65,
                 "arn:aws:iam::123456789012:role//ha", "arn:aws:iam::123456789012:role/a b/ha",
                 "arn:aws:iam::123456789012:role/" + "p" * 511 + "/ha", "arn:aws-:iam::1:role/h",
                 "arn:aws--cn:iam::123456789012:role/ha", "arn:aws:iam::123456789012:user/n"],
    "ca_bundle": ["relative/path", "/" + "\xe9" * 2048, "/a\u2028b"],
    "endpoint_url": ["http://[1.2.3.4]", "http://[::1]:0", "http://h:65536", "https://-a",
                     "http://a..b", "http://a" + "b" * 252, "http://[fe80::1%25eth0]",
                     "HTTP://a", "http://a?x", "http://[]", "http://a:", "http://u@h",
                     "http://a.-b.c", "http://[::ffff:01.2.3.4]"],
    "proxy": ["http://u:p%4@proxy", "http://u:p@ss@proxy", "http://@proxy"],
}  # fmt: skip
MESSAGES = {
    "region": "is not an AWS region name",
    "profile": "is not a profile name (no blanks around it)",
    "role_arn": "is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
    "ca_bundle": "is not an absolute path",
    "endpoint_url": "is not an http(s) URL",
    "proxy": "is not an http(s) URL (http://[user:password@]host[:port]; '@', ':' or '/' in a "
    "password as %40, %3A, %2F)",
}


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, vs in ACCEPTED.items() for v in vs])
def test_aws_settings_accepted(name: str, value: str) -> None:
    settings = params.parse_aws_settings({name: value})
    assert getattr(settings, name) == (value.strip() if name.endswith("url") else value)


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, vs in REFUSED.items() for v in vs])
def test_aws_settings_refused(name: str, value: str) -> None:
    shown = syntax.quote(value) if name not in ("proxy", "endpoint_url") else None
    message = outcome(params.parse_aws_settings, {name: value})
    assert isinstance(message, str)
    assert message.startswith(f"parameter {name!r}: ")
    assert message.endswith(MESSAGES[name])
    if shown is not None:
        assert shown in message


def test_url_messages_never_show_a_password() -> None:
    message = outcome(syntax.parse_proxy_url, "proxy", "http://u:secret@ss@proxy")
    assert isinstance(message, str)
    assert "secret" not in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("+5", 5), ("-12", -12), (" 12 ", 12), ("\u300012\n", 12), ("", None), (None, None),
     ("123456789012", 123456789012), (5, 5),
     *[(v, f"parameter 'n' must be an integer, got {syntax.quote(v)}")
       for v in ("\u0661", "\xb2", "1_000", "1234567890123", "+", "-", "1.0", "0x10", True)]],
)  # fmt: skip
def test_integer(value: Value, expected: object) -> None:
    assert outcome(params.integer, {"n": value}, "n") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("", True), (False, False), ("no", False), ("YES", True), ("1", True),
     ("0", False), ("maybe", "parameter 'f' must be a boolean, got 'maybe'")],
)  # fmt: skip
def test_flag(value: Value, expected: object) -> None:
    assert outcome(params.flag, {"f": value}, "f", True) == expected


# =============================================================================================
# Cheap to import
# =============================================================================================


def test_importing_the_validators_loads_neither_re_nor_ipaddress() -> None:
    """They are imported when a value is checked: meta-data needs neither."""
    code = (
        "import sys\n"
        "import ipfailover.config.params, ipfailover.config.syntax\n"
        "print(' '.join(sorted(m for m in ('re', 'ipaddress', 'dataclasses', 'typing')"
        " if m in sys.modules)))\n"
    )
    env = {"PYTHONPATH": str(ROOT / "lib"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == []
