"""The hand-written checks of ipfailover.params and ipfailover.ipsyntax against the reference.

params.py used to check values with ``re`` and ``ipaddress``; both cost more to import than the
rest of a syntax check, so the checks are now spelled out by hand. The former implementation is
kept below as the oracle: hypothesis draws hostile text (other scripts' digits and letters,
Unicode blanks, ``%``, ``:``, ``.``, brackets, leading zeros, long and empty strings) and every
validator must accept and refuse the same values, with the same results and messages.
Addresses are also compared with :func:`ipaddress.ip_address` directly.

Where the accepted set changed on purpose (issue 12: what the kernel and AWS accept, no less and
no more), the oracle says the new rule with regular expressions: interface names as the
kernel's dev_valid_name(), tag keys beginning with ``aws:``, regions of any generic shape, IAM's
role path and name, any profile name, any absolute ca_bundle path, host names as botocore checks
them, and ``user:password@`` in a proxy URL.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipfailover import ipsyntax, params
from ocf_shim import ConfigError, parse_bool, redact

ROOT = Path(__file__).resolve().parent.parent

# =============================================================================================
# The reference: params.py as it was (regular expressions and ipaddress), and
# eni.parse_ipv6_gateway. Only renamed (old_...), otherwise unchanged.
# =============================================================================================

OldIPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Value = Union[str, int, bool, None]

# dev_valid_name() of net/core/dev.c, on the UTF-8 bytes: no "/", ":" or byte the kernel's
# isspace() takes (lib/ctype.c: \t \n \v \f \r, space and 0xa0), 1 to 15 bytes, not . or ..
_INTERFACE_RE = re.compile(rb"(?!\.\.?\Z)[^/:\t\n\v\f\r \xa0]{1,15}\Z")
_ARN_RE = re.compile(
    r"^arn:aws(?:-[a-z]+)*:iam::[0-9]{12}:role(?P<path>/(?:[\x21-\x7e]+/)?)[A-Za-z0-9_+=,.@-]{1,64}$"
)
_REGION_RE = re.compile(r"^[a-z]{2,}(-[a-z]+)+-[0-9]{1,3}$")
# botocore.utils.is_valid_endpoint_url's host name (ASCII), at most 255 characters
_HOST = r"(?:(?!-)[A-Za-z0-9-]{1,63}(?<!-)\.)*(?!-)[A-Za-z0-9-]{1,63}(?<!-)\.?"
_URL_RE = re.compile(
    rf"https?://(?P<userinfo>(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{{2}})+@)?"
    rf"(?P<host>{_HOST}|\[[0-9A-Fa-f:.]{{2,45}}\])"
    r"(?::(?P<port>[0-9]{1,5}))?(?:/[A-Za-z0-9_.~%/-]*)?"
)
_TAG_RE = re.compile(r"^([^=\s,][^=,]{0,127})=([^,]{0,256})$")

quote = params.quote  # unchanged


def old_parse_ip(name: str, value: str) -> OldIPAddress:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ConfigError(
            f"parameter {name!r}: {quote(value)} is not an IPv4 or IPv6 address"
        ) from None
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        raise ConfigError(f"parameter {name!r}: {address} cannot be a service address")
    if address.is_link_local:
        raise ConfigError(f"parameter {name!r}: {address} is link-local; use a routable address")
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        raise ConfigError(f"parameter {name!r}: {quote(value)} has a zone; give the address alone")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise ConfigError(
            f"parameter {name!r}: {address} is IPv4-mapped; give the IPv4 address itself"
        )
    if address == ipaddress.IPv4Address("255.255.255.255"):
        raise ConfigError(f"parameter {name!r}: {address} is the broadcast address")
    return address


def old_parse_id(name: str, value: str, prefix: str) -> str:
    text = value.strip()
    if not re.fullmatch(re.escape(prefix) + r"-(?:[0-9a-f]{8}|[0-9a-f]{17})", text):
        raise ConfigError(
            f"parameter {name!r}: {quote(value)} is not a {prefix}- id "
            f"(expected {prefix}- followed by 8 or 17 hexadecimal digits)"
        )
    return text


def old_parse_id_list(name: str, value: str, prefix: str) -> tuple[str, ...]:
    items = [item for item in re.split(r"[,\s]+", value) if item]
    if not items:
        raise ConfigError(f"parameter {name!r} is empty")
    if len(items) > 50:
        raise ConfigError(f"parameter {name!r} lists {len(items)} ids; at most 50 are supported")
    return tuple(dict.fromkeys(old_parse_id(name, item, prefix) for item in items))


def old_parse_tag(name: str, value: str) -> tuple[str, str]:
    match = _TAG_RE.fullmatch(value.strip())
    if not match:
        raise ConfigError(f"parameter {name!r}: {quote(value)} is not of the form Key=Value")
    return match.group(1).strip(), match.group(2).strip()


def old_parse_interface(name: str, value: str) -> str:
    """The kernel's rule; the messages (alias label, too long, other) are checked apart."""
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = b""
    if not _INTERFACE_RE.match(raw):
        raise ConfigError(f"parameter {name!r}: {quote(value)} is not a network interface name")
    return value


def old_parse_url(name: str, value: str, userinfo: bool = False) -> str:
    text = value.strip()
    match = _URL_RE.fullmatch(text)
    port = match.group("port") if match else None
    host = match.group("host") if match else ""
    ok = match is not None and (port is None or 1 <= int(port) <= 65535)
    ok = ok and len(host) <= 255 and (userinfo or not match.group("userinfo"))
    if ok and host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            ok = False
    if not ok and userinfo:
        raise ConfigError(
            f"parameter {name!r}: {redact(name, value)} is not an http(s) URL "
            "(http://[user:password@]host[:port]; '@', ':' or '/' in a password as %40, %3A, %2F)"
        )
    if not ok:
        raise ConfigError(f"parameter {name!r}: {redact(name, value)} is not an http(s) URL")
    return text


def old_integer(params: Mapping[str, Value], name: str) -> Optional[int]:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ConfigError(f"parameter {name!r} must be an integer, got {quote(value)}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,12}", text):
        raise ConfigError(f"parameter {name!r} must be an integer, got {quote(value)}")
    return int(text)


def old_flag(params: Mapping[str, Value], name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    try:
        return parse_bool(str(value))
    except ValueError:
        raise ConfigError(f"parameter {name!r} must be a boolean, got {quote(value)}") from None


@dataclass(frozen=True)
class AwsSettings:
    """The former dataclass (compared with the plain class by fields, repr and hash)."""

    region: Optional[str] = None
    profile: Optional[str] = None
    role_arn: Optional[str] = None
    endpoint_url: Optional[str] = None
    sts_endpoint_url: Optional[str] = None
    proxy: Optional[str] = None
    ca_bundle: Optional[str] = None


def _text(params: Mapping[str, Value], name: str) -> Optional[str]:
    value = params.get(name)
    if value is None or value == "":
        return None
    return str(value)


def old_parse_aws_settings(params: Mapping[str, Value]) -> AwsSettings:
    region = _text(params, "region")
    if region is not None and not (_REGION_RE.fullmatch(region) and len(region) <= 63):
        raise ConfigError(f"parameter 'region': {quote(region)} is not an AWS region name")
    profile = _text(params, "profile")
    if profile is not None and not (profile.isprintable() and profile == profile.strip()):
        raise ConfigError(
            f"parameter 'profile': {quote(profile)} is not a profile name (no blanks around it)"
        )
    role_arn = _text(params, "role_arn")
    arn = _ARN_RE.fullmatch(role_arn) if role_arn is not None else None
    if role_arn is not None and not (arn and len(arn.group("path")) <= 512):
        raise ConfigError(
            f"parameter 'role_arn': {quote(role_arn)} is not an IAM role ARN "
            "(arn:aws:iam::<account>:role/<name>)"
        )
    endpoint = _text(params, "endpoint_url")
    sts_endpoint = _text(params, "sts_endpoint_url")
    proxy = _text(params, "proxy")
    ca_bundle = _text(params, "ca_bundle")
    if ca_bundle is not None and not (
        re.fullmatch(r"/.*", ca_bundle, re.DOTALL)
        and ca_bundle.isprintable()
        and len(ca_bundle.encode("utf-8", "surrogateescape")) <= 4095
    ):
        raise ConfigError(f"parameter 'ca_bundle': {quote(ca_bundle)} is not an absolute path")
    return AwsSettings(
        region=region,
        profile=profile,
        role_arn=role_arn,
        endpoint_url=old_parse_url("endpoint_url", endpoint) if endpoint else None,
        sts_endpoint_url=old_parse_url("sts_endpoint_url", sts_endpoint) if sts_endpoint else None,
        proxy=old_parse_url("proxy", proxy, userinfo=True) if proxy else None,
        ca_bundle=ca_bundle,
    )


def old_parse_ipv6_gateway(value: Value) -> Optional[str]:
    """eni.parse_ipv6_gateway as it was."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        # No "%zone": the link is the ENI's, whatever it is called.
        address = ipaddress.ip_address(text) if "%" not in text else None
    except ValueError:
        address = None
    if (
        not isinstance(address, ipaddress.IPv6Address)
        or address.is_multicast
        or address.is_unspecified
        or address.is_loopback
    ):
        raise ConfigError(
            f"parameter 'ipv6_gateway': {quote(value)} is not a unicast IPv6 address "
            "(e.g. the router's link-local fe80::... address)"
        )
    return str(address)


# =============================================================================================
# Comparing
# =============================================================================================


def outcome(function: Callable[..., object], *args: object) -> tuple[object, ...]:
    """What a validator does: its result, or the error's class, exit code and message."""
    try:
        result = function(*args)
    except ConfigError as exc:
        return ("error", type(exc).__name__, exc.rc, str(exc))
    if isinstance(result, (AwsSettings, params.AwsSettings)):
        result = tuple(getattr(result, f) for f in params.AwsSettings.__slots__)
    return ("ok", result)


def old_parse_ip_text(name: str, value: str) -> str:
    return str(old_parse_ip(name, value))


def reference_address(text: str) -> Optional[tuple[int, int, str, str]]:
    """What parse_address must return, by ipaddress."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        scope = address.scope_id or ""
        plain = str(address).partition("%")[0]
        return 6, int(address), plain, scope
    return 4, int(address), str(address), ""


def check_address(text: str) -> None:
    """parse_address and the category helpers agree with ipaddress; parse_ip and
    parse_ipv6_gateway with the old code; a bracketed URL host with the old parse_url."""
    got = ipsyntax.parse_address(text)
    assert got == reference_address(text), text
    if got is not None:
        version, value, _, _ = got
        address = ipaddress.ip_address(text)
        assert ipsyntax.is_unspecified(version, value) == address.is_unspecified
        assert ipsyntax.is_loopback(version, value) == address.is_loopback
        assert ipsyntax.is_multicast(version, value) == address.is_multicast
        assert ipsyntax.is_link_local(version, value) == address.is_link_local
        mapped = getattr(address, "ipv4_mapped", None)
        assert ipsyntax.ipv4_mapped(version, value) == (None if mapped is None else int(mapped))
        assert ipsyntax.is_broadcast(version, value) == (
            address == ipaddress.IPv4Address("255.255.255.255")
        )
        assert params.address_version(got[2]) == address.version
    assert outcome(params.parse_ip, "ip", text) == outcome(old_parse_ip_text, "ip", text)
    assert outcome(params.parse_ipv6_gateway, text) == outcome(old_parse_ipv6_gateway, text)
    for url in (f"http://[{text}]", f"https://[{text}]:8443/x"):
        assert outcome(params.parse_url, "proxy", url) == outcome(old_parse_url, "proxy", url)


# =============================================================================================
# Drawn text
# =============================================================================================

# Characters that have tripped such checks: other scripts' digits and numbers (isdigit,
# isnumeric, isdecimal differ), letters outside ASCII (some lower-case to ASCII), blanks that
# str.split knows and some it does not, controls, a lone surrogate, and the punctuation the
# grammars use.
HOSTILE = [
    " ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u1680", "\u2003",
    "\u2028", "\u3000", "\u200b", "\ufeff", "\x00", "\x7f", "\ud800",
    "\u0663", "\uff10", "\uff11", "\xb2", "\xbd", "\u216b", "\U0001d7d8", "\u07c0", "\u0e53",
    "\xe9", "\xdf", "\u01c5", "\uff46", "\uff21", "\u212a", "\u0130", "\u0131", "\u017f",
    "\xb5", "\xaa", "\u0301", "\u00b7",
    "_", "%", ":", ".", "[", "]", "/", "-", "=", ",", "@", "+", "~", "*", "\\", "'", '"', "#",
    "?", "&", "$", ";",
]  # fmt: skip
ASCII = [chr(c) for c in range(0x20, 0x7F)]


def joined(tokens: list[str], max_size: int = 12) -> st.SearchStrategy[str]:
    """Text made of ``tokens``, hostile characters and any character at all."""
    piece = st.one_of(
        st.sampled_from(tokens),
        st.sampled_from(tokens),
        st.sampled_from(HOSTILE),
        st.sampled_from(ASCII),
        st.characters(),
    )
    return st.lists(piece, max_size=max_size).map("".join)


def long_text(tokens: list[str]) -> st.SearchStrategy[str]:
    """Long runs of one token, around the length limits."""
    return st.builds(
        lambda head, token, count, tail: head + token * count + tail,
        st.sampled_from(["", *tokens]),
        st.sampled_from(tokens),
        st.integers(0, 1100),
        st.sampled_from(["", *tokens]),
    )


IP_TOKENS = [
    "0", "1", "9", "00", "01", "001", "10", "127", "169", "254", "255", "256", "999", "1000",
    "a", "F", "fe80", "FEBF", "fec0", "ff02", "ffff", "FFFF", "0000", "00000", "12345",
    ":", ":", "::", ":::", ".", ".", "%", "%eth0", "%1", "/", "/64",
    "1.2.3.4", "0.0.0.0", "255.255.255.255", "169.254.1.1", "127.0.0.1", "224.0.0.1",
    "::ffff:", "::1", "2001:db8::", "2001:0db8:0000:0000:0000:0000:0000:0001",
]  # fmt: skip

SPECIAL_V4 = [0, 0x7F000001, 0xA9FE0101, 0xA9FF0000, 0xE0000001, 0xEFFFFFFF, 0xF0000000]
SPECIAL_V6 = [0, 1, 2, 0xFFFF << 32, (0xFFFF << 32) | 0x7F000001, 0xFFFE << 32]


@st.composite
def ipv4_values(draw: st.DrawFn) -> int:
    return draw(
        st.one_of(
            st.integers(0, 2**32 - 1),
            st.sampled_from([*SPECIAL_V4, 2**32 - 1]),
            st.builds(lambda top, low: top << 24 | low, st.sampled_from([0, 127, 169, 224, 255]),
                      st.integers(0, 2**24 - 1)),
        )
    )  # fmt: skip


@st.composite
def ipv6_values(draw: st.DrawFn) -> int:
    groups = draw(
        st.lists(
            st.one_of(st.just(0), st.just(0), st.integers(0, 0xFFFF), st.sampled_from(
                [1, 0xFFFF, 0xFE80, 0xFEBF, 0xFEC0, 0xFF00, 0xFF02, 0x2001, 0xDB8])),
            min_size=8, max_size=8,
        )
    )  # fmt: skip
    value = 0
    for group in groups:
        value = value << 16 | group
    return draw(st.one_of(st.just(value), st.sampled_from(SPECIAL_V6)))


@st.composite
def ipv4_text(draw: st.DrawFn, value: int) -> str:
    octets = [value >> shift & 255 for shift in (24, 16, 8, 0)]
    # Mostly canonical; sometimes a leading zero or a wider spelling.
    texts = [
        draw(st.sampled_from([str(o), str(o), str(o), f"0{o}", f"{o:03d}", f"{o:x}"]))
        for o in octets
    ]
    return ".".join(texts)


@st.composite
def ipv6_text(draw: st.DrawFn) -> str:
    """Any spelling of an IPv6 address: zero padding, case, a "::" over any run of zero
    groups (or none, or one that is not there), an IPv4 tail, a scope id."""
    value = draw(ipv6_values())
    groups = [value >> shift & 0xFFFF for shift in range(112, -16, -16)]
    texts = []
    for group in groups:
        digits = f"{group:x}"
        width = draw(st.integers(len(digits), 5))
        digits = digits.rjust(width, "0")
        texts.append(draw(st.sampled_from([digits, digits, digits.upper()])))
    if draw(st.booleans()):
        texts[6:] = [draw(ipv4_text(groups[6] << 16 | groups[7]))]
    start = draw(st.integers(0, len(texts)))
    end = draw(st.integers(start, len(texts)))
    if draw(st.booleans()):
        zeros = all(t.strip("0") == "" for t in texts[start:end])
        if zeros or draw(st.integers(0, 9)) == 0:
            text = ":".join(texts[:start]) + "::" + ":".join(texts[end:])
        else:
            text = ":".join(texts)
    else:
        text = ":".join(texts)
    if draw(st.integers(0, 4)) == 0:
        text += "%" + draw(st.sampled_from(["eth0", "1", "", "%", "a%b", " ", "é", "x/1", ":"]))
    return text


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str], tokens: list[str]) -> str:
    """``base`` with a few tokens or hostile characters inserted, characters deleted or
    replaced, or blanks around it."""
    text = draw(base)
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, len(text)))
        what = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.one_of(st.sampled_from(tokens), st.sampled_from(HOSTILE)))
        if what == "insert":
            text = text[:position] + piece + text[position:]
        elif what == "delete":
            text = text[:position] + text[position + 1 :]
        else:
            text = text[:position] + piece + text[position + 1 :]
    blank = st.sampled_from(["", "", "", " ", "\t", "\n", "\u3000", "\x1c", "\u200b"])
    return draw(blank) + text + draw(blank)


IP_STRINGS = st.one_of(
    ipv4_values().flatmap(ipv4_text),
    ipv6_text(),
    mutated(ipv4_values().flatmap(ipv4_text), IP_TOKENS),
    mutated(ipv6_text(), IP_TOKENS),
    joined(IP_TOKENS, 16),
)

SETTINGS = settings(
    max_examples=3000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SMALL = settings(SETTINGS, max_examples=1500)


# =============================================================================================
# Addresses
# =============================================================================================


@SETTINGS
@given(IP_STRINGS)
def test_addresses_match_ipaddress_and_the_old_checks(text: str) -> None:
    check_address(text)


@SMALL
@given(st.text(max_size=50))
def test_any_text_as_address(text: str) -> None:
    check_address(text)


@SMALL
@given(st.integers(0, 2**128 - 1))
def test_canonical_ipv6_text(value: int) -> None:
    canonical = ipsyntax.format_ipv6(value)
    assert canonical == str(ipaddress.IPv6Address(value))
    assert ipsyntax.parse_address(canonical) == (6, value, canonical, "")
    exploded = ipaddress.IPv6Address(value).exploded
    assert ipsyntax.parse_address(exploded.upper()) == (6, value, canonical, "")


@SMALL
@given(st.integers(0, 2**32 - 1))
def test_canonical_ipv4_text(value: int) -> None:
    canonical = ipsyntax.format_ipv4(value)
    assert canonical == str(ipaddress.IPv4Address(value))
    assert ipsyntax.parse_address(canonical) == (4, value, canonical, "")


ADDRESS_EXAMPLES = [
    # IPv4: four ASCII decimal octets, no leading zeros, each at most 255
    "1.2.3.4", "0.0.0.0", "255.255.255.255", "256.1.1.1", "1.2.3", "1.2.3.4.5", "1.2.3.",
    ".1.2.3", "1..2.3", "01.2.3.4", "1.2.3.04", "1.2.3.00", "1.2.3.0", "1.2.3.000", "1.2.3.0255",
    "1.2.3.4 ", " 1.2.3.4", "1.2.3.4\n", "\u0661.2.3.4", "1.2.3.\uff14", "1.2.3.\xb2", "0x1.2.3.4",
    "1.2.3.4/32", "1.2.3.4%eth0", "+1.2.3.4", "1.2.3.-4", "1_0.2.3.4", "",
    # IPv6: groups, "::", IPv4 tails
    "::", ":", ":::", "::::", "::1", "1::", "1::2", "1::2::3", "1:::2", ":1::", "::1:",
    "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::",
    "::1:2:3:4:5:6:7", "::1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8::", "1:2:3:4::5:6:7:8",
    "1:2:3:4:5:6:7:", ":1:2:3:4:5:6:7", "12345::", "0000:0000::00001", "fFfF::", "g::",
    "::ffff:1.2.3.4", "::ffff:01.2.3.4", "::1.2.3.4", "::1.2.3", "::1.2.3.4.5", "1.2.3.4::",
    "::1.2.3.4:1", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "1::5:6:7:1.2.3.4",
    "1:2:3:4:5:6::1.2.3.4", "a:1.2.3.4", "::256.1.1.1", "::ffff:255.255.255.255",
    "2001:db8:0:0:1:0:0:1", "2001:0:0:1:0:0:0:1", "1:0:0:2:0:0:3:4", "0:0:0:0:0:0:0:1",
    "1:0:0:0:0:0:0:0", "0:1:0:1:0:1:0:1", "FE80::1", "\uff46e80::1", "fe80::\u0661",
    # scope ids and slashes
    "fe80::1%eth0", "fe80::1%", "fe80::1%%", "fe80::1%a%b", "fe80::1%eth0/64", "fe80::1/64",
    "fe80::1%25", "fe80::1% ", "fe80::1%\u3000", "::%x", "%eth0", "1.2.3.4%", "2001:db8::1%0",
    "ff02::1%eth0", "::1%lo", "::%eth0", "::ffff:1.2.3.4%eth0", "::1.2.3.4%x",
    # categories at their edges
    "127.0.0.1", "127.255.255.255", "126.255.255.255", "128.0.0.0", "169.254.0.0",
    "169.253.255.255", "169.255.0.0", "223.255.255.255", "224.0.0.0", "239.255.255.255",
    "240.0.0.0", "febf:ffff::", "fec0::", "fe7f:ffff::", "ff00::", "feff::", "::2",
    "::fffe:1.2.3.4", "::1:ffff:1.2.3.4", "::ffff:127.0.0.1", "::ffff:0.0.0.0",
]  # fmt: skip


@pytest.mark.parametrize("text", ADDRESS_EXAMPLES)
def test_address_examples(text: str) -> None:
    check_address(text)
    check_address(f" {text}\t")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.1.50", "10.0.1.50"),
        (" 2001:DB8:0:1:0:0:0:50 ", "2001:db8:0:1::50"),
        ("0.0.0.0", "parameter 'ip': 0.0.0.0 cannot be a service address"),
        ("ff02::1%eth0", "parameter 'ip': ff02::1%eth0 cannot be a service address"),
        ("fe80::1%eth0", "parameter 'ip': fe80::1%eth0 is link-local; use a routable address"),
        ("2001:db8::1%eth0", "parameter 'ip': '2001:db8::1%eth0' has a zone; give the address "
                             "alone"),
        ("::ffff:10.0.0.1", "parameter 'ip': ::ffff:a00:1 is IPv4-mapped; give the IPv4 address "
                            "itself"),
        ("255.255.255.255", "parameter 'ip': 255.255.255.255 is the broadcast address"),
        ("10.0.0.01", "parameter 'ip': '10.0.0.01' is not an IPv4 or IPv6 address"),
    ],
)  # fmt: skip
def test_parse_ip_results_and_messages(value: str, expected: str) -> None:
    assert outcome(params.parse_ip, "ip", value) == outcome(old_parse_ip_text, "ip", value)
    got = outcome(params.parse_ip, "ip", value)
    assert got in (("ok", expected), ("error", "ConfigError", 6, expected))


def test_parse_ip_returns_text_and_its_version() -> None:
    ip = params.parse_ip("ip", "2001:0db8::0050")
    assert ip == "2001:db8::50"
    assert isinstance(ip, str)
    assert params.address_version(ip) == 6
    assert params.address_version(params.parse_ip("ip", "10.1.2.3")) == 4
    assert params.ip_object(ip) == ipaddress.IPv6Address("2001:db8::50")
    with pytest.raises(ValueError, match="not an IP address"):
        params.address_version("eth0")


@pytest.mark.parametrize(
    "value",
    ["", None, "fe80::1", " FE80::1 ", "fe80::1%eth0", "2001:db8::1", "::1", "::", "ff02::2",
     "10.0.0.1", "::ffff:10.0.0.1", "fe80::1 %eth0", "fe80::g", 6, True],
)  # fmt: skip
def test_ipv6_gateway_examples(value: Value) -> None:
    assert outcome(params.parse_ipv6_gateway, value) == outcome(old_parse_ipv6_gateway, value)


# =============================================================================================
# The other validators
# =============================================================================================

ID_TOKENS = ["rtb", "eni", "-", "rtb-", "eni-", "0123abcd", "0123456789abcdef0", "f", "A", "0"]
LIST_TOKENS = [*ID_TOKENS, ",", ",,", " ", "\t", "\n", "\u3000", "\x1c", "\u200b", "\x85"]
TAG_TOKENS = ["k", "Key", "=", "==", ",", "aws:", "aws", " ", "\u3000", "\x1c", "v", ":"]
INTERFACE_TOKENS = [
    "eth0", "e", "0", "_", ".", "..", ":", "@", "-", "\u0661", "\uff45", "/", " ", "\xa0", "\xe0",
    "\xe9", "\u3000", ";", "$",
]  # fmt: skip
REGION_TOKENS = [
    "eu", "us", "a", "-", "gov", "go", "iso", "isob", "is", "isx", "i", "central", "1", "12", "123",
]  # fmt: skip
PROFILE_TOKENS = ["default", "a", "_", "+", "=", ",", ".", "@", "-", "\u0661", "\xe9", "\xb2"]
ARN_TOKENS = [
    "arn:aws", "arn:aws-us-gov", "arn:aws-cn", ":iam::", "123456789012", "12345678901", ":role/",
    "role/", "name", "path/", "/", "+=,.@-_", ":", "A", "-", "\u0661",
]  # fmt: skip
URL_TOKENS = [
    "http://", "https://", "HTTP://", "http:/", "host", "a", "-", ".", ":", "80", "0", "65535",
    "65536", "00080", "123456", "/", "/path", "~", "%", "[", "]", "[::1]", "::1", "fe80::1",
    "1.2.3.4", "[1.2.3.4]", "[::ffff:1.2.3.4]", "?", "#", "@", "_",
]  # fmt: skip
PATH_TOKENS = ["/", "etc", "ssl", ".", "+", "-", "_", "\xe9", "\u0661", "\xb2", " ", "pem"]
INTEGER_TOKENS = ["+", "-", "0", "1", "9", "12", "123456789012", "_", " ", "\u0661", "\xb2", "."]


@SMALL
@given(st.one_of(mutated(st.sampled_from(ID_TOKENS).map(str), ID_TOKENS), joined(ID_TOKENS)))
def test_parse_id(value: str) -> None:
    for prefix in ("rtb", "eni"):
        got = outcome(params.parse_id, "eni_id", value, prefix)
        assert got == outcome(old_parse_id, "eni_id", value, prefix)


@SMALL
@given(st.one_of(joined(LIST_TOKENS, 20), long_text([" ", ",", "rtb-0123abcd,"])))
def test_parse_id_list(value: str) -> None:
    got = outcome(params.parse_id_list, "routing_table", value, "rtb")
    assert got == outcome(old_parse_id_list, "routing_table", value, "rtb")


@SMALL
@given(st.one_of(joined(TAG_TOKENS), long_text(["k", "v", "=", " "])))
def test_parse_tag(value: str) -> None:
    assert outcome(params.parse_tag, "tag", value) == outcome(old_parse_tag, "tag", value)


@SMALL
@given(st.one_of(joined(INTERFACE_TOKENS), long_text(["e", "0", "."])))
def test_parse_interface(value: str) -> None:
    got = outcome(params.parse_interface, "interface", value)
    assert got[:3] == outcome(old_parse_interface, "interface", value)[:3]


@SMALL
@given(st.one_of(joined(URL_TOKENS, 16), mutated(st.sampled_from(URL_TOKENS), URL_TOKENS)))
def test_parse_url(value: str) -> None:
    for text in (value, "http://" + value, "https://h" + value):
        assert outcome(params.parse_url, "proxy", text) == outcome(old_parse_url, "proxy", text)


@SMALL
@given(st.builds(lambda n, tail: "http://" + "a" * n + tail, st.integers(240, 260),
                 st.sampled_from(["", "a", "-", ".", ":1", "/"])))  # fmt: skip
def test_parse_url_long_host(value: str) -> None:
    assert outcome(params.parse_url, "proxy", value) == outcome(old_parse_url, "proxy", value)


@SMALL
@given(st.one_of(joined(INTEGER_TOKENS), st.integers(-(10**13), 10**13).map(str)))
def test_integer(value: str) -> None:
    got = outcome(params.integer, {"n": value}, "n")
    assert got == outcome(old_integer, {"n": value}, "n")


def aws_params() -> st.SearchStrategy[dict[str, Value]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "region": st.one_of(joined(REGION_TOKENS), long_text(REGION_TOKENS)),
            "profile": st.one_of(joined(PROFILE_TOKENS), long_text(PROFILE_TOKENS)),
            "role_arn": st.one_of(
                joined(ARN_TOKENS, 16),
                st.builds("{}:iam::{}:role/{}".format,
                          joined(["arn:aws", "-", "a", "z", ":"], 4),
                          joined(["1", "0", "12345678901"], 4), joined(ARN_TOKENS, 6)),
                long_text(["arn:aws:iam::123456789012:role/", "a", "/"]),
            ),
            "endpoint_url": joined(URL_TOKENS),
            "sts_endpoint_url": joined(URL_TOKENS),
            "proxy": joined(URL_TOKENS),
            "ca_bundle": st.one_of(joined(PATH_TOKENS), long_text(PATH_TOKENS)),
        },
    )  # fmt: skip


@SETTINGS
@given(aws_params())
def test_parse_aws_settings(values: dict[str, Value]) -> None:
    got = outcome(params.parse_aws_settings, values)
    assert got == outcome(old_parse_aws_settings, values)
    # Each value alone too: the first bad one must not hide a difference in the others.
    for name, value in values.items():
        one = {name: value}
        assert outcome(params.parse_aws_settings, one) == outcome(old_parse_aws_settings, one)


@SMALL
@given(st.one_of(st.none(), st.booleans(), st.integers(), joined(["yes", "no", "1", "0", " "])))
def test_flag(value: Value) -> None:
    got = outcome(params.flag, {"f": value}, "f", True)
    assert got == outcome(old_flag, {"f": value}, "f", True)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("region", "eu-central-1"), ("region", "us-gov-west-1"), ("region", "us-iso-east-1"),
        ("region", "us-isob-east-1"), ("region", "us-gov-1"), ("region", "us-iso-1"),
        ("region", "us-gov-west-123"), ("region", "eu-central-1\n"), ("region", "EU-central-1"),
        ("region", "eu-central-\u0661"), ("region", "eu--1"), ("region", "eu-gov--1"),
        ("region", "eu-isogov-west-1"), ("region", "eu-iso-gov-west-1"), ("region", "e-a-1"),
        ("region", "us-isf-east-1"), ("region", "us-is-east-1"), ("region", "us-go-east-1"),
        ("region", "us-gova-east-1"), ("region", "us-ISO-east-1"), ("region", "us-iso\u0131-e-1"),
        ("profile", "default"), ("profile", "d\xe9faut"), ("profile", "\u0661\xb2\u216b"),
        ("profile", "prof\n"), ("profile", "a" * 128), ("profile", "a" * 129),
        ("profile", "a b"), ("profile", "a\u0301"), ("profile", "a/b"),
        ("role_arn", "arn:aws:iam::123456789012:role/name"),
        ("role_arn", "arn:aws-us-gov:iam::123456789012:role/path/name+=,.@-_"),
        ("role_arn", "arn:aws:iam::12345678901:role/name"),
        ("role_arn", "arn:aws:iam::1234567890123:role/name"),
        ("role_arn", "arn:aws:iam::123456789012:role/"),
        ("role_arn", "arn:aws:iam::123456789012:role/" + "a" * 512),
        ("role_arn", "arn:aws:iam::123456789012:role/" + "a" * 513),
        ("role_arn", "arn:aws:iam::\u0661" * 1 + "23456789012:role/n"),
        ("role_arn", "arn:aws:x:iam::123456789012:role/n"),
        ("role_arn", "arn:awsA:iam::123456789012:role/n"),
        ("role_arn", "arn:aws:iam::123456789012:user/n"),
        ("ca_bundle", "/etc/ssl/ca.pem"), ("ca_bundle", "/"), ("ca_bundle", "//"),
        ("ca_bundle", "/\xe7a.pem"), ("ca_bundle", "/a b"), ("ca_bundle", "/" + "a" * 1023),
        ("ca_bundle", "/" + "a" * 1024), ("ca_bundle", "relative/path"),
        ("endpoint_url", "https://ec2.eu-central-1.amazonaws.com"),
        ("endpoint_url", "http://[::1]:8080/x"), ("endpoint_url", "http://[1.2.3.4]"),
        ("endpoint_url", "http://[::1]:0"), ("endpoint_url", "http://h:65536"),
        ("endpoint_url", "http://h:00080/p"), ("endpoint_url", "http://h:123456"),
        ("endpoint_url", "https://-a"), ("endpoint_url", "http://a-"), ("endpoint_url", "http://a..b"),
        ("endpoint_url", "http://a" + "b" * 252), ("endpoint_url", "http://a" + "b" * 253),
        ("endpoint_url", "http://[fe80::1%25eth0]"), ("endpoint_url", "HTTP://a"),
        ("endpoint_url", " http://a "), ("endpoint_url", "http://a?x"), ("endpoint_url", "http://a/"),
        ("endpoint_url", "http://[::1"), ("endpoint_url", "http://[]"), ("endpoint_url", "http://[:]"),
        ("endpoint_url", "http://[::]"), ("endpoint_url", "http://[" + "0:" * 15 + "0]"),
        ("endpoint_url", "http://a:"), ("endpoint_url", "http://a:/x"), ("endpoint_url", "http://"),
        ("proxy", "http://proxy:3128"), ("proxy", "http://user@proxy:3128"),
        # issue 12: what AWS, IAM and botocore accept
        ("region", "eusc-de-east-1"), ("region", "ap-southeast-7"), ("region", "mx-central-1"),
        ("region", "us-isof-south-1"), ("region", "a-b-1"), ("region", "ab-c-1234"),
        ("region", "eu-central-1-2"), ("region", "eu-" + "a" * 56 + "-1"),
        ("region", "eu-" + "a" * 57 + "-1"),
        ("role_arn", "arn:aws-eusc:iam::123456789012:role/ha"),
        ("role_arn", "arn:aws-iso-b:iam::123456789012:role/a!b/c~d/ha"),
        ("role_arn", "arn:aws:iam::123456789012:role//ha"),
        ("role_arn", "arn:aws:iam::123456789012:role/a//ha"),
        ("role_arn", "arn:aws:iam::123456789012:role/a b/ha"),
        ("role_arn", "arn:aws:iam::123456789012:role/" + "p" * 510 + "/ha"),
        ("role_arn", "arn:aws:iam::123456789012:role/" + "p" * 511 + "/ha"),
        ("role_arn", "arn:aws-:iam::123456789012:role/ha"),
        ("role_arn", "arn:aws--cn:iam::123456789012:role/ha"),
        ("profile", "my profile"), ("profile", " p"), ("profile", "p "),
        ("ca_bundle", "/etc/ssl/Corp CA.pem"), ("ca_bundle", "/" + "\xe9" * 2047),
        ("ca_bundle", "/" + "\xe9" * 2048), ("ca_bundle", "/a\u2028b"),
        ("proxy", "http://u:p%40ss@proxy:3128"), ("proxy", "http://u:p%4@proxy"),
        ("proxy", "http://u:p@ss@proxy"), ("proxy", "http://@proxy"), ("proxy", "http://u:@h"),
        ("proxy", "https://u!$&'()*+,;=:~@h/p"), ("endpoint_url", "http://u@h"),
        ("endpoint_url", "http://a.b."), ("endpoint_url", "http://a" * 1 + "b" * 63 + ".c"),
        ("endpoint_url", "http://" + "b" * 63 + ".c"), ("endpoint_url", "http://a.-b.c"),
    ],
)  # fmt: skip
def test_aws_settings_examples(name: str, value: str) -> None:
    one: dict[str, Value] = {name: value}
    assert outcome(params.parse_aws_settings, one) == outcome(old_parse_aws_settings, one)


@pytest.mark.parametrize(
    ("function", "old", "values"),
    [
        (params.parse_tag, old_parse_tag,
         ["aws:cloudformation:stack-name=s", "aws:=",
          "k=v", " k = v ", "aws:x=1", " aws:x=1", "k=v,w", "=v", "k==v", "k=", "k", "\u3000k=v",
          "k,=v", "a" * 128 + "=v", "a" * 129 + "=v", "k=" + "v" * 256, "k=" + "v" * 257,
          "k\n=v\n", "k=v=w", "AWS:x=1"]),
        (params.parse_interface, old_parse_interface,
         ["eth0", "a" * 15, "a" * 16, "eth0\n", "\uff45th0", "_eth", ".", "..", "e.", "eth0:1",
          "br-1@x", "eth\u0661", "", "x\xe0", "x\xe9", "\xe9" * 7, "\xe9" * 8, "a;b", "a\xa0",
          "\udcff", "a/b", "a b", ":1", "...", "-x"]),
    ],
)  # fmt: skip
def test_text_examples(
    function: Callable[[str, str], object], old: Callable[[str, str], object], values: list[str]
) -> None:
    for value in values:
        if function is params.parse_interface:  # messages: test_interface_reasons
            assert outcome(function, "p", value)[:3] == outcome(old, "p", value)[:3], value
        else:
            assert outcome(function, "p", value) == outcome(old, "p", value), value


@pytest.mark.parametrize(
    "value",
    ["rtb-0123abcd", "rtb-0123456789abcdef0, rtb-0123abcd", "rtb-0123abcd\u3000rtb-0123abcd",
     "rtb-0123abcd\x1crtb-0123abcd", "rtb-0123abcd\u200brtb-0123abcd", ",,, ,", "",
     ",".join(["rtb-0123abcd"] * 51), " rtb-0123ABCD", "rtb-0123abc", "rtb-0123abcde",
     "eni-0123abcd", "rtb-\u0661123abcd", "rtb-0123abcd\x85rtb-0123abce"],
)  # fmt: skip
def test_id_list_examples(value: str) -> None:
    got = outcome(params.parse_id_list, "routing_table", value, "rtb")
    assert got == outcome(old_parse_id_list, "routing_table", value, "rtb")


@pytest.mark.parametrize(
    "value",
    ["0", "+5", "-0", "-12", " 12 ", "\u0661", "\xb2", "1_000", "123456789012", "1234567890123",
     "+", "-", "", "1.0", "0x10", "\u300012\n", 5, True, False, None],
)  # fmt: skip
def test_integer_examples(value: Value) -> None:
    assert outcome(params.integer, {"n": value}, "n") == outcome(old_integer, {"n": value}, "n")


# =============================================================================================
# Cheap to import
# =============================================================================================

HEAVY = ("re", "ipaddress", "dataclasses", "typing", "enum", "functools", "collections")


def test_import_loads_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "import ipfailover.params\n"
        f"heavy = {HEAVY!r}\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == []
