"""The declaration of aws-overlayip: its parameters, ``parse_config`` and ``AGENT``. Start, stop,
monitor and validate-all live in :mod:`ipfailover.overlayip.actions`, loaded when one runs.
"""

from __future__ import annotations

from ipfailover.config.params import (
    AWS_PARAMETERS,
    MONITOR_API_PARAMETER,
    HasAddress,
    declare,
    flag,
    parse_aws_settings,
)
from ipfailover.config.syntax import (
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
    MONITOR_API_PARAMETER,
    *AWS_PARAMETERS,
)

LONGDESC = (
    "Moves an overlay IP address (an address outside the VPC's CIDR blocks) between EC2 "
    "instances by pointing routes in the VPC's route tables at the network interface of the "
    "active node, and configures the address on that node. The routes of all tables are "
    "changed in parallel and verified with one DescribeRouteTables call; a missing route is "
    "created. Works across availability zones. The instance role needs "
    "ec2:DescribeRouteTables, ec2:CreateRoute and ec2:ReplaceRoute (plus "
    "ec2:DescribeNetworkInterfaces and ec2:DescribeVpcs for the checks)."
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
        monitor_api: bool,
        aws: AwsSettings,
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

    @property
    def cidr(self) -> str:
        return f"{self.ip_text}/{32 if self.version == 4 else 128}"


def parse_config(params: Mapping[str, Value]) -> Config:
    """Check the parameters (syntax only: nothing here asks AWS or the OS)."""
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
        monitor_api=flag(params, "monitor_api", True),
        aws=parse_aws_settings(params),
    )


AGENT = declare(
    __name__,
    name=NAME,
    shortdesc="Overlay IP address routed to the active node through VPC route tables",
    longdesc=LONGDESC,
    parameters=PARAMETERS,
    parse=parse_config,
    start=30,
    stop=20,
)
