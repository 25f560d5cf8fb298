"""aws-secip's parameters and their checks (``parse_config``), and its ``AGENT``; the actions
are in :mod:`ipfailover.secip.actions`. What a declaration may import: see
:func:`ipfailover.config.params.declare`.
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
from ipfailover.config.syntax import address_version, parse_id, parse_interface, parse_ip, quote
from ocf_shim import ConfigError, Parameter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional

    from ipfailover.config.params import AwsSettings, IPAddress, Value

NAME = "aws-secip"


def same_ip(ip: IPAddress, text: str) -> bool:
    """Whether ``text`` spells the address ``ip``; False when it is no address."""
    import ipaddress

    try:
        return ipaddress.ip_address(text) == ip
    except ValueError:
        return False


PARAMETERS = (
    Parameter(
        "ip",
        "Secondary private IP address",
        "The service address: a free private IPv4 address of the subnet of the interface's "
        "network interface (ENI), or an IPv6 address of that subnet's IPv6 CIDR block. It must "
        "not be the primary private IP of any ENI. The active node holds it as a secondary "
        "address of its ENI and configures it on the interface.",
        required=True,
        unique=True,
    ),
    Parameter(
        "interface",
        "Network interface",
        "The interface that gets the address, by the name 'ip link' shows (at most 15 "
        "bytes; not an alias label such as eth0:1, and not an altname). Its ENI (found by MAC "
        "through the instance metadata) is the one the address is assigned to.",
        default="eth0",
    ),
    Parameter(
        "cidr_netmask",
        "Prefix length on the interface",
        "Prefix length of the address as configured on the interface (1-32 for IPv4, 1-128 for "
        "IPv6). When unset, the prefix length of the ENI's subnet CIDR block as the instance "
        "metadata reports it (e.g. 24 for a /24 subnet, 64 for IPv6): the address then sits "
        "next to the primary address of the same subnet, as AWS's own tools configure "
        "secondary addresses.",
        type="integer",
    ),
    Parameter(
        "elastic_ip_allocation_id",
        "Elastic IP to move with the address",
        "Allocation id (eipalloc-...) of an Elastic IP that start associates with the address on "
        "this node's ENI (reassociation allowed), so the public address follows the service. "
        "IPv4 only. Needs ec2:AssociateAddress and ec2:DescribeAddresses.",
    ),
    Parameter(
        "unassign_on_stop",
        "Unassign the address on stop",
        "When true, stop also unassigns the address from this node's ENI, if this ENI still "
        "holds it (an address another node has taken over is never touched). When false, stop "
        "only removes the address from the interface and the next start, wherever it runs, "
        "moves it. If the AWS part of stop cannot complete, stop logs a warning and still "
        "succeeds: the address is off this node, and the next start reassigns it anyway.",
        type="boolean",
        default=True,
    ),
    MONITOR_API_PARAMETER,
    *AWS_PARAMETERS,
    *aliases.parameters(aliases.SECIP_ALIASES),
)

LONGDESC = (
    "Moves a secondary private IP address (IPv4, or IPv6) of a subnet between EC2 instances: "
    "start assigns it to the network interface (ENI) of the active node with "
    "AssignPrivateIpAddresses and AllowReassignment (IPv6 addresses are unassigned from the "
    "previous holder, then assigned), waits until EC2 shows it there, optionally re-associates "
    "an Elastic IP with it, and configures it on the interface. It replaces the pair "
    "awsvip + IPaddr2 (and awseip). All nodes must have an interface in the same subnet. The "
    "instance role needs ec2:DescribeNetworkInterfaces, ec2:AssignPrivateIpAddresses and "
    "ec2:UnassignPrivateIpAddresses (for IPv6: ec2:AssignIpv6Addresses and "
    "ec2:UnassignIpv6Addresses; with an Elastic IP: ec2:AssociateAddress and "
    "ec2:DescribeAddresses; ec2:DescribeSubnets when the metadata lacks the subnet's block, as "
    "for IPv6 before the ENI has an IPv6 address). validate-all checks the address against the "
    "subnet and the ENIs without changing anything, and the Elastic IP permission with DryRun; "
    "EC2 offers no DryRun for assigning and unassigning addresses, so those permissions show "
    "at the first start."
)


# ----------------------------------------------------------------------------- configuration


class Config(HasAddress):
    """The parameters, checked."""

    __slots__ = (
        "aws",
        "cidr_netmask",
        "eip_allocation_id",
        "interface",
        "ip_text",
        "monitor_api",
        "unassign_on_stop",
    )

    def __init__(
        self,
        *,
        ip_text: str,
        interface: str,
        cidr_netmask: Optional[int],
        eip_allocation_id: Optional[str],
        unassign_on_stop: bool,
        monitor_api: str,
        aws: AwsSettings,
    ) -> None:
        self.ip_text = ip_text
        self.interface = interface
        self.cidr_netmask = cidr_netmask
        self.eip_allocation_id = eip_allocation_id
        self.unassign_on_stop = unassign_on_stop
        self.monitor_api = monitor_api
        self.aws = aws


def parse_prefixlen(name: str, value: Value, version: int) -> int:
    """A prefix length for an address of this IP version (1..32 or 1..128)."""
    limit = 32 if version == 4 else 128
    if isinstance(value, bool):
        raise ConfigError(f"parameter {name!r}: {quote(value)} is not a prefix length")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if not text.isdigit() or len(text) > 3:
            raise ConfigError(
                f"parameter {name!r}: {quote(value)} is not a prefix length (1..{limit})"
            )
        number = int(text)
    if not 1 <= number <= limit:
        raise ConfigError(
            f"parameter {name!r}: {number} is outside 1..{limit} for an IPv{version} address"
        )
    return number


def parse_config(params: Mapping[str, Value]) -> Config:
    """Check the parameters (syntax only: nothing here asks AWS or the OS)."""
    # The incumbents' names first, so that every action sees the same settings.
    params = aliases.apply(params, aliases.SECIP_ALIASES, aliases.SECIP_CHECKS, PARAMETERS)
    ip_text = parse_ip("ip", str(params["ip"]))  # refuses IPv4-mapped IPv6 addresses too
    version = address_version(ip_text)
    netmask = params.get("cidr_netmask")
    eip = params.get("elastic_ip_allocation_id")
    eip_id = parse_id("elastic_ip_allocation_id", str(eip), "eipalloc") if eip else None
    if eip_id is not None and version == 6:
        raise ConfigError(
            f"parameter 'elastic_ip_allocation_id': Elastic IPs are IPv4 only, but ip is {ip_text}"
        )
    return Config(
        ip_text=ip_text,
        interface=parse_interface("interface", str(params.get("interface") or "eth0")),
        cidr_netmask=(
            parse_prefixlen("cidr_netmask", netmask, version)
            if netmask is not None and netmask != ""
            else None
        ),
        eip_allocation_id=eip_id,
        unassign_on_stop=flag(params, "unassign_on_stop", True),
        monitor_api=monitor_api(params),
        aws=parse_aws_settings(params),
    )


AGENT = declare(
    __name__,
    name=NAME,
    shortdesc="Secondary private IP address moved to the active node's network interface",
    longdesc=LONGDESC,
    parameters=PARAMETERS,
    parse=parse_config,
    monitor_in="watch",
    start=30,
    stop=30,
)
