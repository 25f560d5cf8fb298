"""The lab itself: namespaces, moto fidelity fixes, fault injection, IMDS, hotplug, cleanup.

Every fidelity fix is proven through boto3 against the lab server, every OS fact through
`ip -json`. Waiting is always polling with a bound (wait_until), never a blind sleep.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, HTTPClientError, ReadTimeoutError

from lab import Lab, netns, wait_until
from lab.faults import FaultRule
from lab.harness import TESTS_DIR, exit_reason

pytestmark = pytest.mark.lab  # some tests use namespaces without the fixture

DEBIAN_PYTHON = "/usr/bin/python3"
PYTHONS = [
    pytest.param(sys.executable, id="venv"),
    pytest.param(
        DEBIAN_PYTHON,
        id="debian",
        marks=pytest.mark.skipif(not Path(DEBIAN_PYTHON).exists(), reason="no /usr/bin/python3"),
    ),
]


def error_of(call: Callable[[], Any]) -> tuple[str, int]:
    """Run an EC2 call that must fail; return (error code, HTTP status)."""
    with pytest.raises(ClientError) as info:
        call()
    response: Any = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def private_ips(lab: Lab, eni_id: str) -> list[str]:
    return [a["PrivateIpAddress"] for a in lab.eni(eni_id)["PrivateIpAddresses"]]


def links_with_mac(lab: Lab, node: str, mac: str) -> list[dict[str, Any]]:
    return [link for link in lab.ip_json(node, "addr", "show") if link["address"] == mac]


# ---- IMDS from inside a node -------------------------------------------------------------------

IMDS_CLIENT = textwrap.dedent(
    """
    import json, sys, time, urllib.request, urllib.error
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    token = None
    out = []
    for step in json.loads(sys.argv[1]):
        headers = {}
        if step.get("ttl") is not None:
            headers["X-aws-ec2-metadata-token-ttl-seconds"] = str(step["ttl"])
        if step.get("token") == "last" and token:
            headers["X-aws-ec2-metadata-token"] = token
        req = urllib.request.Request("http://169.254.169.254" + step["path"],
                                     method=step.get("method", "GET"), headers=headers)
        began = time.monotonic()
        try:
            with opener.open(req, timeout=5) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, body = err.code, err.read()
        except OSError as err:
            status, body = None, repr(err).encode()
        if step.get("method") == "PUT" and status == 200:
            try:
                token = body.decode()
            except UnicodeDecodeError:
                token = None
        try:
            text = body.decode()
        except UnicodeDecodeError:
            text = None
        out.append({"status": status, "text": text, "hex": body.hex(),
                    "elapsed": time.monotonic() - began})
    print(json.dumps(out))
    """
)


def imds(lab: Lab, node: str, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    proc = lab.ns_exec(node, [sys.executable, "-c", IMDS_CLIENT, json.dumps(steps)], check=True)
    result: list[dict[str, Any]] = json.loads(proc.stdout)
    return result


def token() -> dict[str, Any]:
    return {"method": "PUT", "path": "/latest/api/token", "ttl": 60}


def get(path: str) -> dict[str, Any]:
    return {"path": "/latest/" + path, "token": "last"}


def imds_get(lab: Lab, node: str, paths: list[str]) -> dict[str, str]:
    answers = imds(lab, node, [token()] + [get(p) for p in paths])[1:]
    for path, answer in zip(paths, answers):
        assert answer["status"] == 200, (path, answer)
    return {path: answer["text"] for path, answer in zip(paths, answers)}


# ---- namespaces --------------------------------------------------------------------------------


def test_node_namespaces_look_like_fresh_instances(lab: Lab) -> None:
    assert lab.endpoint_url.startswith("http://127.0.0.1:")
    assert lab.start_seconds > 0
    for name, node in lab.nodes.items():
        links = {link["ifname"]: link for link in lab.ip_json(name, "addr", "show")}
        assert set(links) == {"lo", "eth0"}
        eth0 = links["eth0"]
        assert eth0["address"] == node.mac
        assert "UP" in eth0["flags"]
        v4 = [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"]
        assert v4 == [(node.ip, 24)]
        lo = [a["local"] for a in links["lo"]["addr_info"] if a["family"] == "inet"]
        assert "169.254.169.254" in lo
        routes = lab.ip_json(name, "route", "show", "default")
        assert routes == [{"dst": "default", "gateway": "10.0.1.1", "dev": "eth0", "flags": []}]
        # moto agrees: the instance's primary ENI has that MAC and IP
        eni = lab.eni(node.eni_id)
        assert (eni["MacAddress"], eni["PrivateIpAddress"]) == (node.mac, node.ip)
        assert eni["Attachment"]["InstanceId"] == node.instance_id
    assert netns.lab_namespaces(lab.prefix) == sorted(
        [n.netns for n in lab.nodes.values()] + [lab.netns("vpc")]
    )


def test_topology(lab: Lab) -> None:
    ec2 = lab.ec2()
    assert lab.vpc_cidr == "10.0.0.0/16"
    assert lab.vpc_ipv6_cidr.endswith("/56")
    assert {n: (s.cidr, s.az) for n, s in lab.subnets.items()} == {
        "a": ("10.0.1.0/24", "eu-central-1a"),
        "b": ("10.0.2.0/24", "eu-central-1b"),
        "c": ("10.0.3.0/24", "eu-central-1a"),
    }
    tagged = ec2.describe_route_tables(Filters=[{"Name": "tag:ipfailover", "Values": ["lab"]}])
    assert sorted(t["RouteTableId"] for t in tagged["RouteTables"]) == sorted(lab.route_tables)
    assert all(t["VpcId"] == lab.vpc_id for t in tagged["RouteTables"])
    assert lab.nodes["a"].az == lab.nodes["b"].az == "eu-central-1a"
    subnet = ec2.describe_subnets(SubnetIds=[lab.subnets["c"].id])["Subnets"][0]
    assert subnet["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"] == lab.subnets["c"].ipv6_cidr


def test_node_in_subnet_b(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(nodes=("a", "b"), node_subnets={"b": "b"})
    b = lab.nodes["b"]
    assert (b.subnet, b.az, b.ip) == ("b", "eu-central-1b", "10.0.2.10")
    assert lab.ip_json("b", "route", "show", "default")[0]["gateway"] == "10.0.2.1"


def test_reset_gives_a_fresh_world(lab: Lab) -> None:
    old_instance = lab.nodes["a"].instance_id
    eni = lab.create_eni()
    lab.set_fault("DescribeVpcs", "throttle")
    lab.set_timing(assign_delay=0)
    netns.ip("addr", "add", "192.0.2.1/32", "dev", "lo", netns=lab.netns("a"))
    lab.reset()
    assert lab.nodes["a"].instance_id != old_instance
    assert lab.timing().assign_delay == 0.3
    error_code, _ = error_of(lambda: lab.eni(eni.id))
    assert error_code == "InvalidNetworkInterfaceID.NotFound"
    lab.ec2(bypass_faults=False).describe_vpcs()
    lo = lab.ip_json("a", "addr", "show", "lo")[0]["addr_info"]
    assert "192.0.2.1" not in [a["local"] for a in lo]
    assert lab.calls()[-1].action == "DescribeVpcs"


def test_source_dest_check_is_the_primary_enis(lab: Lab) -> None:
    ec2 = lab.ec2()
    a = lab.nodes["a"]

    def instance_flag() -> bool:
        answer = ec2.describe_instance_attribute(
            InstanceId=a.instance_id, Attribute="sourceDestCheck"
        )
        return bool(answer["SourceDestCheck"]["Value"])

    assert lab.eni(a.eni_id)["SourceDestCheck"] is False
    assert instance_flag() is False
    ec2.modify_network_interface_attribute(
        NetworkInterfaceId=a.eni_id, SourceDestCheck={"Value": True}
    )
    assert instance_flag() is True
    ec2.modify_instance_attribute(InstanceId=a.instance_id, SourceDestCheck={"Value": False})
    assert lab.eni(a.eni_id)["SourceDestCheck"] is False
    described = ec2.describe_instances(InstanceIds=[a.instance_id])["Reservations"][0]
    assert described["Instances"][0]["SourceDestCheck"] is False


# ---- fidelity a: DryRun ------------------------------------------------------------------------


def test_dry_run_changes_nothing_and_answers_dry_run_operation(lab: Lab) -> None:
    ec2 = lab.ec2()
    a, b = lab.nodes["a"], lab.nodes["b"]
    table = lab.route_tables[0]
    eni = lab.create_eni()
    allocation = lab.allocate_eip()

    def state() -> tuple[Any, ...]:
        return (
            lab.describe_route_tables(),
            lab.eni(eni.id),
            ec2.describe_addresses()["Addresses"],
            len(ec2.describe_network_interfaces()["NetworkInterfaces"]),
        )

    before = state()
    calls: list[Callable[[], Any]] = [
        lambda: ec2.create_route(
            RouteTableId=table,
            DestinationCidrBlock="192.168.0.1/32",
            NetworkInterfaceId=a.eni_id,
            DryRun=True,
        ),
        lambda: ec2.delete_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", DryRun=True),
        lambda: ec2.attach_network_interface(
            NetworkInterfaceId=eni.id, InstanceId=b.instance_id, DeviceIndex=1, DryRun=True
        ),
        lambda: ec2.associate_address(
            AllocationId=allocation, NetworkInterfaceId=a.eni_id, DryRun=True
        ),
        lambda: ec2.modify_network_interface_attribute(
            NetworkInterfaceId=a.eni_id, SourceDestCheck={"Value": True}, DryRun=True
        ),
        lambda: ec2.create_network_interface(SubnetId=lab.subnets["c"].id, DryRun=True),
        lambda: ec2.describe_route_tables(RouteTableIds=[table], DryRun=True),
        lambda: ec2.describe_instances(InstanceIds=[a.instance_id], DryRun=True),
    ]
    for call in calls:
        assert error_of(call) == ("DryRunOperation", 412)
    assert state() == before
    assert {c.status for c in lab.calls() if c.action == "CreateRoute"} == {412}


def test_dry_run_with_missing_ids_answers_not_found(lab: Lab) -> None:
    ec2 = lab.ec2()
    a = lab.nodes["a"]
    table = lab.route_tables[0]
    cases: list[tuple[str, Callable[[], Any]]] = [
        (
            "InvalidRouteTableID.NotFound",
            lambda: ec2.replace_route(
                RouteTableId="rtb-0123456789abcdef0",
                DestinationCidrBlock="192.168.0.1/32",
                NetworkInterfaceId=a.eni_id,
                DryRun=True,
            ),
        ),
        (
            "InvalidNetworkInterfaceID.NotFound",
            lambda: ec2.create_route(
                RouteTableId=table,
                DestinationCidrBlock="192.168.0.1/32",
                NetworkInterfaceId="eni-0123456789abcdef0",
                DryRun=True,
            ),
        ),
        (
            "InvalidInstanceID.NotFound",
            lambda: ec2.describe_instances(InstanceIds=["i-0123456789abcdef0"], DryRun=True),
        ),
        (
            "InvalidAllocationID.NotFound",
            lambda: ec2.associate_address(
                AllocationId="eipalloc-0123456789abcdef0",
                NetworkInterfaceId=a.eni_id,
                DryRun=True,
            ),
        ),
        (
            "InvalidSubnetID.NotFound",
            lambda: ec2.create_network_interface(SubnetId="subnet-0123456789abcdef0", DryRun=True),
        ),
    ]
    for code, call in cases:
        assert error_of(call) == (code, 400)


# ---- fidelity b: routes ------------------------------------------------------------------------


def test_route_to_an_attached_eni_carries_the_instance(lab: Lab) -> None:
    ec2 = lab.ec2()
    a = lab.nodes["a"]
    table = lab.route_tables[1]
    spare = lab.create_eni()
    ec2.create_route(
        RouteTableId=table, DestinationCidrBlock="192.168.0.1/32", NetworkInterfaceId=a.eni_id
    )
    ec2.create_route(
        RouteTableId=table, DestinationCidrBlock="192.168.0.2/32", NetworkInterfaceId=spare.id
    )
    ec2.create_route(
        RouteTableId=table, DestinationCidrBlock="192.168.0.3/32", InstanceId=a.instance_id
    )
    routes = {
        r.get("DestinationCidrBlock"): r
        for r in ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]["Routes"]
    }
    attached = routes["192.168.0.1/32"]
    assert attached["NetworkInterfaceId"] == a.eni_id
    assert attached["InstanceId"] == a.instance_id
    assert attached["InstanceOwnerId"] == lab.account_id
    assert attached["State"] == "active"
    detached = routes["192.168.0.2/32"]
    assert detached["NetworkInterfaceId"] == spare.id
    assert "InstanceId" not in detached
    assert detached["State"] == "blackhole"
    by_instance = routes["192.168.0.3/32"]
    assert (by_instance["InstanceId"], by_instance["NetworkInterfaceId"]) == (
        a.instance_id,
        a.eni_id,
    )


def test_replace_missing_route_and_create_existing_route_fail(lab: Lab) -> None:
    ec2 = lab.ec2()
    a, b = lab.nodes["a"], lab.nodes["b"]
    table = lab.route_tables[0]
    code, _ = error_of(
        lambda: ec2.replace_route(
            RouteTableId=table, DestinationCidrBlock="192.168.1.1/32", NetworkInterfaceId=a.eni_id
        )
    )
    assert code == "InvalidParameterValue"
    ec2.create_route(
        RouteTableId=table, DestinationCidrBlock="192.168.1.1/32", NetworkInterfaceId=a.eni_id
    )
    code, _ = error_of(
        lambda: ec2.create_route(
            RouteTableId=table, DestinationCidrBlock="192.168.1.1/32", NetworkInterfaceId=b.eni_id
        )
    )
    assert code == "RouteAlreadyExists"
    ec2.replace_route(
        RouteTableId=table, DestinationCidrBlock="192.168.1.1/32", NetworkInterfaceId=b.eni_id
    )
    route = next(
        r
        for r in lab.describe_route_tables()[0]["Routes"]
        if r.get("DestinationCidrBlock") == "192.168.1.1/32"
    )
    assert (route["NetworkInterfaceId"], route["InstanceId"]) == (b.eni_id, b.instance_id)


# ---- fidelity c: private IPs -------------------------------------------------------------------


def test_assign_is_asynchronous_and_reassignment_moves_the_ip(lab: Lab) -> None:
    ec2 = lab.ec2()
    a, b = lab.nodes["a"], lab.nodes["b"]
    lab.set_timing(assign_delay=0.5)  # margin for the checks made before it completes
    began = time.monotonic()
    answer = ec2.assign_private_ip_addresses(
        NetworkInterfaceId=a.eni_id, PrivateIpAddresses=["10.0.1.50"]
    )
    assert [x["PrivateIpAddress"] for x in answer["AssignedPrivateIpAddresses"]] == ["10.0.1.50"]
    assert "10.0.1.50" not in private_ips(lab, a.eni_id)
    wait_until(lambda: "10.0.1.50" in private_ips(lab, a.eni_id), what="assignment to a")
    assert time.monotonic() - began >= 0.5
    assert imds_get(lab, "a", [f"meta-data/network/interfaces/macs/{a.mac}/local-ipv4s"]) == {
        f"meta-data/network/interfaces/macs/{a.mac}/local-ipv4s": f"{a.ip}\n10.0.1.50"
    }

    ec2.assign_private_ip_addresses(
        NetworkInterfaceId=b.eni_id, PrivateIpAddresses=["10.0.1.50"], AllowReassignment=True
    )
    assert "10.0.1.50" in private_ips(lab, a.eni_id)  # still where it was, for now
    wait_until(lambda: "10.0.1.50" in private_ips(lab, b.eni_id), what="move to b")
    assert "10.0.1.50" not in private_ips(lab, a.eni_id)
    holders = ec2.describe_network_interfaces(
        Filters=[{"Name": "addresses.private-ip-address", "Values": ["10.0.1.50"]}]
    )["NetworkInterfaces"]
    assert [h["NetworkInterfaceId"] for h in holders] == [b.eni_id]


def test_assign_of_a_taken_ip_without_reassignment_fails(lab: Lab) -> None:
    ec2 = lab.ec2()
    a, b = lab.nodes["a"], lab.nodes["b"]
    lab.set_timing(assign_delay=0)
    ec2.assign_private_ip_addresses(NetworkInterfaceId=a.eni_id, PrivateIpAddresses=["10.0.1.51"])
    for flag in ({}, {"AllowReassignment": False}):
        with pytest.raises(ClientError) as info:
            ec2.assign_private_ip_addresses(
                NetworkInterfaceId=b.eni_id, PrivateIpAddresses=["10.0.1.51"], **flag
            )
        error: Any = info.value.response["Error"]
        assert error["Code"] == "InvalidParameterValue"
        assert "assigned to another network interface" in error["Message"]
    assert "10.0.1.51" in private_ips(lab, a.eni_id)
    assert "10.0.1.51" not in private_ips(lab, b.eni_id)
    # the primary IP of another ENI can never be taken
    code, _ = error_of(
        lambda: ec2.assign_private_ip_addresses(
            NetworkInterfaceId=b.eni_id, PrivateIpAddresses=[a.ip], AllowReassignment=True
        )
    )
    assert code == "InvalidParameterValue"


def test_assign_outside_the_subnet_fails_and_unassign_works(lab: Lab) -> None:
    ec2 = lab.ec2()
    a = lab.nodes["a"]
    lab.set_timing(assign_delay=0)
    for ip in ("10.0.2.50", "192.168.0.1", "10.0.1.1"):
        code, _ = error_of(
            lambda ip=ip: ec2.assign_private_ip_addresses(  # type: ignore[misc]
                NetworkInterfaceId=a.eni_id, PrivateIpAddresses=[ip]
            )
        )
        assert code == "InvalidParameterValue", ip
    ec2.assign_private_ip_addresses(NetworkInterfaceId=a.eni_id, PrivateIpAddresses=["10.0.1.52"])
    counted = ec2.assign_private_ip_addresses(
        NetworkInterfaceId=a.eni_id, SecondaryPrivateIpAddressCount=2
    )["AssignedPrivateIpAddresses"]
    assert len(counted) == 2
    assert len(private_ips(lab, a.eni_id)) == 4
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=a.eni_id, PrivateIpAddresses=["10.0.1.52"])
    assert "10.0.1.52" not in private_ips(lab, a.eni_id)
    code, _ = error_of(
        lambda: ec2.unassign_private_ip_addresses(
            NetworkInterfaceId=a.eni_id, PrivateIpAddresses=["10.0.1.52"]
        )
    )
    assert code == "InvalidParameterValue"


def test_ipv6_assign_unassign_and_no_reassignment(lab: Lab) -> None:
    ec2 = lab.ec2()
    a, b = lab.nodes["a"], lab.nodes["b"]
    lab.set_timing(assign_delay=0.1)
    ip6 = lab.subnets["a"].ipv6_cidr.split("/")[0] + "50"
    ec2.assign_ipv6_addresses(NetworkInterfaceId=a.eni_id, Ipv6Addresses=[ip6])
    wait_until(lambda: lab.eni(a.eni_id)["Ipv6Addresses"] == [{"Ipv6Address": ip6}])
    ipv6s = imds_get(lab, "a", [f"meta-data/network/interfaces/macs/{a.mac}/ipv6s"])
    assert list(ipv6s.values()) == [ip6]
    code, _ = error_of(
        lambda: ec2.assign_ipv6_addresses(NetworkInterfaceId=b.eni_id, Ipv6Addresses=[ip6])
    )
    assert code == "InvalidParameterValue"
    code, _ = error_of(
        lambda: ec2.assign_ipv6_addresses(
            NetworkInterfaceId=b.eni_id, Ipv6Addresses=["2001:db8::1"]
        )
    )
    assert code == "InvalidParameterValue"
    done = ec2.unassign_ipv6_addresses(NetworkInterfaceId=a.eni_id, Ipv6Addresses=[ip6])
    assert done["UnassignedIpv6Addresses"] == [ip6]
    assert lab.eni(a.eni_id)["Ipv6Addresses"] == []
    ec2.assign_ipv6_addresses(NetworkInterfaceId=b.eni_id, Ipv6Addresses=[ip6])
    wait_until(lambda: lab.eni(b.eni_id)["Ipv6Addresses"] == [{"Ipv6Address": ip6}])


# ---- fidelity d: Elastic IPs -------------------------------------------------------------------


def address(lab: Lab, allocation: str) -> dict[str, Any]:
    result: dict[str, Any] = lab.ec2().describe_addresses(AllocationIds=[allocation])["Addresses"][
        0
    ]
    return result


def test_eip_associates_with_a_private_ip_and_needs_allow_reassociation(lab: Lab) -> None:
    ec2 = lab.ec2()
    a, b = lab.nodes["a"], lab.nodes["b"]
    lab.set_timing(assign_delay=0)
    ec2.assign_private_ip_addresses(NetworkInterfaceId=a.eni_id, PrivateIpAddresses=["10.0.1.60"])
    allocation = lab.allocate_eip()
    association = ec2.associate_address(
        AllocationId=allocation, NetworkInterfaceId=a.eni_id, PrivateIpAddress="10.0.1.60"
    )["AssociationId"]
    eip = address(lab, allocation)
    assert eip["NetworkInterfaceId"] == a.eni_id
    assert eip["PrivateIpAddress"] == "10.0.1.60"
    assert eip["AssociationId"] == association
    assert eip["InstanceId"] == a.instance_id
    by_ip = ec2.describe_addresses(
        Filters=[{"Name": "private-ip-address", "Values": ["10.0.1.60"]}]
    )
    assert [x["AllocationId"] for x in by_ip["Addresses"]] == [allocation]

    code, _ = error_of(
        lambda: ec2.associate_address(AllocationId=allocation, NetworkInterfaceId=b.eni_id)
    )
    assert code == "Resource.AlreadyAssociated"
    ec2.associate_address(
        AllocationId=allocation, NetworkInterfaceId=b.eni_id, AllowReassociation=True
    )
    eip = address(lab, allocation)
    assert (eip["NetworkInterfaceId"], eip["PrivateIpAddress"], eip["InstanceId"]) == (
        b.eni_id,
        b.ip,
        b.instance_id,
    )
    ec2.disassociate_address(AssociationId=eip["AssociationId"])
    eip = address(lab, allocation)
    assert "NetworkInterfaceId" not in eip and "AssociationId" not in eip


def test_eip_follows_its_secondary_ip(lab: Lab) -> None:
    ec2 = lab.ec2()
    a, b = lab.nodes["a"], lab.nodes["b"]
    lab.set_timing(assign_delay=0.1)
    ec2.assign_private_ip_addresses(NetworkInterfaceId=a.eni_id, PrivateIpAddresses=["10.0.1.61"])
    wait_until(lambda: "10.0.1.61" in private_ips(lab, a.eni_id))
    allocation = lab.allocate_eip()
    ec2.associate_address(
        AllocationId=allocation, NetworkInterfaceId=a.eni_id, PrivateIpAddress="10.0.1.61"
    )
    ec2.assign_private_ip_addresses(
        NetworkInterfaceId=b.eni_id, PrivateIpAddresses=["10.0.1.61"], AllowReassignment=True
    )
    wait_until(lambda: address(lab, allocation)["NetworkInterfaceId"] == b.eni_id)
    eip = address(lab, allocation)
    assert (eip["PrivateIpAddress"], eip["InstanceId"]) == ("10.0.1.61", b.instance_id)


# ---- fidelity e: ENI attach / detach -----------------------------------------------------------


def attachment_status(lab: Lab, eni_id: str) -> str | None:
    att = lab.eni(eni_id).get("Attachment")
    return None if att is None else str(att["Status"])


def test_attach_and_detach_go_through_transition_states(lab: Lab) -> None:
    ec2 = lab.ec2()
    b = lab.nodes["b"]
    lab.set_timing(attach_delay=0.5, detach_delay=0.5)
    eni = lab.create_eni()
    assert lab.eni(eni.id)["Status"] == "available"
    began = time.monotonic()
    attachment = ec2.attach_network_interface(
        NetworkInterfaceId=eni.id, InstanceId=b.instance_id, DeviceIndex=1
    )["AttachmentId"]
    described = lab.eni(eni.id)
    assert described["Status"] == "in-use"
    assert described["Attachment"]["Status"] == "attaching"
    assert described["Attachment"]["AttachmentId"] == attachment
    assert described["Attachment"]["InstanceId"] == b.instance_id
    wait_until(lambda: attachment_status(lab, eni.id) == "attached")
    assert time.monotonic() - began >= 0.5

    began = time.monotonic()
    ec2.detach_network_interface(AttachmentId=attachment)
    assert attachment_status(lab, eni.id) == "detaching"
    wait_until(lambda: lab.eni(eni.id)["Status"] == "available")
    assert time.monotonic() - began >= 0.5
    assert attachment_status(lab, eni.id) is None


def test_attach_refusals(lab: Lab) -> None:
    ec2 = lab.ec2()
    a, b = lab.nodes["a"], lab.nodes["b"]
    lab.set_timing(attach_delay=0)
    first, second, elsewhere = lab.create_eni(), lab.create_eni(), lab.create_eni(subnet="b")
    ec2.attach_network_interface(
        NetworkInterfaceId=first.id, InstanceId=b.instance_id, DeviceIndex=1
    )
    cases = [
        ("InvalidNetworkInterface.InUse", first.id, a.instance_id, 1),
        ("InvalidParameterValue", second.id, b.instance_id, 1),  # device index taken
        ("InvalidParameterCombination", elsewhere.id, a.instance_id, 1),  # other AZ
    ]
    for code, eni_id, instance_id, index in cases:
        assert error_of(
            lambda e=eni_id, i=instance_id, d=index: ec2.attach_network_interface(  # type: ignore[misc]
                NetworkInterfaceId=e, InstanceId=i, DeviceIndex=d
            )
        ) == (code, 400)
    primary = lab.eni(a.eni_id)["Attachment"]["AttachmentId"]
    assert error_of(lambda: ec2.detach_network_interface(AttachmentId=primary))[0] == (
        "OperationNotPermitted"
    )
    assert error_of(lambda: ec2.delete_network_interface(NetworkInterfaceId=first.id))[0] == (
        "InvalidNetworkInterface.InUse"
    )


def test_hung_detach_needs_force(lab: Lab) -> None:
    ec2 = lab.ec2()
    b = lab.nodes["b"]
    lab.set_timing(attach_delay=0, detach_delay=0.05, force_detach_delay=0.2)
    eni = lab.create_eni()
    attachment = ec2.attach_network_interface(
        NetworkInterfaceId=eni.id, InstanceId=b.instance_id, DeviceIndex=1
    )["AttachmentId"]
    lab.hang_detach(eni.id)
    ec2.detach_network_interface(AttachmentId=attachment)
    # stays detaching for many times the detach delay (an observation window, polled)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        assert attachment_status(lab, eni.id) == "detaching"
        time.sleep(0.05)
    ec2.detach_network_interface(AttachmentId=attachment)  # a second normal detach: no change
    assert attachment_status(lab, eni.id) == "detaching"
    began = time.monotonic()
    ec2.detach_network_interface(AttachmentId=attachment, Force=True)
    wait_until(lambda: lab.eni(eni.id)["Status"] == "available", timeout=5)
    assert 0.2 <= time.monotonic() - began < 5


# ---- fidelity f: hotplug -----------------------------------------------------------------------


def test_hotplug_link_follows_the_attachment(lab: Lab) -> None:
    ec2 = lab.ec2()
    b = lab.nodes["b"]
    lab.set_timing(attach_delay=0.3, detach_delay=0.2, hotplug_delay=0.2)
    eni = lab.create_eni()
    began = time.monotonic()
    attachment = ec2.attach_network_interface(
        NetworkInterfaceId=eni.id, InstanceId=b.instance_id, DeviceIndex=2
    )["AttachmentId"]
    assert links_with_mac(lab, "b", eni.mac) == []
    link = wait_until(lambda: links_with_mac(lab, "b", eni.mac), what="hotplugged link")[0]
    assert time.monotonic() - began >= 0.5  # attach delay + hotplug delay
    assert link["ifname"] == "eth2"
    assert "UP" not in link["flags"]
    assert link["addr_info"] == []
    assert links_with_mac(lab, "a", eni.mac) == []
    macs = imds_get(lab, "b", ["meta-data/network/interfaces/macs/"])
    assert macs["meta-data/network/interfaces/macs/"].splitlines() == [f"{b.mac}/", f"{eni.mac}/"]
    peer = lab.ip_json("vpc", "link", "show", "v1d2")[0]
    assert peer["master"] == "br-c"

    ec2.detach_network_interface(AttachmentId=attachment)
    wait_until(lambda: not links_with_mac(lab, "b", eni.mac), what="unplugged link")
    assert lab.eni(eni.id)["Status"] == "available"
    macs = imds_get(lab, "b", ["meta-data/network/interfaces/macs/"])
    assert macs["meta-data/network/interfaces/macs/"].splitlines() == [f"{b.mac}/"]


# ---- faults ------------------------------------------------------------------------------------


def test_throttle_rate_is_deterministic(lab: Lab) -> None:
    ec2 = lab.ec2(bypass_faults=False)
    lab.set_fault("DescribeVpcs", "throttle", rate=0.5)
    outcomes = []
    for _ in range(6):
        try:
            ec2.describe_vpcs()
            outcomes.append("ok")
        except ClientError as err:
            response: Any = err.response
            outcomes.append(response["Error"]["Code"])
            assert response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert outcomes == ["ok", "RequestLimitExceeded"] * 3
    ec2.describe_subnets()  # other actions are not affected
    log = [(c.action, c.status, c.fault) for c in lab.calls()]
    assert log == [("DescribeVpcs", 200, None), ("DescribeVpcs", 503, "throttle")] * 3 + [
        ("DescribeSubnets", 200, None)
    ]
    # bypassing clients (the default for tests) are not throttled
    lab.ec2().describe_vpcs()
    lab.ec2().describe_vpcs()


def test_rate_arithmetic() -> None:
    rule = FaultRule(rate=0.3)
    hits = [n for n in range(1, 21) if rule.fires()]
    assert hits == [4, 7, 10, 14, 17, 20]
    assert [FaultRule(rate=1.0).fires() for _ in range(3)] == [True] * 3
    assert not any(FaultRule(rate=0.0).fires() for _ in range(5))


@pytest.mark.parametrize(
    ("code", "status"),
    [("UnauthorizedOperation", 403), ("InternalError", 500), ("Unavailable", 503)],
)
def test_error_code_and_status(lab: Lab, code: str, status: int) -> None:
    lab.set_fault("DescribeRouteTables", "error", code=code, status=status, node="host")
    ec2 = lab.ec2(bypass_faults=False)
    assert error_of(ec2.describe_route_tables) == (code, status)
    assert lab.calls()[-1].error_code == code


def test_latency(lab: Lab) -> None:
    lab.set_fault("DescribeVpcs", "latency", delay=0.3)
    ec2 = lab.ec2(bypass_faults=False)
    began = time.monotonic()
    ec2.describe_vpcs()
    assert time.monotonic() - began >= 0.3
    ec2.describe_subnets()
    assert [(c.action, c.status, c.fault) for c in lab.calls()] == [
        ("DescribeVpcs", 200, "latency"),
        ("DescribeSubnets", 200, None),
    ]


def test_connection_reset(lab: Lab) -> None:
    lab.set_fault("DescribeVpcs", "reset", count=1)
    ec2 = lab.ec2(bypass_faults=False)
    with pytest.raises(HTTPClientError):
        ec2.describe_vpcs()
    ec2.describe_vpcs()  # count=1: only the first call
    assert [c.fault for c in lab.calls()] == ["reset", None]


def test_black_hole_until_the_client_gives_up(lab: Lab) -> None:
    lab.set_fault("DescribeVpcs", "blackhole", delay=10)
    ec2 = lab.ec2(bypass_faults=False, read_timeout=0.5)
    began = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        ec2.describe_vpcs()
    assert 0.5 <= time.monotonic() - began < 5
    lab.clear_faults()
    ec2.describe_vpcs()  # the server is fine
    assert [c.fault for c in lab.calls()] == ["blackhole", None]


def test_count_and_node_filters(lab: Lab) -> None:
    lab.set_fault("*", "error", code="InternalError", count=2, node="host")
    lab.set_fault("*", "throttle", node="a")
    ec2 = lab.ec2(bypass_faults=False)
    results = []
    for _ in range(3):
        try:
            ec2.describe_vpcs()
            results.append("ok")
        except ClientError as err:
            response: Any = err.response
            results.append(response["Error"]["Code"])
    assert results == ["InternalError", "InternalError", "ok"]


# ---- IMDS --------------------------------------------------------------------------------------


def test_imds_requires_a_token(lab: Lab) -> None:
    answers = imds(
        lab,
        "a",
        [
            {"path": "/latest/meta-data/instance-id"},
            {"method": "PUT", "path": "/latest/api/token"},
            {"method": "PUT", "path": "/latest/api/token", "ttl": 0},
            token(),
            get("meta-data/instance-id"),
            {"path": "/latest/meta-data/instance-id", "token": None},
        ],
    )
    assert [x["status"] for x in answers] == [401, 400, 400, 200, 200, 401]
    assert answers[4]["text"] == lab.nodes["a"].instance_id


def test_imds_paths(lab: Lab) -> None:
    a = lab.nodes["a"]
    mac = f"meta-data/network/interfaces/macs/{a.mac}/"
    paths = [
        "meta-data/",
        "meta-data/instance-id",
        "meta-data/instance-type",
        "meta-data/local-ipv4",
        "meta-data/mac",
        "meta-data/placement/",
        "meta-data/placement/availability-zone",
        "meta-data/placement/region",
        "meta-data/network/interfaces/macs/",
        mac,
        mac + "interface-id",
        mac + "device-number",
        mac + "local-ipv4s",
        mac + "subnet-id",
        mac + "vpc-id",
        mac + "subnet-ipv4-cidr-block",
        mac + "vpc-ipv4-cidr-block",
        mac + "vpc-ipv4-cidr-blocks",
        mac + "security-group-ids",
        mac + "owner-id",
        "meta-data/iam/",
        "meta-data/iam/security-credentials/",
        f"meta-data/iam/security-credentials/{lab.role_name}",
        "meta-data/iam/info",
        "dynamic/instance-identity/document",
    ]
    got = imds_get(lab, "a", paths)
    assert "instance-id" in got["meta-data/"].splitlines()
    assert "placement/" in got["meta-data/"].splitlines()
    assert got["meta-data/instance-id"] == a.instance_id
    assert got["meta-data/instance-type"] == "t3.micro"
    assert got["meta-data/local-ipv4"] == a.ip
    assert got["meta-data/mac"] == a.mac
    assert set(got["meta-data/placement/"].splitlines()) >= {"availability-zone", "region"}
    assert got["meta-data/placement/availability-zone"] == "eu-central-1a"
    assert got["meta-data/placement/region"] == "eu-central-1"
    assert got["meta-data/network/interfaces/macs/"] == f"{a.mac}/"
    assert "local-ipv4s" in got[mac].splitlines()
    assert got[mac + "interface-id"] == a.eni_id
    assert got[mac + "device-number"] == "0"
    assert got[mac + "local-ipv4s"] == a.ip
    assert got[mac + "subnet-id"] == lab.subnets["a"].id
    assert got[mac + "vpc-id"] == lab.vpc_id
    assert got[mac + "subnet-ipv4-cidr-block"] == "10.0.1.0/24"
    assert got[mac + "vpc-ipv4-cidr-block"] == "10.0.0.0/16"
    assert got[mac + "vpc-ipv4-cidr-blocks"] == "10.0.0.0/16"
    assert got[mac + "security-group-ids"] == lab.security_group
    assert got[mac + "owner-id"] == lab.account_id
    assert got["meta-data/iam/"].splitlines() == ["info", "security-credentials/"]
    assert got["meta-data/iam/security-credentials/"] == lab.role_name
    creds = json.loads(got[f"meta-data/iam/security-credentials/{lab.role_name}"])
    assert creds["Code"] == "Success" and creds["Type"] == "AWS-HMAC"
    assert creds["AccessKeyId"] == a.access_key_id
    assert {"SecretAccessKey", "Token", "LastUpdated"} <= set(creds)
    assert creds["Expiration"].endswith("Z")
    assert json.loads(got["meta-data/iam/info"])["InstanceProfileArn"].endswith(lab.role_name)
    document = json.loads(got["dynamic/instance-identity/document"])
    assert {k: document[k] for k in ("region", "instanceId", "availabilityZone")} == {
        "region": "eu-central-1",
        "instanceId": a.instance_id,
        "availabilityZone": "eu-central-1a",
    }
    assert (document["accountId"], document["privateIp"]) == (lab.account_id, a.ip)
    assert document["instanceType"] == "t3.micro"
    # each node sees its own instance
    assert imds_get(lab, "b", ["meta-data/instance-id"]) == {
        "meta-data/instance-id": lab.nodes["b"].instance_id
    }


BOTOCORE_IN_NODE = textwrap.dedent(
    """
    import json, sys
    import botocore.session
    session = botocore.session.get_session()
    creds = session.get_credentials()
    client = session.create_client("ec2", region_name="eu-central-1", endpoint_url=sys.argv[1])
    reservations = client.describe_instances()["Reservations"]
    print(json.dumps({"method": creds.method, "access_key": creds.access_key,
                      "instances": sum(len(r["Instances"]) for r in reservations)}))
    """
)


@pytest.mark.parametrize("python", PYTHONS)
def test_imds_credentials_work_for_botocore_in_the_node(lab: Lab, python: str) -> None:
    proc = lab.ns_exec("a", [python, "-c", BOTOCORE_IN_NODE, lab.endpoint_url])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["method"] == "iam-role"
    assert result["access_key"] == lab.nodes["a"].access_key_id
    assert result["instances"] >= 2
    call = lab.calls(node="a")[-1]
    assert (call.action, call.status, call.access_key) == (
        "DescribeInstances",
        200,
        lab.nodes["a"].access_key_id,
    )
    assert any(c.action == "PUT /latest/api/token" for c in lab.calls(node="a", service="imds"))


def test_imds_down_resets_connections(lab: Lab) -> None:
    lab.set_imds_fault("a", "down")
    answers = imds(lab, "a", [token()])
    assert answers[0]["status"] is None
    assert "Connection" in answers[0]["text"] or "reset" in answers[0]["text"].lower()
    assert imds(lab, "b", [token()])[0]["status"] == 200  # only node a
    lab.set_imds_fault("a", None)
    assert imds(lab, "a", [token()])[0]["status"] == 200


def test_imds_slow(lab: Lab) -> None:
    lab.set_imds_fault("a", "slow", delay=0.3)
    answers = imds(lab, "a", [token(), get("meta-data/instance-id")])
    assert [x["status"] for x in answers] == [200, 200]
    assert all(x["elapsed"] >= 0.3 for x in answers)


def test_imds_stale_token_forces_a_new_token(lab: Lab) -> None:
    lab.set_imds_fault("a", "stale_token")
    answers = imds(
        lab,
        "a",
        [
            token(),
            get("meta-data/instance-id"),
            get("meta-data/instance-id"),
            token(),
            get("meta-data/instance-id"),
        ],
    )
    assert [x["status"] for x in answers] == [200, 401, 401, 200, 200]


def test_imds_disabled(lab: Lab) -> None:
    lab.set_imds_fault("a", "disabled")
    answers = imds(lab, "a", [token(), {"path": "/latest/meta-data/instance-id"}])
    assert [x["status"] for x in answers] == [403, 403]


def test_imds_garbage(lab: Lab) -> None:
    lab.set_imds_fault("a", "garbage")
    answers = imds(lab, "a", [token(), {"path": "/latest/meta-data/iam/info"}])
    assert [x["status"] for x in answers] == [200, 200]
    assert all(x["text"] is None for x in answers)  # not even UTF-8


# ---- agents as Pacemaker runs them -------------------------------------------------------------

FAKE_AGENT = textwrap.dedent(
    """\
    import json, os, socket, sys, time
    if sys.argv[1] == "sleep":
        time.sleep(60)
    with open("/sys/class/net/eth0/address") as f:
        mac = f.read().strip()
    print(json.dumps({"argv": sys.argv[1:], "env": dict(os.environ), "mac": mac}))
    print("some log", file=sys.stderr)
    print("ocf-exit-reason:first", file=sys.stderr)
    print("ocf-exit-reason:the real reason", file=sys.stderr)
    sys.exit(int(os.environ.get("OCF_RESKEY_rc", "0")))
    """
)


@pytest.mark.parametrize("python", PYTHONS)
def test_run_agent_as_pacemaker_does(lab: Lab, tmp_path: Path, python: str) -> None:
    agent = tmp_path / "fake-agent"
    agent.write_text(FAKE_AGENT)
    result = lab.run_agent(
        "b",
        agent,
        "monitor",
        {"ip": "10.0.1.50", "rc": "7"},
        timeout_ms=15000,
        interval_ms=10000,
        python=python,
    )
    assert result.rc == 7
    assert result.exit_reason == "the real reason"
    assert not result.timed_out and not result.killed
    out = json.loads(result.stdout)
    assert out["argv"] == ["monitor"]
    assert out["mac"] == lab.nodes["b"].mac  # it ran inside node b
    env = out["env"]
    expected = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "OCF_ROOT": "/usr/lib/ocf",
        "OCF_RESOURCE_INSTANCE": "lab-fake-agent",
        "OCF_RESOURCE_TYPE": "fake-agent",
        "OCF_RA_VERSION_MAJOR": "1",
        "OCF_RA_VERSION_MINOR": "1",
        "OCF_RESKEY_ip": "10.0.1.50",
        "OCF_RESKEY_rc": "7",
        "OCF_RESKEY_CRM_meta_timeout": "15000",
        "OCF_RESKEY_CRM_meta_interval": "10000",
        "HOME": str(lab.home),
        "HA_RSCTMP": str(lab.rsctmp / "b"),
    }
    if python == sys.executable:
        expected["PYTHONPATH"] = str(TESTS_DIR.parent / "lib")
    env.pop("LC_CTYPE", None)  # Python's own locale coercion
    assert env == expected
    assert list(lab.home.iterdir()) == []
    probe = lab.run_agent("b", agent, "monitor", {}, python=python)
    assert "OCF_RESKEY_CRM_meta_interval" not in json.loads(probe.stdout)["env"]


def test_run_agent_kill_after(lab: Lab, tmp_path: Path) -> None:
    agent = tmp_path / "fake-agent"
    agent.write_text(FAKE_AGENT)
    result = lab.run_agent("a", agent, "sleep", {}, kill_after=0.3)
    assert result.killed and not result.timed_out
    assert result.rc == -signal.SIGKILL
    assert result.duration < 5


def test_run_process_measures_the_process(lab: Lab) -> None:
    work = (
        "x = bytearray(64 * 1024 * 1024); sum(range(3_000_000));"
        "print(open('/sys/class/net/eth0/address').read().strip())"
    )
    result = lab.run_process("a", [sys.executable, "-c", work])
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == lab.nodes["a"].mac
    assert result.cpu_seconds > 0
    assert result.max_rss_kb > 64 * 1024
    slow = lab.run_process("a", [sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.3)
    assert slow.timed_out and slow.rc == -signal.SIGKILL


def test_exit_reason_parsing() -> None:
    assert exit_reason("x\nocf-exit-reason:one\nmore\nocf-exit-reason:two\n") == "two"
    assert exit_reason("no reason\n") is None


# ---- the network guard of the test process -----------------------------------------------------


def test_network_guard_refuses_everything_but_loopback() -> None:
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import EndpointConnectionError

    from lab import pytest_plugin as guard

    before = len(guard.violations)
    with pytest.raises(guard.NetworkGuardError):
        socket.create_connection(("169.254.169.254", 80), timeout=0.5)
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("ec2.eu-central-1.amazonaws.com", 443)
    client = botocore.session.Session().create_client(
        "ec2", region_name="eu-central-1", config=Config(retries={"total_max_attempts": 1})
    )
    with pytest.raises(EndpointConnectionError):
        client.describe_vpcs()  # no endpoint_url: would go to AWS
    assert len(guard.violations) > before + 2
    del guard.violations[before:]  # caused on purpose; do not fail this test
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert os.environ["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    with socket.socket() as server:  # loopback stays allowed
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        socket.create_connection(server.getsockname(), timeout=0.5).close()
    assert len(guard.violations) == before


# ---- cleanup -----------------------------------------------------------------------------------


def test_close_leaves_no_namespace_and_no_process(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab", nodes=("a",))
    with lab:
        pid = lab.ping()["pid"]
        assert netns.lab_namespaces(lab.prefix)
    assert not netns.pid_alive(pid)
    assert netns.lab_namespaces(lab.prefix) == []
    lab.close()  # idempotent


def test_server_cleans_up_when_the_harness_dies(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, os, sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from lab import Lab
        lab = Lab(__import__("pathlib").Path({str(tmp_path / "lab")!r}), nodes=("a",))
        lab.start()
        print(json.dumps({{"prefix": lab.prefix, "pid": lab.ping()["pid"]}}), flush=True)
        os._exit(0)  # no close(): the server must notice and clean up
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    info = json.loads(proc.stdout)
    wait_until(lambda: not netns.pid_alive(info["pid"]), timeout=10, what="server exit")
    wait_until(lambda: netns.lab_namespaces(info["prefix"]) == [], timeout=5)


def test_sweep_removes_namespaces_of_dead_creators() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"{netns.lab_prefix(dead.pid, 'dead00')}-x"
    live = f"{netns.lab_prefix(os.getpid(), 'live00')}-x"
    netns.ip_batch([f"netns add {name}", f"netns add {live}"])
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lab", "sweep"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(TESTS_DIR)},
            check=True,
        )
        assert f"deleted {name}" in proc.stdout
        assert name not in netns.list_netns()
        assert live in netns.list_netns()
    finally:
        netns.delete_netns([name, live])


def test_cli_up_runs_until_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "up", "--workdir", str(tmp_path / "up"), "--nodes", "a"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR)},
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("}"):
                break
        info = json.loads("".join(lines))
        assert info["endpoint_url"].startswith("http://127.0.0.1:")
        namespace = info["nodes"]["a"]["netns"]
        assert namespace in netns.list_netns()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert namespace not in netns.list_netns()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
