"""The lab's plan: what the harness decides before the server exists (plain data, JSON-able).

The harness picks namespace names, MACs and IPs itself, so it can build the namespaces while the
server is still importing moto; the server then creates the matching AWS objects.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# name -> (IPv4 CIDR, AZ letter, index of its IPv6 /64 inside the VPC /56)
SUBNETS: dict[str, tuple[str, str, int]] = {
    "a": ("10.0.1.0/24", "a", 1),
    "b": ("10.0.2.0/24", "b", 2),
    "c": ("10.0.3.0/24", "a", 3),
}
VPC_CIDR = "10.0.0.0/16"
NODE_HOST_BASE = 10  # node i of a subnet gets .10 + i
ENI_HOST_BASE = 100  # ENIs made by Lab.create_eni start at .100
ROUTE_TABLE_COUNT = 3
ROLE_NAME = "ipfailover-lab-node"
# The data plane (Lab(dataplane=True), see lab/dataplane.py): the VPC namespace's forwarding
# table and the rule that looks it up before the main table; the client namespace, in a subnet
# of its own behind the VPC router, associated with the first lab route table.
DATAPLANE_TABLE = 100
DATAPLANE_PRIORITY = 100
CLIENT_CIDR = "10.0.9.0/24"
CLIENT_IP = "10.0.9.10"
CLIENT_GATEWAY = "10.0.9.1"
CLIENT_LINK = "vclient"  # the VPC namespace's end of the client's eth0
# The public addresses of the lab's Elastic IPs (moto draws them from 127/8, which every namespace
# keeps for itself): RFC 5737's TEST-NET-2, never routed on the Internet.
PUBLIC_CIDR = "198.51.100.0/24"


@dataclass
class Timing:
    assign_delay: float = 0.3
    attach_delay: float = 1.0
    detach_delay: float = 1.0
    hotplug_delay: float = 0.0
    force_detach_delay: float = 0.2

    def update(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            if value is None:
                continue
            if key not in self.__dataclass_fields__:
                raise ValueError(f"unknown timing knob {key!r}")
            if float(value) < 0:
                raise ValueError(f"{key} must not be negative")
            setattr(self, key, float(value))


@dataclass
class NodeSpec:
    name: str
    index: int
    subnet: str
    ip: str
    mac: str
    netns: str

    @property
    def veth(self) -> str:
        """The VPC-namespace end of eth0 (and, with a device index, of hotplugged links)."""
        return veth_name(self.index, 0)


@dataclass
class LabSpec:
    region: str
    prefix: str
    nodes: list[NodeSpec]
    timing: Timing = field(default_factory=Timing)
    source_dest_check: bool = False
    dataplane: bool = False
    # EC2's request throttling, as lab.throttle.ThrottleModel.to_json() writes it ({}: AWS's
    # figures): plain JSON, like the rest of the plan the harness sends the server.
    throttle: dict[str, Any] = field(default_factory=dict)

    @property
    def vpc_netns(self) -> str:
        return f"{self.prefix}-vpc"

    @property
    def client_netns(self) -> str:
        return f"{self.prefix}-client"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LabSpec:
        return cls(
            region=data["region"],
            prefix=data["prefix"],
            nodes=[NodeSpec(**node) for node in data["nodes"]],
            timing=Timing(**data.get("timing", {})),
            source_dest_check=bool(data.get("source_dest_check", False)),
            dataplane=bool(data.get("dataplane", False)),
            throttle=dict(data.get("throttle") or {}),
        )


def veth_name(node_index: int, device_index: int) -> str:
    return f"v{node_index}d{device_index}"


def bridge_name(subnet: str) -> str:
    return f"br-{subnet}"


def gateway(subnet: str) -> str:
    """The subnet's first host: the VPC router's address, as on AWS."""
    return str(ipaddress.ip_network(SUBNETS[subnet][0]).network_address + 1)


def prefixlen(subnet: str) -> int:
    return ipaddress.ip_network(SUBNETS[subnet][0]).prefixlen


def random_mac(rng: random.Random) -> str:
    """A locally administered unicast MAC, as EC2 hands out (02:..., 06:..., 0a:...)."""
    first = rng.choice((0x02, 0x06, 0x0A, 0x0E))
    return ":".join(f"{b:02x}" for b in [first, *(rng.randrange(256) for _ in range(5))])


def plan_nodes(
    prefix: str,
    names: Sequence[str],
    node_subnets: Mapping[str, str],
    rng: random.Random,
) -> list[NodeSpec]:
    nodes = []
    per_subnet: dict[str, int] = {}
    for index, name in enumerate(names):
        if not name.isalnum() or not name.islower() or len(name) > 8:
            raise ValueError(f"node name {name!r}: use 1-8 lower-case letters or digits")
        subnet = node_subnets.get(name, "a")
        if subnet not in SUBNETS:
            raise ValueError(f"node {name}: unknown subnet {subnet!r}")
        host = NODE_HOST_BASE + per_subnet.get(subnet, 0)
        per_subnet[subnet] = per_subnet.get(subnet, 0) + 1
        net = ipaddress.ip_network(SUBNETS[subnet][0])
        nodes.append(
            NodeSpec(
                name=name,
                index=index,
                subnet=subnet,
                ip=str(net.network_address + host),
                mac=random_mac(rng),
                netns=f"{prefix}-{name}",
            )
        )
    return nodes
