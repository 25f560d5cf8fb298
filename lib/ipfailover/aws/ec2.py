"""One small function per EC2 call, returning plain typed views of the answers.

Each function makes exactly one request through :class:`ipfailover.aws.client.Api`, so the number of
API calls an action makes can be read off the code. Callers decide what to do with the views.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from ipfailover.aws.client import Api


def destination_key(cidr: str) -> str:
    """``DestinationCidrBlock`` or ``DestinationIpv6CidrBlock``, by the family of ``cidr``."""
    network = ipaddress.ip_network(cidr, strict=False)
    return "DestinationCidrBlock" if network.version == 4 else "DestinationIpv6CidrBlock"


def _send(api: Api, operation: str, kwargs: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    """Make a changing call, or only check with ``DryRun=True`` that it would be allowed."""
    if dry_run:
        api.dry_run(operation, **kwargs)
        return {}
    return api.call(operation, **kwargs)


# ----------------------------------------------------------------------------- route tables


@dataclass(frozen=True)
class Route:
    destination: str
    eni_id: Optional[str]
    instance_id: Optional[str]
    state: str
    other_target: Optional[str]  # a gateway, NAT gateway, peering... anything but an ENI


@dataclass(frozen=True)
class RouteTable:
    id: str
    vpc_id: str
    routes: tuple[Route, ...]
    tags: Mapping[str, str]

    def route_to(self, cidr: str) -> Optional[Route]:
        wanted = ipaddress.ip_network(cidr, strict=False)
        for route in self.routes:
            try:
                if ipaddress.ip_network(route.destination, strict=False) == wanted:
                    return route
            except ValueError:
                continue
        return None


_OTHER_TARGETS = (
    "GatewayId",
    "NatGatewayId",
    "TransitGatewayId",
    "VpcPeeringConnectionId",
    "EgressOnlyInternetGatewayId",
    "CarrierGatewayId",
    "LocalGatewayId",
    "CoreNetworkArn",
)


def _route(raw: dict[str, Any]) -> Route:
    destination = raw.get("DestinationCidrBlock") or raw.get("DestinationIpv6CidrBlock") or ""
    other = next((str(raw[key]) for key in _OTHER_TARGETS if raw.get(key)), None)
    return Route(
        destination=str(destination),
        eni_id=raw.get("NetworkInterfaceId"),
        instance_id=raw.get("InstanceId"),
        state=str(raw.get("State", "active")),
        other_target=other,
    )


def describe_route_tables(
    api: Api,
    table_ids: Sequence[str] = (),
    tag: Optional[tuple[str, str]] = None,
    vpc_id: Optional[str] = None,
) -> list[RouteTable]:
    """The route tables with these ids, or those carrying this tag (in this VPC)."""
    kwargs: dict[str, Any] = {}
    filters: list[dict[str, Any]] = []
    if table_ids:
        kwargs["RouteTableIds"] = list(table_ids)
    if tag is not None:
        filters.append({"Name": f"tag:{tag[0]}", "Values": [tag[1]]})
    if vpc_id is not None:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    if filters:
        kwargs["Filters"] = filters
    response = api.call("DescribeRouteTables", **kwargs)
    tables = [
        RouteTable(
            id=str(raw["RouteTableId"]),
            vpc_id=str(raw.get("VpcId", "")),
            routes=tuple(_route(route) for route in raw.get("Routes", [])),
            tags={str(t["Key"]): str(t.get("Value", "")) for t in raw.get("Tags", [])},
        )
        for raw in response.get("RouteTables", [])
    ]
    if tag is None:
        return tables
    # EC2's filter reads * and ? in the value as wildcards: a table is ours only when its tag is
    # exactly the configured one (a tag value "lab*" must not take over "lab-other"'s tables).
    return [table for table in tables if table.tags.get(tag[0]) == tag[1]]


def create_route(api: Api, table_id: str, cidr: str, eni_id: str, dry_run: bool = False) -> None:
    kwargs = {"RouteTableId": table_id, destination_key(cidr): cidr, "NetworkInterfaceId": eni_id}
    _send(api, "CreateRoute", kwargs, dry_run)


def replace_route(api: Api, table_id: str, cidr: str, eni_id: str, dry_run: bool = False) -> None:
    kwargs = {"RouteTableId": table_id, destination_key(cidr): cidr, "NetworkInterfaceId": eni_id}
    _send(api, "ReplaceRoute", kwargs, dry_run)


# ----------------------------------------------------------------------------- VPCs and subnets


@dataclass(frozen=True)
class Vpc:
    id: str
    cidrs: tuple[str, ...]  # IPv4 and IPv6 blocks that are associated


def describe_vpc(api: Api, vpc_id: str) -> Vpc:
    raw = api.call("DescribeVpcs", VpcIds=[vpc_id])["Vpcs"][0]
    cidrs = [
        assoc["CidrBlock"]
        for assoc in raw.get("CidrBlockAssociationSet", [])
        if assoc.get("CidrBlockState", {}).get("State", "associated") == "associated"
    ]
    if not cidrs and raw.get("CidrBlock"):
        cidrs.append(raw["CidrBlock"])
    cidrs += [
        assoc["Ipv6CidrBlock"]
        for assoc in raw.get("Ipv6CidrBlockAssociationSet", [])
        if assoc.get("Ipv6CidrBlockState", {}).get("State", "associated") == "associated"
    ]
    return Vpc(id=str(raw["VpcId"]), cidrs=tuple(str(c) for c in cidrs))


@dataclass(frozen=True)
class Subnet:
    id: str
    vpc_id: str
    az: str
    cidr: str
    ipv6_cidrs: tuple[str, ...]


def describe_subnet(api: Api, subnet_id: str) -> Subnet:
    raw = api.call("DescribeSubnets", SubnetIds=[subnet_id])["Subnets"][0]
    return Subnet(
        id=str(raw["SubnetId"]),
        vpc_id=str(raw["VpcId"]),
        az=str(raw["AvailabilityZone"]),
        cidr=str(raw["CidrBlock"]),
        ipv6_cidrs=tuple(
            str(assoc["Ipv6CidrBlock"]) for assoc in raw.get("Ipv6CidrBlockAssociationSet", [])
        ),
    )


# ----------------------------------------------------------------------------- network interfaces


@dataclass(frozen=True)
class Attachment:
    id: str
    instance_id: Optional[str]
    device_index: int
    status: str  # attaching | attached | detaching | detached


@dataclass(frozen=True)
class Eni:
    id: str
    status: str  # available | in-use | attaching | detaching ...
    subnet_id: str
    vpc_id: str
    az: str
    mac: str
    source_dest_check: bool
    primary_ip: str
    private_ips: tuple[str, ...]  # primary first
    ipv6s: tuple[str, ...]
    attachment: Optional[Attachment]


def _eni(raw: dict[str, Any]) -> Eni:
    attachment = raw.get("Attachment")
    private = [str(item["PrivateIpAddress"]) for item in raw.get("PrivateIpAddresses", [])]
    primary = str(raw.get("PrivateIpAddress", private[0] if private else ""))
    ordered = [primary] + [ip for ip in private if ip != primary] if primary else private
    return Eni(
        id=str(raw["NetworkInterfaceId"]),
        status=str(raw.get("Status", "")),
        subnet_id=str(raw.get("SubnetId", "")),
        vpc_id=str(raw.get("VpcId", "")),
        az=str(raw.get("AvailabilityZone", "")),
        mac=str(raw.get("MacAddress", "")).lower(),
        source_dest_check=bool(raw.get("SourceDestCheck", True)),
        primary_ip=primary,
        private_ips=tuple(ordered),
        ipv6s=tuple(str(item["Ipv6Address"]) for item in raw.get("Ipv6Addresses", [])),
        attachment=Attachment(
            id=str(attachment.get("AttachmentId", "")),
            instance_id=attachment.get("InstanceId"),
            device_index=int(attachment.get("DeviceIndex", -1)),
            status=str(attachment.get("Status", "")),
        )
        if attachment
        else None,
    )


def describe_enis(
    api: Api,
    eni_ids: Sequence[str] = (),
    filters: Optional[dict[str, Sequence[str]]] = None,
) -> list[Eni]:
    kwargs: dict[str, Any] = {}
    if eni_ids:
        kwargs["NetworkInterfaceIds"] = list(eni_ids)
    if filters:
        kwargs["Filters"] = [{"Name": k, "Values": list(v)} for k, v in filters.items()]
    response = api.call("DescribeNetworkInterfaces", **kwargs)
    return [_eni(raw) for raw in response.get("NetworkInterfaces", [])]


def describe_eni(api: Api, eni_id: str) -> Eni:
    return describe_enis(api, [eni_id])[0]


def set_source_dest_check(api: Api, eni_id: str, enabled: bool, dry_run: bool = False) -> None:
    kwargs = {"NetworkInterfaceId": eni_id, "SourceDestCheck": {"Value": enabled}}
    _send(api, "ModifyNetworkInterfaceAttribute", kwargs, dry_run)


# AssignPrivateIpAddresses, UnassignPrivateIpAddresses and the IPv6 pair take no DryRun: EC2 has
# no way to check those permissions without making the change.


def assign_private_ip(api: Api, eni_id: str, ip: str, allow_reassignment: bool = True) -> None:
    api.call(
        "AssignPrivateIpAddresses",
        NetworkInterfaceId=eni_id,
        PrivateIpAddresses=[ip],
        AllowReassignment=allow_reassignment,
    )


def unassign_private_ip(api: Api, eni_id: str, ip: str) -> None:
    api.call("UnassignPrivateIpAddresses", NetworkInterfaceId=eni_id, PrivateIpAddresses=[ip])


def assign_ipv6(api: Api, eni_id: str, ip: str) -> None:
    api.call("AssignIpv6Addresses", NetworkInterfaceId=eni_id, Ipv6Addresses=[ip])


def unassign_ipv6(api: Api, eni_id: str, ip: str) -> None:
    api.call("UnassignIpv6Addresses", NetworkInterfaceId=eni_id, Ipv6Addresses=[ip])


def attach_eni(
    api: Api, eni_id: str, instance_id: str, device_index: int, dry_run: bool = False
) -> Optional[str]:
    """Attach; returns the attachment id (None on a dry run)."""
    kwargs: dict[str, Any] = {
        "NetworkInterfaceId": eni_id,
        "InstanceId": instance_id,
        "DeviceIndex": device_index,
    }
    response = _send(api, "AttachNetworkInterface", kwargs, dry_run)
    return None if dry_run else str(response.get("AttachmentId", ""))


def detach_eni(api: Api, attachment_id: str, force: bool = False, dry_run: bool = False) -> None:
    kwargs: dict[str, Any] = {"AttachmentId": attachment_id, "Force": force}
    _send(api, "DetachNetworkInterface", kwargs, dry_run)


# ----------------------------------------------------------------------------- Elastic IPs


@dataclass(frozen=True)
class Address:
    allocation_id: str
    public_ip: str
    association_id: Optional[str]
    eni_id: Optional[str]
    private_ip: Optional[str]
    instance_id: Optional[str]


def describe_address(api: Api, allocation_id: str) -> Address:
    raw = api.call("DescribeAddresses", AllocationIds=[allocation_id])["Addresses"][0]
    return Address(
        allocation_id=str(raw["AllocationId"]),
        public_ip=str(raw.get("PublicIp", "")),
        association_id=raw.get("AssociationId"),
        eni_id=raw.get("NetworkInterfaceId"),
        private_ip=raw.get("PrivateIpAddress"),
        instance_id=raw.get("InstanceId"),
    )


def associate_address(
    api: Api, allocation_id: str, eni_id: str, private_ip: str, dry_run: bool = False
) -> None:
    kwargs: dict[str, Any] = {
        "AllocationId": allocation_id,
        "NetworkInterfaceId": eni_id,
        "PrivateIpAddress": private_ip,
        "AllowReassociation": True,
    }
    _send(api, "AssociateAddress", kwargs, dry_run)


def disassociate_address(api: Api, association_id: str, dry_run: bool = False) -> None:
    _send(api, "DisassociateAddress", {"AssociationId": association_id}, dry_run)
