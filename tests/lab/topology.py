"""The lab's AWS side, created in moto in-process from a LabSpec (server only; holds the lock).

One dual-stack VPC 10.0.0.0/16 + an Amazon-style /56, subnets a (AZ a), b (AZ b), c (AZ a),
three extra route tables tagged ipfailover=lab (one associated with each subnet) with a default
route to an Internet gateway, and one running instance per node with the MAC and IP the harness
chose for its eth0.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .spec import (
    CLIENT_CIDR,
    CLIENT_GATEWAY,
    CLIENT_IP,
    ROLE_NAME,
    ROUTE_TABLE_COUNT,
    SUBNETS,
    VPC_CIDR,
    LabSpec,
)

INSTANCE_TYPE = "t3.micro"


def build(backend: Any, spec: LabSpec) -> dict[str, Any]:
    region = spec.region
    vpc = backend.create_vpc(VPC_CIDR, amazon_provided_ipv6_cidr_block=True)
    backend.create_tags([vpc.id], {"Name": "ipfailover-lab", "ipfailover": "lab"})
    vpc6 = ipaddress.ip_network(vpc.get_cidr_block_association_set(ipv6=True)[0]["cidr_block"])
    six4 = list(vpc6.subnets(new_prefix=64))

    igw = backend.create_internet_gateway()
    backend.attach_internet_gateway(igw.id, vpc.id)

    subnets: dict[str, dict[str, Any]] = {}
    subnet_objs: dict[str, Any] = {}
    for name, (cidr, az_letter, index6) in SUBNETS.items():
        az = f"{region}{az_letter}"
        subnet = backend.create_subnet(
            vpc.id, cidr, ipv6_cidr_block=str(six4[index6]), availability_zone=az
        )
        backend.create_tags([subnet.id], {"Name": f"lab-{name}", "ipfailover": "lab"})
        subnet_objs[name] = subnet
        subnets[name] = {
            "name": name,
            "id": subnet.id,
            "cidr": cidr,
            "ipv6_cidr": str(six4[index6]),
            "az": az,
        }

    main_table = next(
        t
        for t in backend.route_tables.values()
        if t.vpc_id == vpc.id and t.main_association_id is not None
    )
    tables = []
    for number, subnet in zip(range(1, ROUTE_TABLE_COUNT + 1), subnet_objs.values()):
        table = backend.create_route_table(
            vpc.id,
            tags=[
                {"Key": "ipfailover", "Value": "lab"},
                {"Key": "Name", "Value": f"lab-rt{number}"},
            ],
        )
        backend.create_route(table.id, "0.0.0.0/0", gateway_id=igw.id)
        backend.associate_route_table(table.id, subnet_id=subnet.id)
        tables.append(table.id)

    group = backend.get_default_security_group(vpc.id)
    ami = next(iter(backend.amis))
    nodes: dict[str, dict[str, Any]] = {}
    for node in spec.nodes:
        subnet = subnet_objs[node.subnet]
        reservation = backend.run_instances(
            ami,
            1,
            None,
            [],
            instance_type=INSTANCE_TYPE,
            is_instance_type_default=False,
            region_name=region,
            subnet_id=subnet.id,
            private_ip=node.ip,
            nics=[],
            tags={"instance": {"Name": f"lab-{node.name}", "ipfailover": "lab"}},
            security_group_ids=[group.id] if group else [],
        )
        instance = reservation.instances[0]
        eni = instance.nics[0]
        eni.mac_address = node.mac
        instance.source_dest_check = spec.source_dest_check  # the primary ENI's, see fidelity
        nodes[node.name] = {
            "name": node.name,
            "netns": node.netns,
            "instance_id": instance.id,
            "eni_id": eni.id,
            "mac": node.mac,
            "ip": node.ip,
            "subnet": node.subnet,
            "subnet_id": subnet.id,
            "az": subnet.availability_zone,
        }

    client = None
    if spec.dataplane:
        # The client's subnet (no instance in it: the client namespace stands for anything
        # there), routed by the first lab route table, as a subnet of the clients would be.
        subnet = backend.create_subnet(vpc.id, CLIENT_CIDR, availability_zone=f"{region}a")
        backend.create_tags([subnet.id], {"Name": "lab-client", "ipfailover": "lab"})
        backend.associate_route_table(tables[0], subnet_id=subnet.id)
        client = {
            "subnet_id": subnet.id,
            "cidr": CLIENT_CIDR,
            "ip": CLIENT_IP,
            "gateway": CLIENT_GATEWAY,
            "route_table": tables[0],
            "netns": spec.client_netns,
        }

    return {
        "region": region,
        "account_id": backend.account_id,
        "vpc_id": vpc.id,
        "vpc_cidr": VPC_CIDR,
        "vpc_ipv6_cidr": str(vpc6),
        "subnets": subnets,
        "route_tables": tables,
        "main_route_table": main_table.id,
        "internet_gateway": igw.id,
        "security_group": group.id if group else None,
        "role_name": ROLE_NAME,
        "nodes": nodes,
        "client": client,
    }
