"""The declaration of aws-overlayip: its parameters, ``parse_config`` and ``AGENT``. Start, stop,
monitor and validate-all live in :mod:`ipfailover.overlayip.actions`, loaded when one runs.
"""

from __future__ import annotations

from ipfailover.config import aliases
from ipfailover.config.params import (
    AWS_PARAMETERS,
    MONITOR_API_PARAMETER,
    HasAddress,
    declare,
    flag,
    monitor_api,
    parse_aws_settings,
)
from ipfailover.config.syntax import (
    is_role_arn,
    parse_choice,
    parse_id_list,
    parse_interface,
    parse_ip,
    parse_tag,
    quote,
)
from ocf_shim import ConfigError, Parameter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional

    from ipfailover.config.params import AwsSettings, Value

NAME = "aws-overlayip"
SDC_CHOICES = ("verify", "disable", "ignore")

PARAMETERS = (
    Parameter(
        "ip",
        "Overlay IP address",
        "The service address (IPv4 or IPv6), outside every CIDR block of the VPC. Clients reach "
        "it through the route tables, which the agent points at this instance's network "
        "interface.",
        required=True,
        unique=True,
    ),
    Parameter(
        "routing_table",
        "Route table ids",
        "Comma-separated ids of the route tables (rtb-...) that must route the address to the "
        "active node: usually the tables of every subnet the clients are in. Either this or "
        "routing_table_tag is required; both may be given.",
    ),
    Parameter(
        "routing_table_tag",
        "Find route tables by tag",
        "Key=Value: manage every route table of the instance's VPC that carries this tag, so "
        "tables can be added without reconfiguring the cluster. The key may be one AWS sets, "
        "such as aws:cloudformation:stack-name.",
    ),
    Parameter(
        "interface",
        "Network interface",
        "The interface that gets the address, by the name 'ip link' shows (at most 15 "
        "bytes; not an alias label such as eth0:1, which is the label parameter, and not an "
        "altname). Its ENI (found by MAC through the instance metadata) is the target of the "
        "routes.",
        default="eth0",
    ),
    Parameter(
        "create_route",
        "Create missing routes",
        "When true, start creates the route in a table that has none for the address; when "
        "false, a missing route is a configuration error.",
        type="boolean",
        default=True,
    ),
    Parameter(
        "source_dest_check",
        "Source/destination check handling",
        "AWS drops packets for the overlay address unless the ENI's source/destination check is "
        "off. verify: validate-all and start fail with a clear reason when it is on; disable: "
        "start turns it off (the instance role then needs ec2:ModifyNetworkInterfaceAttribute "
        "on the nodes' ENIs); ignore: do not look.",
        default="verify",
    ),
    Parameter(
        "label",
        "IPv4 address label",
        "Label of the IPv4 address as shown by ifconfig (must start with the interface name, "
        "e.g. eth0:ovl). Ignored for IPv6.",
    ),
    Parameter(
        "routing_table_role",
        "Role for the route tables (shared VPC)",
        "ARN of an IAM role in the account that owns the route tables (the VPC owner's, in a "
        "shared VPC) that the agent assumes, once per action, for the route table calls only: "
        "DescribeRouteTables, CreateRoute, ReplaceRoute and their DryRun checks (and the lookup "
        "by routing_table_tag, since the owner's tags are seen in its account only). Everything "
        "about this node (metadata, its network interface, the source/destination check) keeps "
        "the node's own credentials. The node's credentials assume it: the instance role's, or "
        "with role_arn set that role's (a chain: the routing role's trust policy must then name "
        "the role_arn role, and a chained session lasts at most an hour). STS is reached "
        "through the region's own endpoint, or sts_endpoint_url. Monitor then makes two calls: "
        "AssumeRole and DescribeRouteTables.",
    ),
    Parameter(
        "routing_table_external_id",
        "External id for routing_table_role",
        "The external id (sts:ExternalId) that the trust policy of routing_table_role asks "
        "for, if it does: 2 to 1224 characters of letters, digits and _+=,.@:/-.",
    ),
    MONITOR_API_PARAMETER,
    *AWS_PARAMETERS,
    *aliases.parameters(aliases.OVERLAY_ALIASES),
)

LONGDESC = (
    "Moves an overlay IP address (an address outside the VPC's CIDR blocks) between EC2 "
    "instances by pointing routes in the VPC's route tables at the network interface of the "
    "active node, and configures the address on that node. The routes of all tables are "
    "changed in parallel and verified with one DescribeRouteTables call; a missing route is "
    "created. Works across availability zones. The instance role needs "
    "ec2:DescribeRouteTables, ec2:CreateRoute and ec2:ReplaceRoute (plus "
    "ec2:DescribeNetworkInterfaces and ec2:DescribeVpcs for the checks). In a shared VPC, "
    "routing_table_role names a role of the VPC owner's account for the route table calls."
)


# ----------------------------------------------------------------------------- configuration


class Config(HasAddress):
    """The parameters, checked."""

    __slots__ = (
        "aws",
        "create_route",
        "interface",
        "ip_text",
        "label",
        "monitor_api",
        "routing_external_id",
        "routing_role",
        "source_dest_check",
        "table_ids",
        "table_tag",
    )

    def __init__(
        self,
        *,
        ip_text: str,
        table_ids: tuple[str, ...],
        table_tag: Optional[tuple[str, str]],
        interface: str,
        create_route: bool,
        source_dest_check: str,
        label: Optional[str],
        monitor_api: str,
        aws: AwsSettings,
        routing_role: Optional[str] = None,
        routing_external_id: Optional[str] = None,
    ) -> None:
        self.ip_text = ip_text
        self.table_ids = table_ids
        self.table_tag = table_tag
        self.interface = interface
        self.create_route = create_route
        self.source_dest_check = source_dest_check
        self.label = label
        self.monitor_api = monitor_api
        self.aws = aws
        self.routing_role = routing_role
        self.routing_external_id = routing_external_id

    @property
    def cidr(self) -> str:
        return f"{self.ip_text}/{32 if self.version == 4 else 128}"


def parse_config(params: Mapping[str, Value]) -> Config:
    """Check the parameters (syntax only: nothing here asks AWS or the OS)."""
    # The incumbents' names first, so that every action sees the same settings.
    params = aliases.apply(params, aliases.OVERLAY_ALIASES, aliases.OVERLAY_CHECKS, PARAMETERS)
    ip_text = parse_ip("ip", str(params["ip"]))
    tables_text = params.get("routing_table")
    tag_text = params.get("routing_table_tag")
    if not tables_text and not tag_text:
        raise ConfigError("set routing_table (rtb-... ids) or routing_table_tag (Key=Value)")
    interface = parse_interface("interface", str(params.get("interface") or "eth0"), "label")
    label = params.get("label")
    if label is not None:
        label = str(label)
        # The kernel holds a label in 15 bytes (IFNAMSIZ), not 15 characters.
        if not (label.startswith(interface) and len(label.encode()) <= 15 and label.isprintable()):
            raise ConfigError(
                f"parameter 'label': {quote(label)} must start with {interface!r} and be at "
                "most 15 bytes"
            )
    routing_role, external_id = parse_routing_role(params)
    return Config(
        ip_text=ip_text,
        table_ids=parse_id_list("routing_table", str(tables_text), "rtb") if tables_text else (),
        table_tag=parse_tag("routing_table_tag", str(tag_text)) if tag_text else None,
        interface=interface,
        create_route=flag(params, "create_route", True),
        source_dest_check=parse_choice(
            "source_dest_check", str(params.get("source_dest_check") or "verify"), SDC_CHOICES
        ),
        label=label,
        monitor_api=monitor_api(params),
        aws=parse_aws_settings(params),
        routing_role=routing_role,
        routing_external_id=external_id,
    )


def parse_routing_role(params: Mapping[str, Value]) -> tuple[Optional[str], Optional[str]]:
    """routing_table_role and routing_table_external_id, checked (the id needs the role)."""
    role = params.get("routing_table_role")
    external_id = params.get("routing_table_external_id")
    role = str(role) if role not in (None, "") else None
    external_id = str(external_id) if external_id not in (None, "") else None
    if role is not None and not is_role_arn(role):
        raise ConfigError(
            f"parameter 'routing_table_role': {quote(role)} is not an IAM role ARN "
            "(arn:aws:iam::<account>:role/<name>)"
        )
    if external_id is not None:
        import re

        if role is None:
            raise ConfigError(
                "parameter 'routing_table_external_id' is set but routing_table_role is not: "
                "the external id is given when that role is assumed"
            )
        if not re.fullmatch(r"[\w+=,.@:/-]{2,1224}", external_id, re.ASCII):
            raise ConfigError(
                f"parameter 'routing_table_external_id': {quote(external_id)} is not an external "
                "id (2 to 1224 characters of letters, digits and _+=,.@:/-)"
            )
    return role, external_id


AGENT = declare(
    __name__,
    name=NAME,
    shortdesc="Overlay IP address routed to the active node through VPC route tables",
    longdesc=LONGDESC,
    parameters=PARAMETERS,
    parse=parse_config,
    start=30,
    stop=20,
    monitor_in="watch",
)
