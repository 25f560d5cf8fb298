"""Hostile values for every parameter of every agent, and what the agents must make of them.

For each parameter (read from the agent's meta-data, so a new parameter without a strategy
fails :func:`check_coverage`) hypothesis draws values from families: shell metacharacters and
command substitutions, newlines and other control characters, unicode (homoglyphs, other
scripts' digits, bidi and zero-width characters, random text), 10 kB strings, ids with the wrong
prefix or length, addresses of the wrong family or range, out-of-range numbers. Each value is
run through every action (validate-all, monitor, start, stop) of a resource that is running on
node a, in a real agent process.

Every family carries its verdict (the oracle), decided per parameter from the parameter's
documented syntax, independently of the agents' code:

- ``SYNTAX``: the value is malformed: every action must refuse it with 6 (or 2 when it is only
  wrong on this host), with an exit reason, and change nothing;
- ``SEMANTIC``: well-formed but unusable here (an overlay IP inside the VPC, a secondary IP of
  another subnet or a node's primary address, a scoped or IPv4-mapped address): start and
  validate-all must refuse it (6 or 2); monitor and stop may answer, but nothing may change;
- ``FREE``: merely unusual, and legitimately usable (a tag value with shell characters is a
  valid tag; ``" yes "`` is a valid boolean; another device index is a valid device index):
  any exit code the action may give (never 7 from start or stop), and a change only from a
  stop or a successful start; the world is restored afterwards.

Whatever the verdict: never a traceback, never a process started (the audit hook of
faults.execute: so never a shell), always inside the timeout, an exit reason whenever the exit
code is an error.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from lab import Lab

from .execute import Expect, Run, Session, expect, run_problems
from .world import NODES, Resource, aws_snapshot, os_snapshot

SYNTAX, SEMANTIC, FREE = "syntax", "semantic", "free"
FUZZ_ACTIONS = ("validate-all", "monitor", "start", "stop")
FUZZ_TIMEOUT_MS = 4000

SHELL = (
    "$(reboot)",
    "`reboot`",
    "; reboot",
    "| reboot",
    "&& reboot",
    "|| reboot",
    "$(touch /tmp/ipf-fuzz-pwned)",
    "'; reboot; '",
    '"; reboot; "',
    "${IFS}reboot",
    "> /etc/passwd",
    "< /dev/zero",
    "*",
    "~root",
    "$HOME",
    "\\",
    "!!",
    "%s%s%n",
    "{0}{1}",
    "../../../../etc/passwd",
)
CONTROL = (
    "\n",
    "\nocf-exit-reason:forged",
    "\r",
    "\t",
    "\x1b[31m",
    "\x7f",
    "\x85",
    "\u2028",
    "\x01",
    "\udcff",  # an undecodable byte in the environment
)
UNICODE = (
    "\u202e",  # right-to-left override
    "\u200b",  # zero width space
    "\ufeff",  # byte order mark
    "\u0301",  # combining acute accent
    "\u0435",  # Cyrillic small ie, looks like "e"
    "\uff11",  # fullwidth digit one
    "\u0663",  # Arabic-Indic digit three
    "\u00e9",
    "\U0001f4a5",
)
HUGE = 10 * 1024

# Characters no id, name, region, path or URL of ours may contain.
_METACHARS = set(" \t$`;|&<>(){}[]'\"*?!~#\\^%")


def _plain(text: str) -> bool:
    return text.isprintable() and text.isascii() and not (set(text) & _METACHARS)


def _env_safe(text: str) -> bool:
    """A value the environment can carry (no NUL; surrogates only as undecodable bytes)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


# ----------------------------------------------------------------------------- oracles


def _generic(value: str) -> str | None:
    """The verdict of the OCF shim's rules for any parameter (too long, control characters)."""
    if len(value) > 4096 or any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in value):
        return SYNTAX
    if any(c in value for c in "\u2028\u2029") or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        return SYNTAX
    return None


def _int_in(value: str, low: int, high: int, reserved: Sequence[int] = ()) -> str:
    text = value.strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", text):
        return SYNTAX
    number = int(text)
    return FREE if low <= number <= high and number not in reserved else SYNTAX


def _bool(value: str) -> str:
    words = {"true", "false", "yes", "no", "on", "off", "y", "n", "1", "0"}
    return FREE if value.strip().lower() in words else SYNTAX


def _id(prefix: str) -> Callable[[str], str]:
    def verdict(value: str) -> str:
        pattern = re.escape(prefix) + r"-([0-9a-f]{8}|[0-9a-f]{17})"
        return FREE if re.fullmatch(pattern, value.strip()) else SYNTAX

    return verdict


def _id_list(value: str) -> str:
    items = [item for item in re.split(r"[,\s]+", value) if item]
    ok = items and len(items) <= 200 and all(_id("rtb")(item) == FREE for item in items)
    return FREE if ok else SYNTAX


def _ip_any(value: str) -> str:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return SYNTAX
    special = (
        address.is_loopback or address.is_multicast or address.is_unspecified
    ) or address.is_link_local
    return SEMANTIC if special else FREE


def _interface(value: str) -> str:
    """The kernel's dev_valid_name(): 1-15 bytes, no "/", ":" or blank byte, not . or .."""
    raw = value.encode("utf-8", "surrogatepass")
    blanks = set(b"/:\t\n\v\f\r \xa0")  # the kernel's isspace() takes 0xa0 too
    ok = 0 < len(raw) < 16 and value not in (".", "..") and not (set(raw) & blanks)
    return FREE if ok else SYNTAX


def _label(value: str) -> str:
    ok = value.startswith("eth0") and len(value.encode()) <= 15 and value.isprintable()
    return FREE if ok else SYNTAX


def _same_ip(ip: str) -> Callable[[str], str]:
    """An incumbent's name for ``ip`` beside ``ip`` itself: only the same address is accepted
    (config/aliases.py refuses the two disagreeing)."""

    def verdict(value: str) -> str:
        try:
            same = ipaddress.ip_address(value.strip()) == ipaddress.ip_address(ip)
        except ValueError:
            return SYNTAX
        return FREE if same else SYNTAX

    return verdict


def _beside(values: Sequence[tuple[str, str]], ip: object) -> tuple[tuple[str, str], ...]:
    """The ip parameter's own values, judged as an incumbent's name for ip beside ip."""
    return tuple((v, _same_ip(str(ip))(v)) for v, _ in values)


def _integer(value: str) -> str:
    """Any integer the OCF shim converts (an ignored incumbent parameter of type integer)."""
    return FREE if re.fullmatch(r"[+-]?[0-9]+", value.strip()) else SYNTAX


def _tag(value: str) -> str:
    key, sep, _ = value.partition("=")
    return FREE if sep and key.strip() and "," not in value else SYNTAX


def _choice(*words: str) -> Callable[[str], str]:
    return lambda value: FREE if value.strip().lower() in words else SYNTAX


def _choice_exact(*words: str) -> Callable[[str], str]:
    """One of ``words`` as written (blanks around allowed): the incumbents' case-sensitive
    choices."""
    return lambda value: FREE if value.strip() in words else SYNTAX


def _region(value: str) -> str:
    return FREE if re.fullmatch(r"[a-z0-9-]{1,63}", value) else SYNTAX


def _profile(value: str) -> str:
    """Any section name of the AWS config files (botocore); whether it is there is the node's."""
    return FREE if value and value.isprintable() and value == value.strip() else SYNTAX


def _arn(value: str) -> str:
    """IAM's role ARN: a path of printable ASCII, a name of letters, digits and _+=,.@-"""
    arn = re.fullmatch(
        r"arn:aws(-[a-z]+)*:iam::[0-9]{12}:role(?P<path>/([\x21-\x7e]+/)?)[\w+=,.@-]{1,64}",
        value,
        re.ASCII,
    )
    return FREE if arn and len(arn.group("path")) <= 512 else SYNTAX


def _url(value: str) -> str:
    text = value.strip()
    return FREE if re.fullmatch(r"https?://[^\s/]+(/\S*)?", text) and _plain(text) else SYNTAX


def _proxy_url(value: str) -> str:
    """``_url`` with RFC 3986 ``user:password@`` allowed (an authenticated proxy)."""
    userinfo = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{2})+@"
    match = re.fullmatch(rf"(https?://)(?:{userinfo})?(.*)", value.strip(), re.DOTALL)
    return _url(match.group(1) + match.group(2)) if match else SYNTAX


def _path(value: str) -> str:
    """Any absolute path the kernel takes (PATH_MAX); whether the file is there is the node's."""
    ok = value.startswith("/") and value.isprintable() and len(value.encode()) < 4096
    return FREE if ok else SYNTAX


def _ipv6_gateway(value: str) -> str:
    text = value.strip()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return SYNTAX
    bad = address.version != 6 or "%" in text or address.is_multicast or address.is_loopback
    return SYNTAX if bad or address.is_unspecified else FREE


# ----------------------------------------------------------------------------- strategies

Verdict = Callable[[str], str]


@dataclass(frozen=True)
class ParamSpec:
    """How to fuzz one parameter: a valid value to mutate, the verdict of any value, and values
    of its own families with their verdicts."""

    valid: str
    verdict: Verdict
    own: tuple[tuple[str, str], ...] = ()
    required: bool = False
    # An empty value means the default; for endpoint_url that is the public AWS endpoint, which
    # the lab must never try to reach (and whose name lookup would only time out).
    empty: bool = True


def _families(spec: ParamSpec) -> st.SearchStrategy[tuple[str, str]]:
    """(value, verdict) pairs: the parameter's own families, then the generic ones."""
    valid = spec.valid

    def judged(value: str) -> tuple[str, str]:
        return value, _generic(value) or spec.verdict(value)

    mutations = st.sampled_from(SHELL).flatmap(
        lambda payload: st.sampled_from(
            (payload, valid + payload, payload + valid, valid + " " + payload)
        )
    )
    controls = st.sampled_from(CONTROL).map(lambda c: valid + c + "x")
    unicode = st.one_of(
        st.sampled_from(UNICODE).flatmap(
            lambda c: st.sampled_from((valid + c, c + valid, valid[:1] + c + valid[1:]))
        ),
        st.text(
            alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
            min_size=1,
            max_size=24,
        ),
    )
    huge = st.sampled_from(
        ("A" * HUGE, (valid or "x") * (HUGE // max(1, len(valid)) + 1), valid + " " * HUGE)
    )
    parts = [
        mutations.map(judged),
        controls.map(judged),
        unicode.filter(_env_safe).map(judged),
        huge.map(judged),
        st.just(" ").map(judged),
    ]
    if spec.empty:
        parts.append(st.just("").map(lambda v: (v, SYNTAX if spec.required else FREE)))
    if spec.own:
        parts.insert(
            0, st.sampled_from(spec.own).map(lambda pair: (pair[0], _generic(pair[0]) or pair[1]))
        )
    return st.one_of(*parts)


def _ids(prefix: str, valid: str) -> tuple[tuple[str, str], ...]:
    hexpart = valid.split("-", 1)[1]
    others = ("rtb", "eni", "eipalloc", "igw", "i", "vpc", "subnet", "sg", "eipassoc")
    values = [f"{other}-{hexpart}" for other in others if other != prefix]
    values += [
        f"{prefix}_{hexpart}",
        f"{prefix}{hexpart}",
        f"{prefix.upper()}-{hexpart.upper()}",
        f"{prefix}-{hexpart[:7]}",
        f"{prefix}-{hexpart}0",
        f"{prefix}-{'g' * len(hexpart)}",
        f"{prefix}-../../{hexpart}",
        f"{prefix}-{hexpart}/..",
        f" {prefix}-{hexpart[:-1]}\uff10",
    ]
    return (*((v, SYNTAX) for v in values), (f"{prefix}-0123456789abcdef0", FREE))


def _integers(low: int, high: int, reserved: Sequence[int] = ()) -> tuple[tuple[str, str], ...]:
    values = (
        str(low - 1),
        str(high + 1),
        "-1",
        "0",
        "99999999999999999999",
        "1e3",
        "0x10",
        "1.0",
        "\u0663",
        "\uff11",
        "+",
        "--1",
        "1 1",
        *(str(r) for r in reserved),
    )
    return tuple((v, _int_in(v, low, high, reserved)) for v in values)


_BOOLS = ("perhaps", "yes;reboot", "\uff59es", "tru", "1.0", "enabled", "TRUE ", " off", "2")


AWS_PARAMS = (
    "region",
    "profile",
    "role_arn",
    "endpoint_url",
    "sts_endpoint_url",
    "proxy",
    "proxy_credentials_file",
    "ca_bundle",
    "monitor_api",
)


def aws_specs(lab: Lab) -> dict[str, ParamSpec]:
    loop = lab.endpoint_url
    urls = (
        ("ftp://127.0.0.1/", SYNTAX),
        ("file:///etc/passwd", SYNTAX),
        ("javascript:alert(1)", SYNTAX),
        ("http://$(reboot)", SYNTAX),
        (loop + ";reboot", SYNTAX),
        ("//127.0.0.1", SYNTAX),
        ("http://[::1", SYNTAX),
        ("http://127.0.0.1:99999999", SYNTAX),
        ("http://127.0.0.1:1", FREE),  # well-formed: nothing listens there
        ("http://ex\u00e4mple.invalid", SYNTAX),
        ("http://127.0.0.1:\u0661\u0662", SYNTAX),  # Arabic-Indic digits as the port
    )
    return {
        "region": ParamSpec(
            "eu-central-1",
            _region,
            (
                ("../../etc", SYNTAX),
                ("EU-CENTRAL-1", SYNTAX),
                ("eu-central-1 ", SYNTAX),
                ("eu-central-\u0661", SYNTAX),  # an Arabic-Indic digit one
            ),
        ),
        "profile": ParamSpec("default", _profile, (("../../etc/passwd", FREE),)),
        "role_arn": ParamSpec(
            "arn:aws:iam::123456789012:role/ha",
            _arn,
            (
                ("arn:aws:iam::123456789012:user/ha;id", SYNTAX),
                ("role/ha", SYNTAX),
                ("arn:aws:iam::\u0661\u0662\u0663456789012:role/ha", SYNTAX),
            ),
        ),
        "endpoint_url": ParamSpec(loop, _url, urls, empty=False),
        "sts_endpoint_url": ParamSpec(loop, _url, urls),
        "proxy": ParamSpec(
            "http://127.0.0.1:3128",
            _proxy_url,
            (
                *urls,
                ("http://user:p%40ss@127.0.0.1:3128", FREE),
                ("http://us er@127.0.0.1:3128", SYNTAX),
            ),
        ),
        # without proxy (the base configuration has none) any credentials file is a
        # configuration error
        "proxy_credentials_file": ParamSpec(
            "/etc/ipfailover/proxy-credentials",
            lambda v: FREE if v == "" else SYNTAX,
            (("relative/file", SYNTAX), ("/etc/passwd", SYNTAX)),
        ),
        "ca_bundle": ParamSpec(
            "/etc/ssl/certs/ca-certificates.crt",
            _path,
            (("../../etc/shadow", SYNTAX), ("/etc/passwd", FREE), ("~/ca.pem", SYNTAX)),
        ),
        "monitor_api": ParamSpec("true", _bool, tuple((v, _bool(v)) for v in _BOOLS)),
    }


def agent_specs(lab: Lab, res: Resource) -> dict[str, ParamSpec]:
    """Every parameter of ``res.agent``: how to fuzz it."""
    specs = aws_specs(lab)
    a, b = lab.nodes["a"], lab.nodes["b"]
    vpc6 = ipaddress.ip_network(lab.vpc_ipv6_cidr)
    sub6 = {name: ipaddress.ip_network(s.ipv6_cidr) for name, s in lab.subnets.items()}
    if res.agent == "aws-overlayip":
        ips: tuple[tuple[str, str], ...] = (
            ("10.0.1.50", SEMANTIC),  # inside the VPC
            ("10.0.200.1", SEMANTIC),
            (a.ip, SEMANTIC),  # this node's primary address: stop must not remove it
            (str(vpc6.network_address + 0x10), SEMANTIC),  # inside the VPC's IPv6 block
            ("127.0.0.1", SEMANTIC),
            ("::1", SEMANTIC),
            ("224.0.0.1", SEMANTIC),
            ("ff02::1", SEMANTIC),
            ("169.254.169.254", SEMANTIC),  # the metadata service
            ("fe80::1", SEMANTIC),
            ("0.0.0.0", SEMANTIC),
            ("::", SEMANTIC),
            ("255.255.255.255", SEMANTIC),  # the limited broadcast address
            ("::ffff:192.168.100.10", SEMANTIC),  # IPv4-mapped: not an address AWS routes
            ("2001:db8::10%eth0", SEMANTIC),  # a zone: not part of a service address
            ("192.168.100.10/32", SYNTAX),
            ("192.168.100.300", SYNTAX),
            ("192.168.100", SYNTAX),
            ("0300.0250.0144.012", SYNTAX),
            ("0xc0.0xa8.0x64.0x0a", SYNTAX),
            ("192.168.100.010", SYNTAX),
        )
        specs.update(
            {
                "ip": ParamSpec(str(res.ip), _ip_any, ips, required=True),
                "routing_table": ParamSpec(
                    res.tables[0],
                    _id_list,
                    (
                        *_ids("rtb", res.tables[0]),
                        (",".join([res.tables[0]] * 201), FREE),  # duplicates collapse
                        (",".join(f"rtb-{i:08x}" for i in range(201)), SYNTAX),  # over AWS's 200
                        (res.tables[0] + ",$(reboot)", SYNTAX),
                        (",,,", SYNTAX),
                    ),
                ),
                "routing_table_tag": ParamSpec(
                    "ipfailover=lab",
                    _tag,
                    (
                        ("Name=$(reboot)", FREE),
                        ("=lab", SYNTAX),
                        ("ipfailover", SYNTAX),
                        ("a=b,c=d", SYNTAX),
                        ("k\u00e9y=v\u00e4lue", FREE),
                    ),
                ),
                # routing_table_role is assumed through the lab's STS (params() points
                # sts_endpoint_url there); a role the lab does not know is denied (4).
                "routing_table_role": ParamSpec(
                    "arn:aws:iam::210987654321:role/ipfailover-routing",
                    _arn,
                    (
                        ("arn:aws:iam::210987654321:user/ha", SYNTAX),
                        ("ipfailover-routing", SYNTAX),
                        ("arn:aws:iam::210987654321:role/" + "r" * 65, SYNTAX),
                    ),
                ),
                # without routing_table_role any external id is a configuration error
                "routing_table_external_id": ParamSpec(
                    "sap-ha1-7f3c",
                    lambda v: FREE if v == "" else SYNTAX,
                    (("x", SYNTAX), ("a b", SYNTAX), ("$(reboot)", SYNTAX)),
                ),
                "interface": ParamSpec(
                    "eth0",
                    _interface,
                    (
                        ("eth9", FREE),
                        ("lo", FREE),
                        ("e" * 16, SYNTAX),
                        ("../eth0", SYNTAX),
                        ("eth0 ", SYNTAX),
                        (".", SYNTAX),
                        ("eth0:1", SYNTAX),  # an alias label: the label parameter
                    ),
                ),
                "create_route": ParamSpec("true", _bool, tuple((v, _bool(v)) for v in _BOOLS)),
                "source_dest_check": ParamSpec(
                    "disable",
                    _choice("verify", "disable", "ignore"),
                    (("off", SYNTAX), ("disabled", SYNTAX), ("VERIFY ", FREE)),
                ),
                "label": ParamSpec(
                    "eth0:ovl",
                    _label,
                    (
                        ("lo:evil", SYNTAX),
                        ("eth0:" + "x" * 11, SYNTAX),
                        ("eth0:$(id)", FREE),
                        # 11 characters but 17 bytes: more than a label (IFNAMSIZ) holds
                        ("eth0:" + "\u00e9" * 6, SYNTAX),
                    ),
                ),
                # aws-vpc-move-ip's names (lib/ipfailover/config/aliases.py)
                "address": ParamSpec(str(res.ip), _same_ip(str(res.ip)), _beside(ips, res.ip)),
                "iflabel": ParamSpec(
                    "ovl",
                    lambda v: _label("eth0:" + v.strip()),
                    (("x" * 10, FREE), ("x" * 11, SYNTAX), ("$(id)", FREE), ("\u00e9" * 6, SYNTAX)),
                ),
                "monapi": ParamSpec("true", _bool, tuple((v, _bool(v)) for v in _BOOLS)),
                "lookup_type": ParamSpec(
                    "NetworkInterfaceId",
                    _choice_exact("InstanceId", "NetworkInterfaceId"),
                    (("instanceid", SYNTAX), ("Tag", SYNTAX), (" InstanceId ", FREE)),
                ),
                "auth_type": ParamSpec(
                    "role",
                    _choice_exact("key", "role"),
                    (("Role", SYNTAX), ("assume", SYNTAX), ("key ", FREE)),
                ),
                "awscli": ParamSpec("/usr/bin/aws", lambda v: FREE, (("$(reboot)", FREE),)),
                "awscli_timeout": ParamSpec("5", _integer, (("5s", SYNTAX), ("-1", FREE))),
                "curl_retries": ParamSpec("3", _integer, (("three", SYNTAX),)),
                "curl_sleep": ParamSpec("1", _integer, (("0.5", SYNTAX),)),
            }
        )
    elif res.agent == "aws-secip":
        subnet_a = ipaddress.ip_network(lab.subnets["a"].cidr)
        ips = (
            ("10.0.2.50", SEMANTIC),  # another subnet
            ("10.0.3.50", SEMANTIC),
            (str(subnet_a.network_address), SEMANTIC),  # reserved by AWS
            (str(subnet_a.network_address + 1), SEMANTIC),
            (str(subnet_a.network_address + 3), SEMANTIC),
            (str(subnet_a.broadcast_address), SEMANTIC),
            (a.ip, SEMANTIC),  # this node's primary address
            (b.ip, SEMANTIC),  # the other node's primary address
            (str(sub6["b"].network_address + 0x50), SEMANTIC),  # another subnet's IPv6 block
            ("2001:db8::50", SEMANTIC),
            ("::ffff:10.0.1.50", SEMANTIC),
            ("10.0.1.50%eth0", SYNTAX),
            ("127.0.0.1", SEMANTIC),
            ("169.254.169.254", SEMANTIC),
            ("224.0.0.1", SEMANTIC),
            ("10.0.1.50/24", SYNTAX),
            ("10.0.1.256", SYNTAX),
            ("010.0.1.50", SYNTAX),
        )
        specs.update(
            {
                "ip": ParamSpec(str(res.ip), _ip_any, ips, required=True),
                "interface": ParamSpec(
                    "eth0",
                    _interface,
                    (("eth9", FREE), ("lo", FREE), ("e" * 16, SYNTAX), ("eth0;ls", FREE)),
                ),
                "cidr_netmask": ParamSpec(
                    "24",
                    lambda v: _int_in(v, 1, 32),
                    (*_integers(1, 32), ("255.255.255.0", SYNTAX), ("/24", SYNTAX)),
                ),
                "elastic_ip_allocation_id": ParamSpec(
                    str(res.eip), _id("eipalloc"), _ids("eipalloc", str(res.eip))
                ),
                "unassign_on_stop": ParamSpec("true", _bool, tuple((v, _bool(v)) for v in _BOOLS)),
                # awsvip's and awseip's names (lib/ipfailover/config/aliases.py)
                "secondary_private_ip": ParamSpec(
                    str(res.ip), _same_ip(str(res.ip)), _beside(ips, res.ip)
                ),
                "private_ip_address": ParamSpec(
                    str(res.ip), _same_ip(str(res.ip)), _beside(ips, res.ip)
                ),
                "allocation_id": ParamSpec(
                    str(res.eip),
                    lambda v: FREE if v.strip() == str(res.eip) else SYNTAX,
                    tuple((v, SYNTAX) for v, _ in _ids("eipalloc", str(res.eip))),
                ),
                # ignored: the base parameters name the allocation id
                "elastic_ip": ParamSpec("203.0.113.10", lambda v: FREE, (("$(reboot)", FREE),)),
                "api_delay": ParamSpec("3", _integer, (("3s", SYNTAX),)),
                "awscli": ParamSpec("/usr/bin/aws", lambda v: FREE, (("$(reboot)", FREE),)),
            }
        )
    else:
        assert res.eni is not None
        specs.update(
            {
                "eni_id": ParamSpec(
                    res.eni.id,
                    _id("eni"),
                    (*_ids("eni", res.eni.id), (a.eni_id, FREE), (b.eni_id, FREE)),
                    required=True,
                ),
                "device_index": ParamSpec("1", lambda v: _int_in(v, 1, 99), _integers(1, 99)),
                "force_detach": ParamSpec("false", _bool, tuple((v, _bool(v)) for v in _BOOLS)),
                "policy_routing": ParamSpec("true", _bool, tuple((v, _bool(v)) for v in _BOOLS)),
                "route_table_id": ParamSpec(
                    "5001",
                    lambda v: _int_in(v, 1, 2**31 - 1, (253, 254, 255)),
                    _integers(1, 2**31 - 1, (253, 254, 255)),
                ),
                "rule_priority": ParamSpec(
                    "5001", lambda v: _int_in(v, 1, 32765), _integers(1, 32765)
                ),
                "ipv6_gateway": ParamSpec(
                    "fe80::1",
                    _ipv6_gateway,
                    (
                        ("10.0.3.1", SYNTAX),  # the wrong family
                        ("fe80::1%eth1", SYNTAX),
                        ("ff02::2", SYNTAX),
                        ("::1", SYNTAX),
                        ("::", SYNTAX),
                        ("fe80::1/64", SYNTAX),
                        ("fe80::g", SYNTAX),
                    ),
                ),
            }
        )
    return specs


@cache
def metadata_parameters(agent: str) -> tuple[str, ...]:
    """The parameter names the agent's meta-data declares (what must be fuzzed)."""
    from .execute import LIB_DIR

    path = LIB_DIR.parent / "agents" / agent
    done = subprocess.run(
        [sys.executable, str(path), "meta-data"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(LIB_DIR), "LANG": "C.UTF-8"},
        timeout=30,
    )
    root = ET.fromstring(done.stdout)  # noqa: S314 - our own agent's output
    return tuple(p.get("name", "") for p in root.iterfind("parameters/parameter"))


def check_coverage(lab: Lab, res: Resource) -> list[str]:
    """Parameters of the meta-data without a fuzzing strategy (must be none)."""
    specs = agent_specs(lab, res)
    return [name for name in metadata_parameters(res.agent) if name not in specs]


# ----------------------------------------------------------------------------- running


def expected(level: str, action: str) -> Expect:
    if level == SYNTAX or (level == SEMANTIC and action in ("start", "validate-all")):
        return expect(2, 6)
    sane = {0, 1, 2, 4, 6} | ({7} if action == "monitor" else set())
    return expect(*sane)


@dataclass
class Finding:
    param: str
    value: str
    level: str
    action: str
    problem: str

    def __str__(self) -> str:
        shown = self.value if len(self.value) <= 60 else self.value[:57] + "..."
        return f"{self.param}={shown!r} ({self.level}) {self.action}: {self.problem}"


@dataclass
class FuzzReport:
    """What fuzzing one parameter found."""

    examples: int = 0
    runs: int = 0
    restores: int = 0
    findings: list[Finding] = field(default_factory=list)
    rcs: dict[int, int] = field(default_factory=dict)
    worst: Run | None = None  # the slowest run, relative to its timeout

    def add(self, run: Run) -> None:
        self.runs += 1
        self.rcs[run.rc] = self.rcs.get(run.rc, 0) + 1
        worst = self.worst
        if worst is None or run.result.duration / run.timeout > (
            worst.result.duration / worst.timeout
        ):
            self.worst = run


class Fuzzer:
    """Fuzzes the parameters of one resource running on node a.

    The lab's EC2 transitions are made short (fuzzing is about input, not timing), so putting
    the resource back after a value that was allowed to change it costs little.
    """

    def __init__(self, s: Session, agent: str) -> None:
        self.s = s
        self.agent = agent
        self.report = FuzzReport()
        s.lab.set_timing(assign_delay=0.05, attach_delay=0.2, detach_delay=0.2)
        self.res = s.resource(agent)
        self._establish()

    def _establish(self) -> None:
        s = self.s
        s.must(s.run("a", self.res, "start"), expect(0), what="fuzz setup: start")
        self.baseline = self._snapshot()

    def _snapshot(self) -> Any:
        return [aws_snapshot(self.s.lab, self.res), os_snapshot(self.s.lab, "a")]

    def _restore(self) -> None:
        """Back to the running resource after a value that was allowed to change things: a start
        (after a stop), else stop everywhere and start, else a fresh lab world."""
        s = self.s
        self.report.restores += 1
        s.run("a", self.res, "start")
        if self._snapshot() == self.baseline:
            return
        for node in NODES:
            s.run(node, self.res, "stop")
        s.run("a", self.res, "start")
        if self._snapshot() != self.baseline:
            s.lab.reset()
            s.lab.set_timing(assign_delay=0.05, attach_delay=0.2, detach_delay=0.2)
            s.resources.remove(self.res)
            self.res = s.resource(self.agent)
            self._establish()
        s.runs.clear()

    def params(self, name: str, value: str) -> dict[str, str]:
        params = dict(self.res.params)
        params[name] = value
        if name in ("role_arn", "routing_table_role"):
            params["sts_endpoint_url"] = self.s.lab.endpoint_url  # keep STS on loopback
        return params

    def examine(self, name: str, value: str, level: str) -> list[Finding]:
        """Run ``value`` through every action; what went wrong."""
        found: list[Finding] = []
        changed = False
        for action in FUZZ_ACTIONS:
            run = self.s.run(
                "a", self.res, action, timeout_ms=FUZZ_TIMEOUT_MS, params=self.params(name, value)
            )
            self.s.runs.clear()  # keep memory flat: thousands of runs
            self.report.add(run)
            problems = run_problems(run, expected(level, action))
            if self._snapshot() != self.baseline:
                # A stop removes what it can before it fails (aws-eni: the OS side first).
                allowed = level == FREE and (action == "stop" or (action, run.rc) == ("start", 0))
                if not allowed:
                    problems.append("changed the AWS or OS state")
                changed = True
            found += [Finding(name, value, level, action, p) for p in problems]
            if changed:
                break  # the world moved: restore before the next value
        if changed:
            self._restore()
        return found

    def fuzz(self, name: str, spec: ParamSpec, examples: int, explicit: str = "all") -> FuzzReport:
        """Fuzz one parameter: first the explicit values (``all``: the parameter's own families
        and one value of each generic family; ``own``: the former only; ``none``), then
        ``examples`` values hypothesis draws from all families. Returns what it found."""
        self.report = report = FuzzReport()

        def one(pair: tuple[str, str]) -> None:
            value, level = pair
            report.examples += 1
            report.findings += self.examine(name, value, level)

        values = canonical(spec, explicit)
        if not values and examples <= 0:
            return report  # nothing asked for (a shared validator, fuzzed in another agent)
        test = given(_families(spec))(one)
        for value in values:
            test = example(value)(test)
        phases = (Phase.explicit, Phase.generate) if examples > 0 else (Phase.explicit,)
        settings(
            max_examples=max(1, examples),
            derandomize=True,
            deadline=None,
            database=None,
            phases=phases,
            suppress_health_check=list(HealthCheck),
        )(test)()
        return report


def canonical(spec: ParamSpec, explicit: str = "all") -> list[tuple[str, str]]:
    """The explicit examples: the parameter's own values, and one value of each generic family."""
    if explicit == "none":
        return []
    own = [(v, _generic(v) or level) for v, level in spec.own]
    if explicit == "own":
        return own
    valid = spec.valid
    generic = [
        valid + "$(touch /tmp/ipf-fuzz-pwned)",
        "`reboot`",
        valid + "\nocf-exit-reason:forged",
        valid + "\u202e",
        "A" * HUGE,
        " ",
    ]
    values = [(v, _generic(v) or spec.verdict(v)) for v in generic]
    if spec.empty:
        values.append(("", SYNTAX if spec.required else FREE))
    return own + values
