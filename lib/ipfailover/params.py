"""Parameter declarations shared by the agents, and pure validators for parameter values.

Validators raise :class:`ocf_shim.ConfigError` (exit 6) with a reason that names the parameter
and says what a good value looks like. Hostile values are quoted with ``repr`` and cut short,
so nothing a user typed can forge log lines or exit reasons.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional, Union

from ocf_shim import ActionSpec, ConfigError, Parameter

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Value = Union[str, int, bool, None]

_INTERFACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}$")
# ASCII only: \d and \w would also take other scripts' digits and letters.
_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]{1,2}$")
_URL_RE = re.compile(
    r"https?://(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::(?P<port>[0-9]{1,5}))?(?:/[A-Za-z0-9_.~%/-]*)?"
)
_PROFILE_RE = re.compile(r"^[\w+=,.@-]{1,128}$")
_TAG_RE = re.compile(r"^([^=\s,][^=,]{0,127})=([^,]{0,256})$")


def quote(value: object, limit: int = 64) -> str:
    """A short, single-line rendering of a user's value for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def parse_ip(name: str, value: str) -> IPAddress:
    """One IPv4 or IPv6 address (no prefix, no zone)."""
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


def parse_id(name: str, value: str, prefix: str) -> str:
    """An AWS resource id such as ``rtb-0123abcd`` (8 or 17 hex digits after the prefix)."""
    text = value.strip()
    if not re.fullmatch(re.escape(prefix) + r"-(?:[0-9a-f]{8}|[0-9a-f]{17})", text):
        raise ConfigError(
            f"parameter {name!r}: {quote(value)} is not a {prefix}- id "
            f"(expected {prefix}- followed by 8 or 17 hexadecimal digits)"
        )
    return text


def parse_id_list(name: str, value: str, prefix: str) -> tuple[str, ...]:
    """A comma (or blank) separated list of ids, duplicates removed, order kept."""
    items = [item for item in re.split(r"[,\s]+", value) if item]
    if not items:
        raise ConfigError(f"parameter {name!r} is empty")
    if len(items) > 50:
        raise ConfigError(f"parameter {name!r} lists {len(items)} ids; at most 50 are supported")
    return tuple(dict.fromkeys(parse_id(name, item, prefix) for item in items))


def parse_tag(name: str, value: str) -> tuple[str, str]:
    """``Key=Value`` as used to find resources by tag."""
    match = _TAG_RE.fullmatch(value.strip())
    if not match or match.group(1).startswith("aws:"):
        raise ConfigError(f"parameter {name!r}: {quote(value)} is not of the form Key=Value")
    return match.group(1).strip(), match.group(2).strip()


def parse_interface(name: str, value: str) -> str:
    if not _INTERFACE_RE.fullmatch(value) or value in (".", ".."):
        raise ConfigError(f"parameter {name!r}: {quote(value)} is not a network interface name")
    return value


def parse_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    text = value.strip().lower()
    if text not in choices:
        raise ConfigError(f"parameter {name!r}: {quote(value)} is not one of {', '.join(choices)}")
    return text


def parse_url(name: str, value: str) -> str:
    """An http(s) URL: host name or IP address, optional port (1-65535) and path; ASCII only."""
    text = value.strip()
    match = _URL_RE.fullmatch(text)
    port = match.group("port") if match else None
    host = match.group("host") if match else ""
    ok = match is not None and (port is None or 1 <= int(port) <= 65535)
    if ok and host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            ok = False
    if not ok:
        raise ConfigError(f"parameter {name!r}: {quote(value)} is not an http(s) URL")
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
    if not re.fullmatch(r"[+-]?[0-9]{1,12}", text):
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


@dataclass(frozen=True)
class AwsSettings:
    """How to reach EC2: all optional; the defaults are what an EC2 instance with a role needs."""

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


def parse_aws_settings(params: Mapping[str, Value]) -> AwsSettings:
    region = _text(params, "region")
    if region is not None and not _REGION_RE.fullmatch(region):
        raise ConfigError(f"parameter 'region': {quote(region)} is not an AWS region name")
    profile = _text(params, "profile")
    if profile is not None and not _PROFILE_RE.fullmatch(profile):
        raise ConfigError(f"parameter 'profile': {quote(profile)} is not a profile name")
    role_arn = _text(params, "role_arn")
    if role_arn is not None and not _ARN_RE.fullmatch(role_arn):
        raise ConfigError(
            f"parameter 'role_arn': {quote(role_arn)} is not an IAM role ARN "
            "(arn:aws:iam::<account>:role/<name>)"
        )
    endpoint = _text(params, "endpoint_url")
    sts_endpoint = _text(params, "sts_endpoint_url")
    proxy = _text(params, "proxy")
    ca_bundle = _text(params, "ca_bundle")
    if ca_bundle is not None and not re.fullmatch(r"/[\w./+-]{1,1023}", ca_bundle):
        raise ConfigError(f"parameter 'ca_bundle': {quote(ca_bundle)} is not an absolute path")
    return AwsSettings(
        region=region,
        profile=profile,
        role_arn=role_arn,
        endpoint_url=parse_url("endpoint_url", endpoint) if endpoint else None,
        sts_endpoint_url=parse_url("sts_endpoint_url", sts_endpoint) if sts_endpoint else None,
        proxy=parse_url("proxy", proxy) if proxy else None,
        ca_bundle=ca_bundle,
    )


AWS_PARAMETERS = (
    Parameter(
        "region",
        "AWS region",
        "The AWS region of the instance, e.g. eu-central-1. When unset, the agent reads it from "
        "the instance metadata service.",
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
        "permissions to move the address.",
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
        "Proxy URL (http://host:port) for the calls to the AWS APIs. The instance metadata "
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
