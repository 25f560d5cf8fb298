"""Parameter declarations shared by the agents, and pure validators for parameter values.

Validators raise :class:`ocf_shim.ConfigError` (exit 6) with a reason that names the parameter
and says what a good value looks like. Hostile values are quoted with ``repr`` and cut short,
so nothing a user typed can forge log lines or exit reasons.
"""

from __future__ import annotations

from ocf_shim import ActionSpec, ConfigError, Parameter, lazy_handler, redact

from .ipsyntax import (
    ipv4_mapped,
    is_broadcast,
    is_link_local,
    is_loopback,
    is_multicast,
    is_unspecified,
    parse_address,
)

# No re, ipaddress, dataclasses or typing at run time: they would cost more than the rest of
# a syntax check. The checks below spell out, character by character, what regular expressions
# said before; they are ASCII only except where noted (Unicode letters and digits, as in \w).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Mapping
    from typing import Optional, Union

    from ocf_shim import Handler

    IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
    Value = Union[str, int, bool, None]

_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_LETTERS = _LOWER | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_ALNUM = _LETTERS | _DIGITS
_LOWER_HEX = frozenset("0123456789abcdef")
_HEX = _DIGITS | frozenset("abcdefABCDEF")
_ROLE_NAME_CHARS = _ALNUM | frozenset("_+=,.@-")
_ROLE_PATH_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))
_HOST_CHARS = _ALNUM | frozenset(".-")
_LABEL_CHARS = _ALNUM | frozenset("-")
_BRACKETED_CHARS = frozenset("0123456789ABCDEFabcdef:.")
_PATH_CHARS = _ALNUM | frozenset("_.~%/-")
# RFC 3986 userinfo: unreserved, sub-delims and ":" (and %XX, checked apart)
_USERINFO_CHARS = _ALNUM | frozenset("-._~!$&'()*+,;=:")
PATH_MAX = 4096  # the kernel's limit for a path, its final NUL included


def _lower(text: str) -> bool:
    """One or more ASCII lower-case letters."""
    return bool(text) and _LOWER.issuperset(text)


def _digits(text: str, low: int, high: int) -> bool:
    """``low`` to ``high`` ASCII digits."""
    return low <= len(text) <= high and _DIGITS.issuperset(text)


def _run(text: str, start: int, chars: frozenset[str]) -> int:
    """The index of the first character at or after ``start`` that is not in ``chars``."""
    end = start
    while end < len(text) and text[end] in chars:
        end += 1
    return end


def quote(value: object, limit: int = 64) -> str:
    """A short, single-line rendering of a user's value for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def parse_ip(name: str, value: str) -> str:
    """One IPv4 or IPv6 address (no prefix, no zone), as its canonical text."""
    parsed = parse_address(value.strip())
    if parsed is None:
        raise ConfigError(f"parameter {name!r}: {quote(value)} is not an IPv4 or IPv6 address")
    version, number, text, scope = parsed
    shown = f"{text}%{scope}" if scope else text
    if (
        is_unspecified(version, number)
        or is_multicast(version, number)
        or is_loopback(version, number)
    ):
        raise ConfigError(f"parameter {name!r}: {shown} cannot be a service address")
    if is_link_local(version, number):
        raise ConfigError(f"parameter {name!r}: {shown} is link-local; use a routable address")
    if scope:
        raise ConfigError(f"parameter {name!r}: {quote(value)} has a zone; give the address alone")
    if ipv4_mapped(version, number) is not None:
        raise ConfigError(
            f"parameter {name!r}: {text} is IPv4-mapped; give the IPv4 address itself"
        )
    if is_broadcast(version, number):
        raise ConfigError(f"parameter {name!r}: {text} is the broadcast address")
    return text


def address_version(text: str) -> int:
    """4 or 6: the version of an address such as :func:`parse_ip` returns."""
    parsed = parse_address(text)
    if parsed is None:
        raise ValueError(f"{text!r} is not an IP address")
    return parsed[0]


def ip_object(text: str) -> IPAddress:
    """The :mod:`ipaddress` object of an address (imports ipaddress: for actions, not checks)."""
    import ipaddress

    return ipaddress.ip_address(text)


class HasAddress:
    """A configuration whose service address is ``ip_text`` (canonical text): ``ip`` is its
    ipaddress object, made when an action uses it (a syntax check does not)."""

    __slots__ = ()
    ip_text: str

    @property
    def ip(self) -> IPAddress:
        return ip_object(self.ip_text)

    @property
    def version(self) -> int:
        return address_version(self.ip_text)


def parse_ipv6_gateway(value: Value) -> Optional[str]:
    """A unicast IPv6 router address (link-local allowed, no zone), as its canonical text."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    # No "%zone": the link is the ENI's, whatever it is called.
    parsed = parse_address(text) if "%" not in text else None
    if (
        parsed is None
        or parsed[0] != 6
        or is_multicast(6, parsed[1])
        or is_unspecified(6, parsed[1])
        or is_loopback(6, parsed[1])
    ):
        raise ConfigError(
            f"parameter 'ipv6_gateway': {quote(value)} is not a unicast IPv6 address "
            "(e.g. the router's link-local fe80::... address)"
        )
    return parsed[2]


def parse_id(name: str, value: str, prefix: str) -> str:
    """An AWS resource id such as ``rtb-0123abcd`` (8 or 17 hex digits after the prefix)."""
    text = value.strip()
    digits = text[len(prefix) + 1 :]
    if not (
        text.startswith(prefix + "-") and len(digits) in (8, 17) and _LOWER_HEX.issuperset(digits)
    ):
        raise ConfigError(
            f"parameter {name!r}: {quote(value)} is not a {prefix}- id "
            f"(expected {prefix}- followed by 8 or 17 hexadecimal digits)"
        )
    return text


def parse_id_list(name: str, value: str, prefix: str) -> tuple[str, ...]:
    """A comma (or blank) separated list of ids, duplicates removed, order kept."""
    items = value.replace(",", " ").split()
    if not items:
        raise ConfigError(f"parameter {name!r} is empty")
    if len(items) > 50:
        raise ConfigError(f"parameter {name!r} lists {len(items)} ids; at most 50 are supported")
    return tuple(dict.fromkeys(parse_id(name, item, prefix) for item in items))


def parse_tag(name: str, value: str) -> tuple[str, str]:
    """``Key=Value`` as used to find resources by tag.

    Keys may begin with ``aws:``: only AWS may set such tags, but anyone may look them up, and
    CloudFormation tags every route table it makes that way (``aws:cloudformation:stack-name``).
    """
    key, equals, tag_value = value.strip().partition("=")
    # Key: 1-128 characters, no "=" or ",", not starting with a blank; value: up to 256, no ","
    # (EC2 allows "," in both, but "a=b,c=d" reads as two tags: refused rather than guessed).
    if not (
        equals
        and 1 <= len(key) <= 128
        and not key[0].isspace()
        and "," not in key
        and len(tag_value) <= 256
        and "," not in tag_value
    ):
        raise ConfigError(f"parameter {name!r}: {quote(value)} is not of the form Key=Value")
    return key.strip(), tag_value.strip()


IFNAMSIZ = 16  # the kernel's buffer for an interface name, its final NUL included
# Bytes the kernel's isspace() (lib/ctype.c, Latin-1) calls blank: 0xA0 is one, so a name with
# "à" (UTF-8 c3 a0) is refused by the kernel too.
_KERNEL_BLANKS = frozenset(b"\t\n\v\f\r \xa0")


def parse_interface(name: str, value: str, label_parameter: Optional[str] = None) -> str:
    """A Linux interface name, exactly as the kernel's ``dev_valid_name()`` (net/core/dev.c)
    takes one: 1 to 15 bytes (IFNAMSIZ), not ``.`` or ``..``, no ``/``, ``:`` or blank byte;
    any other byte is allowed (the shim refuses control characters in every parameter first).

    ``eth0:1`` is refused with its own reason: it is an alias label (IPaddr2, ifconfig), not an
    interface. ``label_parameter`` names the parameter that takes such a label, if the agent
    has one. Altnames (``ip link property add altname``, up to 127 bytes) are not looked up: the
    agents find the link by IFLA_IFNAME, the name ``ip addr``, labels and every other agent of
    the cluster use, and a label must begin with it.
    """
    raw = _name_bytes(value)
    device = value.partition(":")[0]
    if ":" in value and _is_kernel_name(_name_bytes(device)):
        hint = f" and {label_parameter}={quote(value)}" if label_parameter else ""
        raise ConfigError(
            f"parameter {name!r}: {quote(value)} is an alias label (IPaddr2, ifconfig), not an "
            f"interface: set {name}={quote(device)}{hint}"
        )
    if len(raw) >= IFNAMSIZ:
        raise ConfigError(
            f"parameter {name!r}: {quote(value)} is {len(raw)} bytes, but a Linux interface name "
            f"has at most {IFNAMSIZ - 1}; altnames (longer names added with 'ip link property "
            "add altname') are not looked up: give the name 'ip -brief link' shows"
        )
    if not _is_kernel_name(raw):
        raise ConfigError(
            f"parameter {name!r}: {quote(value)} is not a Linux interface name (1-15 bytes, no "
            "'/', ':' or blanks, not '.' or '..')"
        )
    return value


def _name_bytes(value: str) -> bytes:
    """The bytes the kernel would get (undecodable bytes of the environment as they were)."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return b"/"  # text no environment can carry: refused as a name


def _is_kernel_name(raw: bytes) -> bool:
    """``dev_valid_name()`` of net/core/dev.c."""
    return (
        0 < len(raw) < IFNAMSIZ
        and raw not in (b".", b"..")
        and b"/" not in raw
        and b":" not in raw
        and not _KERNEL_BLANKS.intersection(raw)
    )


def parse_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    text = value.strip().lower()
    if text not in choices:
        raise ConfigError(f"parameter {name!r}: {quote(value)} is not one of {', '.join(choices)}")
    return text


def _is_host_name(host: str) -> bool:
    """A host name as botocore's ``is_valid_endpoint_url`` takes one: dot-separated labels of
    1-63 ASCII letters, digits and ``-`` (not first or last), an optional final dot, at most
    255 characters."""
    labels = (host[:-1] if host.endswith(".") else host).split(".")
    return len(host) <= 255 and all(
        1 <= len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and _LABEL_CHARS.issuperset(label)
        for label in labels
    )


def _is_userinfo(text: str) -> bool:
    """RFC 3986 ``userinfo``: unreserved characters, sub-delims, ``:`` and ``%XX``."""
    index = 0
    while index < len(text):
        if text[index] == "%":
            if len(text[index + 1 : index + 3]) != 2 or not _HEX.issuperset(
                text[index + 1 : index + 3]
            ):
                return False
            index += 3
        elif text[index] in _USERINFO_CHARS:
            index += 1
        else:
            return False
    return bool(text)


def _host_length(rest: str) -> int:
    """The length of the host (name, or IPv6 address in brackets) that ``rest`` begins with,
    or 0 when it does not begin with one."""
    if rest.startswith("["):
        close = rest.find("]")
        inside = rest[1:close]
        if close < 0 or not 2 <= len(inside) <= 45 or not _BRACKETED_CHARS.issuperset(inside):
            return 0
        parsed = parse_address(inside)
        return close + 1 if parsed is not None and parsed[0] == 6 else 0
    end = _run(rest, 0, _HOST_CHARS)
    return end if _is_host_name(rest[:end]) else 0


def _is_url(text: str, userinfo: bool = False) -> bool:
    """``http(s)://`` host (name, or IPv6 address in brackets), ``:port`` (1-65535), ``/path``;
    with ``userinfo``, ``user:password@`` before the host too."""
    scheme, _, rest = text.partition("://")
    if scheme not in ("http", "https"):
        return False
    if userinfo and "@" in rest.split("/", 1)[0]:
        credentials, _, rest = rest.partition("@")
        if not _is_userinfo(credentials):
            return False
    end = _host_length(rest)
    if not end:
        return False
    rest = rest[end:]
    if rest.startswith(":"):
        end = _run(rest, 1, _DIGITS)
        port = rest[1:end]
        if not 1 <= len(port) <= 5 or not 1 <= int(port) <= 65535:
            return False
        rest = rest[end:]
    return not rest or (rest[0] == "/" and _PATH_CHARS.issuperset(rest))


def parse_url(name: str, value: str) -> str:
    """An http(s) URL: host name or IP address, optional port (1-65535) and path; ASCII only.
    Messages never show the password of a ``user:password@`` (refused here)."""
    text = value.strip()
    if not _is_url(text):
        raise ConfigError(f"parameter {name!r}: {redact(name, value)} is not an http(s) URL")
    return text


def parse_proxy_url(name: str, value: str) -> str:
    """An http(s) URL as :func:`parse_url`, with ``user:password@`` allowed (an authenticated
    proxy: botocore sends them as Basic proxy authorization, percent-decoded). Messages never
    show the password."""
    text = value.strip()
    if not _is_url(text, userinfo=True):
        raise ConfigError(
            f"parameter {name!r}: {redact(name, value)} is not an http(s) URL "
            "(http://[user:password@]host[:port]; '@', ':' or '/' in a password as %40, %3A, %2F)"
        )
    return text


def integer(params: Mapping[str, Value], name: str) -> Optional[int]:
    """An integer parameter, or None when unset (the shim converts them; text is checked too)."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ConfigError(f"parameter {name!r} must be an integer, got {quote(value)}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    unsigned = text[1:] if text[:1] in ("+", "-") else text
    if not _digits(unsigned, 1, 12):
        raise ConfigError(f"parameter {name!r} must be an integer, got {quote(value)}")
    return int(text)


def flag(params: Mapping[str, Value], name: str, default: bool) -> bool:
    """A boolean parameter (the shim converts them; text is parsed the way Pacemaker does)."""
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    from ocf_shim import parse_bool

    try:
        return parse_bool(str(value))
    except ValueError:
        raise ConfigError(f"parameter {name!r} must be a boolean, got {quote(value)}") from None


def parse_int_range(name: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ConfigError(f"parameter {name!r}: {value} is outside {low}..{high}")
    return value


class AwsSettings:
    """How to reach EC2: all optional; the defaults are what an EC2 instance with a role needs."""

    __slots__ = (
        "ca_bundle",
        "endpoint_url",
        "profile",
        "proxy",
        "region",
        "role_arn",
        "sts_endpoint_url",
    )

    def __init__(
        self,
        *,
        region: Optional[str] = None,
        profile: Optional[str] = None,
        role_arn: Optional[str] = None,
        endpoint_url: Optional[str] = None,
        sts_endpoint_url: Optional[str] = None,
        proxy: Optional[str] = None,
        ca_bundle: Optional[str] = None,
    ) -> None:
        self.region = region
        self.profile = profile
        self.role_arn = role_arn
        self.endpoint_url = endpoint_url
        self.sts_endpoint_url = sts_endpoint_url
        self.proxy = proxy
        self.ca_bundle = ca_bundle


def _text(params: Mapping[str, Value], name: str) -> Optional[str]:
    value = params.get(name)
    if value is None or value == "":
        return None
    return str(value)


REGION_MAX = 63  # a region name is one label of the endpoint's host name


def is_region(text: str) -> bool:
    """The generic shape of an AWS region name: ``area-name-N`` with any number of name parts
    (``eu-central-1``, ``us-gov-west-1``, ``us-isob-east-1``, ``eusc-de-east-1``): ASCII
    lower-case letters, digits only in the final number, at most 63 characters. Which regions
    exist, and in which partition, is botocore's knowledge (:mod:`ipfailover.partition`)."""
    parts = text.split("-")
    return (
        len(text) <= REGION_MAX
        and len(parts) >= 3
        and len(parts[0]) >= 2
        and all(_lower(part) for part in parts[:-1])
        and _digits(parts[-1], 1, 3)
    )


def arn_partition(arn: str) -> str:
    """The partition of an ARN: ``aws-cn`` of ``arn:aws-cn:iam::...``."""
    return arn.split(":", 2)[1]


def _is_partition(text: str) -> bool:
    """``aws``, or ``aws-`` and lower-case words (``aws-cn``, ``aws-iso-b``, ``aws-eusc``)."""
    parts = text.split("-")
    return parts[0] == "aws" and all(_lower(part) for part in parts[1:])


def _is_role_arn(text: str) -> bool:
    """``arn:<partition>:iam::<12 digits>:role/<path><name>``, with IAM's rules: the path is
    ``/`` or ``/.../`` of printable ASCII (at most 512 characters), the name 1-64 characters of
    letters, digits and ``_+=,.@-``."""
    parts = text.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2:4] != ["iam", ""]:
        return False
    _, partition, _, _, account, resource = parts
    kind, slash, path_name = resource.partition("/")
    path, _, role_name = ("/" + path_name).rpartition("/")
    return (
        _is_partition(partition)
        and _digits(account, 12, 12)
        and kind == "role"
        and bool(slash)
        and len(path) + 1 <= 512
        and path != "/"
        and _ROLE_PATH_CHARS.issuperset(path)
        and 1 <= len(role_name) <= 64
        and _ROLE_NAME_CHARS.issuperset(role_name)
    )


def parse_aws_settings(params: Mapping[str, Value]) -> AwsSettings:
    region = _text(params, "region")
    if region is not None and not is_region(region):
        raise ConfigError(f"parameter 'region': {quote(region)} is not an AWS region name")
    profile = _text(params, "profile")
    # botocore takes any section name of the AWS config files (shlex-quoted after "profile");
    # whether it is there is a fact of this node (checked when the session is made).
    if profile is not None and not (profile.strip() == profile and profile.isprintable()):
        raise ConfigError(
            f"parameter 'profile': {quote(profile)} is not a profile name (no blanks around it)"
        )
    role_arn = _text(params, "role_arn")
    if role_arn is not None and not _is_role_arn(role_arn):
        raise ConfigError(
            f"parameter 'role_arn': {quote(role_arn)} is not an IAM role ARN "
            "(arn:aws:iam::<account>:role/<name>)"
        )
    endpoint = _text(params, "endpoint_url")
    sts_endpoint = _text(params, "sts_endpoint_url")
    proxy = _text(params, "proxy")
    ca_bundle = _text(params, "ca_bundle")
    # Any absolute path the kernel takes; whether the file is there and readable is a fact of
    # this node (checked when the client is made).
    if ca_bundle is not None and not (
        ca_bundle.startswith("/")
        and len(_name_bytes(ca_bundle)) < PATH_MAX
        and ca_bundle.isprintable()
    ):
        raise ConfigError(f"parameter 'ca_bundle': {quote(ca_bundle)} is not an absolute path")
    return AwsSettings(
        region=region,
        profile=profile,
        role_arn=role_arn,
        endpoint_url=parse_url("endpoint_url", endpoint) if endpoint else None,
        sts_endpoint_url=parse_url("sts_endpoint_url", sts_endpoint) if sts_endpoint else None,
        proxy=parse_proxy_url("proxy", proxy) if proxy else None,
        ca_bundle=ca_bundle,
    )


AWS_PARAMETERS = (
    Parameter(
        "region",
        "AWS region",
        "The AWS region of the instance, e.g. eu-central-1. When unset, the agent reads it from "
        "the instance metadata service. The partition (aws, aws-cn, aws-us-gov, aws-eusc...) "
        "and the endpoints come from the installed botocore; for a region it does not know "
        "yet, set endpoint_url (and sts_endpoint_url with role_arn).",
    ),
    Parameter(
        "profile",
        "AWS CLI profile",
        "Name of a profile in the AWS shared configuration files of the user Pacemaker runs the "
        "agent as (root). When unset, the default credential chain is used: on EC2 that is the "
        "instance profile (role) of the instance, which is the recommended set-up.",
    ),
    Parameter(
        "role_arn",
        "IAM role to assume",
        "ARN of an IAM role that the agent assumes (sts:AssumeRole) with the credentials it "
        "found, before calling EC2. Use it when the instance role itself must not hold the "
        "permissions to move the address. It must be in the region's partition.",
    ),
    Parameter(
        "endpoint_url",
        "EC2 endpoint URL",
        "URL of the EC2 API endpoint, for an interface VPC endpoint or a private site. When "
        "unset, the regional public endpoint is used.",
    ),
    Parameter(
        "sts_endpoint_url",
        "STS endpoint URL",
        "URL of the STS endpoint used with role_arn (for an STS interface VPC endpoint). When "
        "unset, the regional STS endpoint is used.",
    ),
    Parameter(
        "proxy",
        "HTTPS proxy for the EC2 API",
        "Proxy URL (http://host:port, or http://user:password@host:port for a proxy that "
        "asks for Basic authentication; '@', ':' or '/' in the password as %40, %3A, %2F) for "
        "the calls to the AWS APIs. The password is never logged. The instance metadata "
        "service is never reached through it.",
    ),
    Parameter(
        "ca_bundle",
        "CA bundle",
        "Path of a PEM file with the certificate authorities to trust for the AWS API "
        "endpoints (a TLS-inspecting proxy, a private endpoint).",
    ),
)

MONITOR_API_PARAMETER = Parameter(
    "monitor_api",
    "Check the AWS side in monitor",
    "When true, every monitor also asks EC2 (one API call) whether AWS still sends the address "
    "to this instance. When false, monitor only checks the operating system side. If the AWS "
    "check cannot complete (API unreachable or throttled), monitor logs a warning and reports "
    "the state of the operating system side instead of failing the resource.",
    type="boolean",
    default=True,
)


def standard_actions(
    start: int, stop: int, monitor: int = 20, interval: int = 10
) -> tuple[ActionSpec, ...]:
    """The action list every agent advertises; no reload, no migration."""
    return (
        ActionSpec("start", timeout=start),
        ActionSpec("stop", timeout=stop),
        ActionSpec("monitor", timeout=monitor, interval=interval, depth=0),
        ActionSpec("validate-all", timeout=20),
        ActionSpec("meta-data", timeout=5),
    )


def standard_handlers(module: str) -> dict[str, Handler]:
    """The handlers of the standard actions: the functions start, stop, monitor and validate of
    ``module``, imported when an action runs (the declaration stays cheap to import)."""
    functions = {"start": "start", "stop": "stop", "monitor": "monitor", "validate-all": "validate"}
    return {action: lazy_handler(module, function) for action, function in functions.items()}
