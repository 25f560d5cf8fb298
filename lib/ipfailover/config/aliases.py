"""The incumbents' parameters, accepted so that a migrated primitive needs no new parameters.

aws-overlayip takes aws-vpc-move-ip's names, aws-secip those of awsvip and awseip. Each old
name is one :class:`Alias`: either it stands for one of our parameters (``native``, with a
conversion that keeps the incumbent's meaning) or it is accepted and ignored, with the reason
logged once per action. :func:`resolve` maps them before an agent parses its parameters, so
every action (validate-all included) sees the same settings. An old name and the parameter it
stands for given with different values is refused (exit 6) naming both: nothing changes meaning
silently. The meta-data lists the old names as deprecated (``Parameter.deprecated``).
"""

from __future__ import annotations

from ipfailover.config.syntax import address_text, parse_address, quote
from ocf_shim import ConfigError, Parameter, get_log, parse_bool

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Callable, Optional

    from ipfailover.config.params import Value

    # (the old parameter's value, all parameters as given) -> the native parameter's value
    Convert = Callable[[Value, Mapping[str, Value]], Value]

AWS_VPC_MOVE_IP = "aws-vpc-move-ip"
AWSVIP = "awsvip"
AWSEIP = "awseip"


def _unset(value: object) -> bool:
    return value is None or value == ""


def _text(value: Value, _params: Mapping[str, Value]) -> Value:
    return str(value).strip()


def _ip_text(value: Value) -> object:
    address = parse_address(str(value).strip())
    return str(value).strip() if address is None else address_text(address)


def _bool_text(value: Value) -> object:
    if isinstance(value, bool):
        return value
    try:
        return parse_bool(str(value))
    except ValueError:
        return str(value).strip().lower()


# How two values of a native parameter compare (default: as stripped text).
CANONICAL = {"ip": _ip_text, "monitor_api": _bool_text}


class Alias:
    """One incumbent parameter: what it stands for (``native`` and ``convert``) or, with
    ``native`` None, why it is ignored (``ignored``)."""

    __slots__ = ("convert", "ignored", "incumbent", "name", "native", "parameter")

    def __init__(
        self,
        name: str,
        incumbent: str,
        description: str,
        *,
        native: Optional[str] = None,
        convert: Convert = _text,
        ignored: Optional[str] = None,
        type: str = "string",
        defer_required: Optional[str] = None,
        how: Optional[str] = None,
    ) -> None:
        """``defer_required``: a required parameter that may be missing when this one is set
        (it stands for it, or the agent's checks give a better reason than "required")."""
        if (native is None) == (ignored is None):
            raise ValueError(f"alias {name!r}: give either native or ignored")
        self.name = name
        self.incumbent = incumbent
        self.native = native
        self.convert = convert
        self.ignored = ignored
        if native is not None:
            note = f"{incumbent}'s parameter; use {native} instead ({how or 'same meaning'})."
        else:
            note = f"accepted from {incumbent} and ignored: {ignored}."
        self.parameter = Parameter(
            name,
            f"{incumbent}: {description}",
            f"{description[:1].upper()}{description[1:]}. Kept so that a primitive moved from "
            f"{incumbent} to this agent works unchanged (see the README: migrating).",
            type=type,
            deprecated=note,
            replaces=defer_required,
        )


def parameters(aliases: Sequence[Alias]) -> tuple[Parameter, ...]:
    """The aliases' parameter declarations (deprecated), for the agent's meta-data."""
    return tuple(alias.parameter for alias in aliases)


def _stripped(value: Value) -> object:
    return str(value).strip()


def _given(params: Mapping[str, Value], declared: Mapping[str, Parameter], name: str) -> bool:
    """Whether ``name`` was set: the shim fills in defaults, so the default counts as unset."""
    value = params.get(name)
    spec = declared.get(name)
    return not _unset(value) and not (spec is not None and value == spec.default)


def resolve(
    params: Mapping[str, Value],
    aliases: Sequence[Alias],
    declared: Sequence[Parameter],
) -> dict[str, Value]:
    """``params`` with every alias that was set mapped onto its native parameter (and removed),
    ignored ones logged; then each required native parameter checked to be there.

    Values are compared as :data:`CANONICAL` says: two spellings of one IP address, or
    "yes" and "true", are the same value.
    """
    specs = {p.name: p for p in declared}
    result = dict(params)
    mapped: dict[str, str] = {}  # native -> the alias that set it
    log = get_log("ipfailover")
    for alias in aliases:
        value = params.get(alias.name)
        result.pop(alias.name, None)
        if _unset(value):
            continue
        if alias.native is None:
            log.info(
                "parameter %s=%s (%s) is ignored: %s",
                alias.name,
                quote(value),
                alias.incumbent,
                alias.ignored,
            )
            continue
        converted = alias.convert(value, params)
        native = alias.native
        same = CANONICAL.get(native, _stripped)
        if native in mapped:
            earlier = mapped[native]
            if same(result[native]) != same(converted):
                raise ConfigError(
                    f"parameters {earlier!r} and {alias.name!r} both set {native} but disagree "
                    f"({quote(params.get(earlier))} and {quote(value)}): keep one"
                )
            continue
        if _given(params, specs, native) and same(params[native]) != same(converted):
            raise ConfigError(
                f"parameters {native!r} ({quote(params[native])}) and {alias.name!r} "
                f"({alias.incumbent}'s name for it, {quote(value)}) disagree: remove "
                f"{alias.name!r}"
            )
        result[native] = converted
        mapped[native] = alias.name
    for spec in declared:
        if spec.required and _unset(result.get(spec.name)):
            raise ConfigError(f"parameter {spec.name!r} is required")
    return result


# ------------------------------------------------------------------- aws-vpc-move-ip (overlay)


def _label(value: Value, params: Mapping[str, Value]) -> Value:
    """aws-vpc-move-ip's iflabel is the part after ``<interface>:``; our label is the whole."""
    interface = str(params.get("interface") or "eth0").strip()
    return f"{interface}:{str(value).strip()}"


def _monapi(value: Value, _params: Mapping[str, Value]) -> Value:
    """monapi (a boolean, converted by the shim) onto monitor_api's true or false."""
    return "true" if value is True else "false"


def lookup_type(params: Mapping[str, Value]) -> None:
    """aws-vpc-move-ip's lookup_type: ignored, but a value it did not know is still refused."""
    value = params.get("lookup_type")
    if not _unset(value) and str(value).strip() not in ("InstanceId", "NetworkInterfaceId"):
        raise ConfigError(
            f"parameter 'lookup_type': {quote(value)} is not InstanceId or NetworkInterfaceId"
        )


AUTH_KEY = "key"
AUTH_ROLE = "role"


def auth_type(params: Mapping[str, Value]) -> None:
    """aws-vpc-move-ip's auth_type, checked against profile; nothing to map.

    ``key`` (its default) ran the AWS CLI with ``--profile <profile>`` (profile defaulting to
    ``default``): with profile set we use that profile, without it the default credential
    chain, whose shared-file step reads the ``default`` profile first, as the CLI did. ``role``
    ran the CLI with no profile: the default chain (the instance role), never an assumed role;
    a profile given with it would now be used, so the two together are refused.
    """
    value = params.get("auth_type")
    if _unset(value):
        return
    text = str(value).strip()
    if text not in (AUTH_KEY, AUTH_ROLE):
        raise ConfigError(f"parameter 'auth_type': {quote(value)} is not key or role")
    if text == AUTH_ROLE and not _unset(params.get("profile")):
        raise ConfigError(
            f"parameters 'auth_type' (role: the instance role, no profile) and 'profile' "
            f"({quote(params.get('profile'))}) disagree: remove profile to keep the instance "
            "role, or auth_type to use the profile"
        )


OVERLAY_ALIASES = (
    Alias(
        "address",
        AWS_VPC_MOVE_IP,
        "the overlay IP address (deprecated there too)",
        native="ip",
        defer_required="ip",
    ),
    Alias(
        "iflabel",
        AWS_VPC_MOVE_IP,
        "label of the address, appended to the interface name as <interface>:<iflabel>",
        native="label",
        convert=_label,
        how="label=<interface>:<iflabel>",
    ),
    Alias(
        "monapi",
        AWS_VPC_MOVE_IP,
        "check the route tables in every monitor (true) or only the address (false)",
        native="monitor_api",
        convert=_monapi,
        how="true and false alike; unlike monapi, monitor_api checks AWS by default",
        type="boolean",
    ),
    Alias(
        "lookup_type",
        AWS_VPC_MOVE_IP,
        "InstanceId or NetworkInterfaceId: what a route's target is compared with",
        native=None,
        ignored="routes are always compared with the ENI of the interface, which is right in "
        "shared VPCs too",
    ),
    Alias(
        "auth_type",
        AWS_VPC_MOVE_IP,
        "key (the AWS CLI profile) or role (the instance role)",
        native=None,
        ignored="credentials come from profile when it is set, else from the default chain "
        "(the instance role), which is what key and role meant",
    ),
    Alias(
        "awscli",
        AWS_VPC_MOVE_IP,
        "path of the AWS CLI",
        native=None,
        ignored="no AWS CLI is run: the agent calls the EC2 API itself",
    ),
    Alias(
        "awscli_timeout",
        AWS_VPC_MOVE_IP,
        "connect timeout of the AWS CLI calls",
        native=None,
        ignored="connect and read timeouts of the EC2 calls are derived from the action's "
        "timeout (connect at most 2 s) so that retries fit in it",
        type="integer",
    ),
    Alias(
        "curl_retries",
        AWS_VPC_MOVE_IP,
        "attempts of the instance metadata requests",
        native=None,
        ignored="the metadata client retries on its own within the action's timeout",
        type="integer",
    ),
    Alias(
        "curl_sleep",
        AWS_VPC_MOVE_IP,
        "seconds between the instance metadata attempts",
        native=None,
        ignored="the metadata client retries on its own within the action's timeout",
        type="integer",
    ),
)

# The incumbents' checks that need more than one parameter, run before the mapping.
OVERLAY_CHECKS = (auth_type, lookup_type)


# ------------------------------------------------------------------ awsvip, awseip (secip)

SECIP_ALIASES = (
    Alias(
        "secondary_private_ip",
        AWSVIP,
        "the secondary private IP address",
        native="ip",
        defer_required="ip",
    ),
    Alias(
        "private_ip_address",
        AWSEIP,
        "the private address the Elastic IP is associated with",
        native="ip",
        defer_required="ip",
    ),
    Alias(
        "allocation_id",
        AWSEIP,
        "allocation id (eipalloc-...) of the Elastic IP",
        native="elastic_ip_allocation_id",
        defer_required="ip",  # awseip_target says why ip is needed
    ),
    Alias(
        "elastic_ip",
        AWSEIP,
        "the Elastic IP's public address",
        native=None,
        ignored="the allocation id (allocation_id or elastic_ip_allocation_id) names the "
        "Elastic IP",
        defer_required="ip",
    ),
    Alias(
        "api_delay",
        "awsvip/awseip",
        "seconds to sleep between API calls",
        native=None,
        ignored="start confirms each change by polling EC2 within the action's timeout "
        "instead of sleeping",
        type="integer",
    ),
    Alias(
        "awscli",
        "awsvip/awseip",
        "path of the AWS CLI",
        native=None,
        ignored="no AWS CLI is run: the agent calls the EC2 API itself",
    ),
)


def awseip_target(params: Mapping[str, Value]) -> None:
    """awseip without private_ip_address associates the Elastic IP with the node's primary
    private address: a different resource, which aws-secip must not manage."""
    eip = params.get("allocation_id") or params.get("elastic_ip")
    if _unset(eip):
        return
    if _unset(params.get("allocation_id")) and _unset(params.get("elastic_ip_allocation_id")):
        raise ConfigError(
            "parameter 'elastic_ip' needs the Elastic IP's allocation id: set "
            "elastic_ip_allocation_id (or awseip's allocation_id) to eipalloc-..."
        )
    if _unset(params.get("private_ip_address")) and _unset(params.get("ip")):
        raise ConfigError(
            "awseip without private_ip_address moves the Elastic IP to each node's primary "
            "private address, which aws-secip does not manage (it moves a secondary address): "
            "set private_ip_address or ip to a secondary private IP of the subnet, or keep "
            "awseip for this resource"
        )


SECIP_CHECKS = (awseip_target,)


def apply(
    params: Mapping[str, Value],
    aliases: Sequence[Alias],
    checks: Sequence[Callable[[Mapping[str, Value]], None]],
    declared: Sequence[Parameter],
) -> dict[str, Value]:
    """The incumbents' checks, then :func:`resolve`: what an agent's parser calls first."""
    for check in checks:
        check(params)
    return resolve(params, aliases, declared)
