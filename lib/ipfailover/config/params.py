"""Parameter declarations shared by the agents: the AWS settings, integers and flags, the
standard actions and handlers (the validators of single values are in :mod:`.syntax`).

Validators raise :class:`ocf_shim.ConfigError` (exit 6) with a reason that names the parameter
and says what a good value looks like. Hostile values are quoted with ``repr`` and cut short,
so nothing a user typed can forge log lines or exit reasons.
"""

from __future__ import annotations

from ipfailover import __version__
from ipfailover.config.syntax import (
    PATH_MAX,
    address_text,
    address_version,
    has_userinfo,
    ip_object,
    is_integer_text,
    is_mapped,
    is_region,
    is_role_arn,
    name_bytes,
    parse_address,
    parse_proxy_url,
    parse_url,
    quote,
)
from ocf_shim import ActionSpec, Agent, ConfigError, Parameter, lazy_handler

# No dataclasses or typing at run time: the syntax check imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Callable, Mapping, Sequence
    from typing import Optional, Union

    IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
    Value = Union[str, int, bool, None]


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
    address = parse_address(text) if "%" not in text else None
    # An IPv4-mapped address is none of these (as before Python 3.13).
    plain = address is not None and not is_mapped(address)
    if (
        address is None
        or address.version != 6
        or (plain and (address.is_multicast or address.is_unspecified or address.is_loopback))
    ):
        raise ConfigError(
            f"parameter 'ipv6_gateway': {quote(value)} is not a unicast IPv6 address "
            "(e.g. the router's link-local fe80::... address)"
        )
    return address_text(address)


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
    if not is_integer_text(text):
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


class AwsSettings:
    """How to reach EC2: all optional; the defaults are what an EC2 instance with a role needs."""

    __slots__ = (
        "ca_bundle",
        "endpoint_url",
        "profile",
        "proxy",
        "proxy_credentials_file",
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
        proxy_credentials_file: Optional[str] = None,
    ) -> None:
        self.region = region
        self.profile = profile
        self.role_arn = role_arn
        self.endpoint_url = endpoint_url
        self.sts_endpoint_url = sts_endpoint_url
        self.proxy = proxy
        self.proxy_credentials_file = proxy_credentials_file
        self.ca_bundle = ca_bundle


def _text(params: Mapping[str, Value], name: str) -> Optional[str]:
    value = params.get(name)
    if value is None or value == "":
        return None
    return str(value)


# The value of a CIB secret (cibsecret) in the CIB. pacemaker-execd replaces it with the value
# kept on the node before running the agent; when it cannot read that, it fails every action as
# "not configured" without running the agent, but a stop, which runs with this value as it is.
LRM_PLACEHOLDER = "lrm://"


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
    if role_arn is not None and not is_role_arn(role_arn):
        raise ConfigError(
            f"parameter 'role_arn': {quote(role_arn)} is not an IAM role ARN "
            "(arn:aws:iam::<account>:role/<name>)"
        )
    endpoint = _text(params, "endpoint_url")
    sts_endpoint = _text(params, "sts_endpoint_url")
    proxy = _text(params, "proxy")
    if proxy is not None and proxy.strip() == LRM_PLACEHOLDER:
        proxy_url: Optional[str] = LRM_PLACEHOLDER  # a fact of this node: 2 when the client is made
    else:
        proxy_url = parse_proxy_url("proxy", proxy) if proxy else None
    credentials_file = _absolute_path(params, "proxy_credentials_file")
    if credentials_file is not None and proxy_url is None:
        raise ConfigError(
            "parameter 'proxy_credentials_file' is set but 'proxy' is not: set proxy to "
            "http://host:port"
        )
    if credentials_file is not None and proxy_url is not None and has_userinfo(proxy_url):
        raise ConfigError(
            "parameters 'proxy' and 'proxy_credentials_file' both give the proxy's credentials: "
            "keep one (the proxy URL without user:password@ and the file, or the URL alone)"
        )
    return AwsSettings(
        region=region,
        profile=profile,
        role_arn=role_arn,
        endpoint_url=parse_url("endpoint_url", endpoint) if endpoint else None,
        sts_endpoint_url=parse_url("sts_endpoint_url", sts_endpoint) if sts_endpoint else None,
        proxy=proxy_url,
        ca_bundle=_absolute_path(params, "ca_bundle"),
        proxy_credentials_file=credentials_file,
    )


def _absolute_path(params: Mapping[str, Value], name: str) -> Optional[str]:
    """Any absolute path the kernel takes; whether the file is there and readable is a fact of
    this node (checked when the client is made)."""
    path = _text(params, name)
    if path is not None and not (
        path.startswith("/") and len(name_bytes(path)) < PATH_MAX and path.isprintable()
    ):
        raise ConfigError(f"parameter {name!r}: {quote(path)} is not an absolute path")
    return path


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
        "the calls to the AWS APIs (EC2, STS). The password is never logged; a parameter is "
        "kept in clear text in the CIB, so keep it in a CIB secret (cibsecret) or give the "
        "credentials in proxy_credentials_file instead. The instance metadata service is "
        "never reached through it.",
    ),
    Parameter(
        "proxy_credentials_file",
        "File with the proxy's user and password",
        "Path of a file holding one line user:password (as they are, not percent-encoded) for "
        "the proxy given in proxy (without user:password@ there). It must be a regular file "
        "owned by root with mode 0600 or 0400 on every node; otherwise the action fails on "
        "that node (exit 2).",
    ),
    Parameter(
        "ca_bundle",
        "CA bundle",
        "Path of a PEM file with the certificate authorities to trust for the AWS API "
        "endpoints (a TLS-inspecting proxy, a private endpoint).",
    ),
)

# monitor_api: "true" (the AWS check at every monitor), "false" (never), or MONITOR_API_DEEP:
# only in a monitor at OCF_CHECK_LEVEL >= DEEP_CHECK_LEVEL (and in probes). Not a boolean in
# the meta-data, so that the third value is valid; true/false are parsed as Pacemaker does.
MONITOR_API_DEEP = "deep"
DEEP_CHECK_LEVEL = 10
MONITOR_API_PARAMETER = Parameter(
    "monitor_api",
    "Check the AWS side in monitor: true, deep or false",
    "true: every monitor also asks EC2 (one API call) whether AWS still sends the address to "
    "this instance. deep: only the deep monitor does (a monitor operation with "
    f"OCF_CHECK_LEVEL={DEEP_CHECK_LEVEL}, the meta-data's monitor action of depth "
    f"{DEEP_CHECK_LEVEL}, and probes); the other monitors check the operating system side alone, "
    "which costs a small part of the CPU; configure two monitor operations (see the examples). "
    "false: monitor only checks the operating system side. If the AWS check cannot complete "
    "(API unreachable or throttled), monitor logs a warning and reports the state of the "
    "operating system side instead of failing the resource.",
    default="true",
)


def monitor_api(params: Mapping[str, Value]) -> str:
    """The monitor_api parameter: "true", "false" or MONITOR_API_DEEP (default "true", so that a
    configuration with one monitor operation keeps its AWS check)."""
    value = params.get("monitor_api")
    if isinstance(value, str) and value.strip().lower() == MONITOR_API_DEEP:
        return MONITOR_API_DEEP
    try:
        return "true" if flag(params, "monitor_api", True) else "false"
    except ConfigError:
        raise ConfigError(
            f"parameter 'monitor_api' must be true, false or {MONITOR_API_DEEP}, got {quote(value)}"
        ) from None


def declare(
    declaration: str,
    *,
    name: str,
    shortdesc: str,
    longdesc: str,
    parameters: Sequence[Parameter],
    parse: Callable[[Mapping[str, Value]], object],
    start: int,
    stop: int,
    monitor_in: str = "actions",
    deep_monitor: bool = True,
) -> Agent:
    """An agent of this package as they are all declared: the standard actions (no reload, no
    migration; monitor every 10 s at depth 0, and every 120 s at depth 10, the deep monitor of
    monitor_api=deep), whose handlers are the functions start, stop, monitor and
    validate of the ``actions`` module next to ``declaration`` (the declaration's ``__name__``),
    imported only when an action runs, so that the declaration stays cheap to import: meta-data,
    usage and the syntax check (validate-all at OCF_CHECK_LEVEL=0, or bad input in any action)
    load no client, and ipaddress and re only once a value is checked. ``monitor_in`` names
    another module of the package whose ``monitor`` handles monitor: one lighter than
    ``actions``, for the OS-only monitor that runs every few seconds (issue 16);
    ``deep_monitor=False`` for an agent without an AWS check at depth 10 (aws-health)."""
    package = declaration.rsplit(".", 1)[0]
    actions = package + ".actions"
    functions = {"start": "start", "stop": "stop", "validate-all": "validate"}
    monitor = lazy_handler(f"{package}.{monitor_in}", "monitor")
    return Agent(
        name=name,
        version=__version__,
        shortdesc=shortdesc,
        longdesc=longdesc,
        parameters=parameters,
        actions=(
            ActionSpec("start", timeout=start),
            ActionSpec("stop", timeout=stop),
            ActionSpec("monitor", timeout=20, interval=10, depth=0),
            # The deep monitor (monitor_api=deep): the AWS check, more rarely, with its own
            # timeout (pcs copies these actions into the CIB; crmsh does not).
            *(
                [ActionSpec("monitor", timeout=30, interval=120, depth=DEEP_CHECK_LEVEL)]
                if deep_monitor
                else []
            ),
            ActionSpec("validate-all", timeout=20),
            ActionSpec("meta-data", timeout=5),
        ),
        handlers={
            **{action: lazy_handler(actions, f) for action, f in functions.items()},
            "monitor": monitor,
        },
        logger="ipfailover",
        config=parse,
    )
