"""aws-eni declared: parameters (the ENI, its device index, policy routing), their checks and the
agent. Its actions (:mod:`ipfailover.eni.actions`) are imported only when an action runs.
"""

from __future__ import annotations

from ipfailover.config.params import (
    AWS_PARAMETERS,
    MONITOR_API_PARAMETER,
    declare,
    flag,
    integer,
    monitor_api,
    parse_aws_settings,
    parse_ipv6_gateway,
)
from ipfailover.config.syntax import parse_id
from ocf_shim import ConfigError, Parameter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional

    from ipfailover.config.params import AwsSettings, Value

NAME = "aws-eni"

# Our routing table and rule priority: base + device_index. amazon-ec2-net-utils claims
# 10000 + 100 * card + device for both, cloud-netconfig 30000 and up, the kernel's main and
# default rules sit at 32766/32767; our rules must come before main to take effect.
TABLE_BASE = 5000
PRIORITY_BASE = 5000
DEVICE_INDEX_MAX = 99
RESERVED_TABLES = frozenset({0, 253, 254, 255})  # unspec, default, main, local
TABLE_MAX = 2**31 - 1
PRIORITY_MAX = 32765  # 32766 is the main table's rule

PARAMETERS = (
    Parameter(
        "eni_id",
        "Elastic Network Interface id",
        "The ENI (eni-...) that moves to the active node with its private IPv4 and IPv6 "
        "addresses, its Elastic IPs and its security groups. It must be in the availability zone "
        "of every node that may run the resource, and must not be the primary interface "
        "(device index 0) of any instance.",
        required=True,
        unique=True,
    ),
    Parameter(
        "device_index",
        "Device index",
        "The device index at which the ENI is attached to the active node (1-99). It must be "
        "free on every node; the link appears in the OS with the ENI's MAC address (the agent "
        "finds it by MAC, whatever udev names it).",
        type="integer",
        default=1,
    ),
    Parameter(
        "force_detach",
        "Force the detach from an unresponsive holder",
        "When the ENI is attached to another instance, start first asks EC2 for a normal "
        "detach. When this is true and the ENI has not become available after 40 % of the "
        "remaining start timeout (at most 20 s), start forces the detach. AWS caveats of a "
        "forced detach: the old instance's operating system is not told, so it keeps a stale "
        "interface; data in flight is lost; and the device index may stay blocked on the old "
        "instance until that instance is stopped, so the ENI cannot be attached there again "
        "at that index. Use it only together with fencing (STONITH) that stops the old instance. "
        "When false, a detach that hangs makes start fail with a reason that names the holder "
        "before the timeout, and nothing is forced.",
        type="boolean",
        default=False,
    ),
    Parameter(
        "policy_routing",
        "Route replies out of the ENI",
        "When true, start adds a rule 'from <address> lookup <route_table_id> priority "
        "<rule_priority>' for every address of the ENI, and in that table the subnet route and "
        "a default route via the subnet's router (the first host of the subnet's IPv4 CIDR), "
        "so replies from the ENI's addresses leave through the ENI (AWS drops them on any other "
        "interface). IPv6 addresses get their rule and the subnet's /64 route; an IPv6 default "
        "route is added only when ipv6_gateway is set. Stop removes all of it.",
        type="boolean",
        default=True,
    ),
    Parameter(
        "route_table_id",
        "Policy routing table",
        f"Number of the routing table this resource owns (default {TABLE_BASE} + device_index). "
        "Stop flushes it, so no other program may use it. The default keeps clear of "
        "amazon-ec2-net-utils (10000 + 100 * card + device index), cloud-netconfig (30000 and "
        "up) and the kernel's tables 253-255.",
        type="integer",
    ),
    Parameter(
        "rule_priority",
        "Policy rule priority",
        f"Priority of this resource's rules (default {PRIORITY_BASE} + device_index, range "
        f"1-{PRIORITY_MAX}): lower than amazon-ec2-net-utils' 10000 + 100 * card + device "
        "index and cloud-netconfig's 30000 and up, so these rules win when a cloud helper also "
        "configures the ENI, and lower than the main table's rule 32766.",
        type="integer",
    ),
    Parameter(
        "ipv6_gateway",
        "IPv6 router for the policy routing table",
        "The IPv6 next hop of the default route in the policy routing table, usually the VPC "
        "router's link-local address as learned from router advertisements on the ENI's link "
        "(see 'ip -6 route show dev <link> proto ra'). When unset, IPv6 replies to clients "
        "outside the ENI's subnet follow the main routing table.",
    ),
    MONITOR_API_PARAMETER,
    *AWS_PARAMETERS,
)

LONGDESC = (
    "Moves an Elastic Network Interface (ENI) to the active node: detaches it from the instance "
    "that holds it, waits until it is available, attaches it at device_index, waits for the "
    "attachment and for the link with the ENI's MAC address to appear, brings the link up, "
    "configures the ENI's private IPv4 and IPv6 addresses with the subnet's prefix length and "
    "installs policy routing so that replies leave through the ENI. Everything the ENI carries "
    "(Elastic IPs, security groups) follows it. All nodes must be in the ENI's availability "
    "zone. The instance role needs ec2:DescribeNetworkInterfaces, ec2:DescribeSubnets, "
    "ec2:AttachNetworkInterface and ec2:DetachNetworkInterface."
)


# ----------------------------------------------------------------------------- configuration


class Config:
    """The parameters, checked."""

    __slots__ = (
        "aws",
        "device_index",
        "eni_id",
        "force_detach",
        "ipv6_gateway",
        "monitor_api",
        "policy_routing",
        "priority",
        "table",
    )

    def __init__(
        self,
        *,
        eni_id: str,
        device_index: int,
        force_detach: bool,
        policy_routing: bool,
        table: int,
        priority: int,
        ipv6_gateway: Optional[str],
        monitor_api: str,
        aws: AwsSettings,
    ) -> None:
        self.eni_id = eni_id
        self.device_index = device_index
        self.force_detach = force_detach
        self.policy_routing = policy_routing
        self.table = table
        self.priority = priority
        self.ipv6_gateway = ipv6_gateway
        self.monitor_api = monitor_api
        self.aws = aws


def parse_config(params: Mapping[str, Value]) -> Config:
    """Check the parameters (syntax only: nothing here asks AWS or the OS)."""
    eni_id = parse_id("eni_id", str(params.get("eni_id") or ""), "eni")
    device_index = integer(params, "device_index")
    if device_index is None:
        device_index = 1
    if not 1 <= device_index <= DEVICE_INDEX_MAX:
        raise ConfigError(
            f"parameter 'device_index': {device_index} is outside 1..{DEVICE_INDEX_MAX} "
            "(0 is the instance's primary interface)"
        )
    table = integer(params, "route_table_id")
    if table is None:
        table = TABLE_BASE + device_index
    if not 1 <= table <= TABLE_MAX or table in RESERVED_TABLES:
        raise ConfigError(
            f"parameter 'route_table_id': {table} is not usable (1..{TABLE_MAX}, except the "
            "kernel's tables 253 default, 254 main and 255 local)"
        )
    priority = integer(params, "rule_priority")
    if priority is None:
        priority = PRIORITY_BASE + device_index
    if not 1 <= priority <= PRIORITY_MAX:
        raise ConfigError(
            f"parameter 'rule_priority': {priority} is outside 1..{PRIORITY_MAX} (rules at "
            "32766 and later come after the main table and would never be used)"
        )
    return Config(
        eni_id=eni_id,
        device_index=device_index,
        force_detach=flag(params, "force_detach", False),
        policy_routing=flag(params, "policy_routing", True),
        table=table,
        priority=priority,
        ipv6_gateway=parse_ipv6_gateway(params.get("ipv6_gateway")),
        monitor_api=monitor_api(params),
        aws=parse_aws_settings(params),
    )


AGENT = declare(
    __name__,
    name=NAME,
    shortdesc="Elastic Network Interface moved to the active node, with policy routing",
    longdesc=LONGDESC,
    parameters=PARAMETERS,
    parse=parse_config,
    start=60,
    stop=60,
    monitor_in="watch",
)
