"""The lab's VPC data plane (lab.dataplane) and instance power (lab.power), without a cluster.

Packets for an address go to the node that the simulated AWS says owns it, and only there:
both nodes configure the address in their OS in most tests here, and the client (in its own
namespace behind the VPC router) must only ever be answered by the owner. One Lab with the data
plane serves the module, reset before each test.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import Lab, netns, wait_until
from lab.spec import CLIENT_IP, DATAPLANE_TABLE
from lab.traffic import Probe, Sample, Services, measure

pytestmark = pytest.mark.lab  # some tests use namespaces without the fixture

SECONDARY_IP = "10.0.1.50"
OVERLAY_IP = "192.168.100.10"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("dataplane"), dataplane=True)
    lab.start()
    try:
        yield lab
    finally:
        lab.close()
    assert netns.lab_namespaces(lab.prefix) == []


@pytest.fixture
def lab(shared: Lab) -> Lab:
    shared.reset()
    return shared


@pytest.fixture
def services(lab: Lab) -> Iterator[Services]:
    with Services(lab, ("a", "b")) as running:
        yield running


def add_address(lab: Lab, node: str, cidr: str, dev: str = "eth0") -> None:
    netns.ip("addr", "add", cidr, "dev", dev, netns=lab.netns(node))


def answers(lab: Lab, tmp_path: Path, target: str, seconds: float = 0.6) -> list[Sample]:
    """What the client gets from target during `seconds` (one request per 50 ms)."""
    with Probe(lab, target, tmp_path / f"probe-{time.monotonic_ns()}.jsonl") as probe:
        time.sleep(seconds)
    return probe.stop()


def who(samples: list[Sample]) -> set[str | None]:
    return {s.node for s in samples}


def test_the_client_sits_behind_the_vpc_router(
    lab: Lab, services: Services, tmp_path: Path
) -> None:
    assert lab.client is not None
    assert lab.client.ip == CLIENT_IP
    assert lab.client.route_table == lab.route_tables[0]
    # the client subnet exists in AWS and uses the first lab route table
    subnet = lab.ec2().describe_subnets(SubnetIds=[lab.client.subnet_id])["Subnets"][0]
    assert subnet["CidrBlock"] == "10.0.9.0/24"
    table = lab.ec2().describe_route_tables(RouteTableIds=[lab.route_tables[0]])["RouteTables"][0]
    assert lab.client.subnet_id in [a.get("SubnetId") for a in table["Associations"]]
    assert sorted(netns.lab_namespaces(lab.prefix)) == sorted(
        [n.netns for n in lab.nodes.values()] + [lab.netns("vpc"), lab.netns("client")]
    )
    rules = lab.ip_json("vpc", "rule", "show")
    assert any(r.get("table") == str(DATAPLANE_TABLE) for r in rules)
    # each node answers on its primary address: AWS forwards it to its own ENI
    for name, node in lab.nodes.items():
        assert lab.forwarded_to(node.ip) == name
        assert who(answers(lab, tmp_path, node.ip, 0.3)) == {name}


def test_secondary_ip_goes_where_aws_assigned_it(
    lab: Lab, services: Services, tmp_path: Path
) -> None:
    for node in ("a", "b"):  # both guests claim it; only AWS decides
        add_address(lab, node, f"{SECONDARY_IP}/24")
    assert lab.forwarded_to(SECONDARY_IP) is None
    assert who(answers(lab, tmp_path, SECONDARY_IP)) == {None}  # nobody owns it: black hole

    ec2 = lab.ec2()
    ec2.assign_private_ip_addresses(
        NetworkInterfaceId=lab.nodes["a"].eni_id, PrivateIpAddresses=[SECONDARY_IP]
    )
    wait_until(lambda: lab.forwarded_to(SECONDARY_IP) == "a", 2.0, what="forwarded to a")
    assert who(answers(lab, tmp_path, SECONDARY_IP)) == {"a"}

    ec2.assign_private_ip_addresses(
        NetworkInterfaceId=lab.nodes["b"].eni_id,
        PrivateIpAddresses=[SECONDARY_IP],
        AllowReassignment=True,
    )
    wait_until(lambda: lab.forwarded_to(SECONDARY_IP) == "b", 2.0, what="forwarded to b")
    assert who(answers(lab, tmp_path, SECONDARY_IP)) == {"b"}


def test_a_node_that_only_configured_the_ip_gets_nothing(
    lab: Lab, services: Services, tmp_path: Path
) -> None:
    """AWS gives the address to a, which forgot its OS side; b has it in its OS only."""
    lab.ec2().assign_private_ip_addresses(
        NetworkInterfaceId=lab.nodes["a"].eni_id, PrivateIpAddresses=[SECONDARY_IP]
    )
    add_address(lab, "b", f"{SECONDARY_IP}/24")
    wait_until(lambda: lab.forwarded_to(SECONDARY_IP) == "a", 2.0, what="forwarded to a")
    samples = answers(lab, tmp_path, SECONDARY_IP)
    assert samples and who(samples) == {None}
    # the same for an overlay IP that b configured while the route points at a
    lab.ec2().create_route(
        RouteTableId=lab.route_tables[0],
        DestinationCidrBlock=f"{OVERLAY_IP}/32",
        NetworkInterfaceId=lab.nodes["a"].eni_id,
    )
    add_address(lab, "b", f"{OVERLAY_IP}/32")
    wait_until(lambda: lab.forwarded_to(OVERLAY_IP) == "a", 2.0, what="forwarded to a")
    assert who(answers(lab, tmp_path, OVERLAY_IP)) == {None}


def test_an_elastic_ip_reaches_the_node_of_its_association(
    lab: Lab, services: Services, tmp_path: Path
) -> None:
    """The client asks the public address; the VPC translates it to the private address the
    EIP is associated with now and delivers it to that address's node."""
    first, second = "10.0.1.60", "10.0.1.61"
    for node in ("a", "b"):  # both guests have both addresses; only AWS decides
        add_address(lab, node, f"{first}/24")
        add_address(lab, node, f"{second}/24")
    ec2 = lab.ec2()
    allocation = lab.allocate_eip()
    public = ec2.describe_addresses(AllocationIds=[allocation])["Addresses"][0]["PublicIp"]
    ec2.assign_private_ip_addresses(
        NetworkInterfaceId=lab.nodes["a"].eni_id, PrivateIpAddresses=[first]
    )
    wait_until(lambda: lab.forwarded_to(first) == "a", 2.0, what="forwarded to a")
    assert lab.elastic_ips() == {}
    assert who(answers(lab, tmp_path, public)) == {None}  # not associated: unreachable

    ec2.associate_address(
        AllocationId=allocation, NetworkInterfaceId=lab.nodes["a"].eni_id, PrivateIpAddress=first
    )
    wait_until(lambda: lab.elastic_ips() == {public: first}, 2.0, what="translated to a")
    assert who(answers(lab, tmp_path, public)) == {"a"}

    # the association moves to another address of another node: the traffic follows
    ec2.assign_private_ip_addresses(
        NetworkInterfaceId=lab.nodes["b"].eni_id, PrivateIpAddresses=[second]
    )
    wait_until(lambda: lab.forwarded_to(second) == "b", 2.0, what="forwarded to b")
    ec2.associate_address(
        AllocationId=allocation,
        NetworkInterfaceId=lab.nodes["b"].eni_id,
        PrivateIpAddress=second,
        AllowReassociation=True,
    )
    wait_until(lambda: lab.elastic_ips() == {public: second}, 2.0, what="translated to b")
    assert who(answers(lab, tmp_path, public)) == {"b"}

    # the private address moves back to a: the Elastic IP moves with it (as on EC2)
    ec2.assign_private_ip_addresses(
        NetworkInterfaceId=lab.nodes["a"].eni_id,
        PrivateIpAddresses=[second],
        AllowReassignment=True,
    )
    wait_until(lambda: lab.forwarded_to(second) == "a", 2.0, what="forwarded to a")
    assert lab.elastic_ips() == {public: second}
    assert who(answers(lab, tmp_path, public)) == {"a"}

    ec2.disassociate_address(AssociationId=_association(lab, allocation))
    wait_until(lambda: lab.elastic_ips() == {}, 2.0, what="no translation")
    assert who(answers(lab, tmp_path, public)) == {None}


def _association(lab: Lab, allocation: str) -> str:
    address = lab.ec2().describe_addresses(AllocationIds=[allocation])["Addresses"][0]
    return str(address["AssociationId"])


def test_overlay_ip_follows_the_client_subnets_route_table(
    lab: Lab, services: Services, tmp_path: Path
) -> None:
    for node in ("a", "b"):
        add_address(lab, node, f"{OVERLAY_IP}/32")
    ec2 = lab.ec2()
    client_table, other_table = lab.route_tables[0], lab.route_tables[1]
    # a route in another subnet's table does not concern the client
    ec2.create_route(
        RouteTableId=other_table,
        DestinationCidrBlock=f"{OVERLAY_IP}/32",
        NetworkInterfaceId=lab.nodes["a"].eni_id,
    )
    lab.ec2().describe_route_tables()  # one more call, then a tick
    time.sleep(0.1)
    assert lab.forwarded_to(OVERLAY_IP) is None
    ec2.create_route(
        RouteTableId=client_table,
        DestinationCidrBlock=f"{OVERLAY_IP}/32",
        NetworkInterfaceId=lab.nodes["b"].eni_id,
    )
    wait_until(lambda: lab.forwarded_to(OVERLAY_IP) == "b", 2.0, what="forwarded to b")
    assert who(answers(lab, tmp_path, OVERLAY_IP)) == {"b"}
    ec2.replace_route(
        RouteTableId=client_table,
        DestinationCidrBlock=f"{OVERLAY_IP}/32",
        NetworkInterfaceId=lab.nodes["a"].eni_id,
    )
    wait_until(lambda: lab.forwarded_to(OVERLAY_IP) == "a", 2.0, what="forwarded to a")
    assert who(answers(lab, tmp_path, OVERLAY_IP)) == {"a"}
    ec2.delete_route(RouteTableId=client_table, DestinationCidrBlock=f"{OVERLAY_IP}/32")
    wait_until(lambda: lab.forwarded_to(OVERLAY_IP) is None, 2.0, what="no route")
    assert who(answers(lab, tmp_path, OVERLAY_IP)) == {None}


def test_eni_addresses_follow_the_attachment(lab: Lab, services: Services, tmp_path: Path) -> None:
    lab.set_timing(attach_delay=0.2, detach_delay=0.2)
    eni = lab.create_eni(subnet="c")
    ec2 = lab.ec2()
    assert lab.forwarded_to(eni.ip) is None
    for node, other in (("a", "b"), ("b", "a")):
        attachment = ec2.attach_network_interface(
            NetworkInterfaceId=eni.id, InstanceId=lab.nodes[node].instance_id, DeviceIndex=1
        )["AttachmentId"]
        wait_until(lambda n=node: lab.forwarded_to(eni.ip) == n, 3.0, what=f"forwarded to {node}")
        link = wait_until(
            lambda n=node: [
                x["ifname"] for x in lab.ip_json(n, "link", "show") if x.get("address") == eni.mac
            ],
            3.0,
            what="the hotplugged link",
        )[0]
        netns.ip("link", "set", link, "up", netns=lab.netns(node))
        add_address(lab, node, f"{eni.ip}/24", link)
        assert who(answers(lab, tmp_path, eni.ip)) == {node}
        # the other node claiming the address on its own eth0 changes nothing
        add_address(lab, other, f"{eni.ip}/32")
        assert who(answers(lab, tmp_path, eni.ip)) == {node}
        netns.ip("addr", "del", f"{eni.ip}/32", "dev", "eth0", netns=lab.netns(other))
        ec2.detach_network_interface(AttachmentId=attachment)
        # detaching: AWS no longer delivers to it
        wait_until(lambda: lab.forwarded_to(eni.ip) is None, 3.0, what="not forwarded")
        wait_until(lambda: lab.eni(eni.id)["Status"] == "available", 3.0, what="detached")


def test_the_data_plane_follows_aws_within_100_ms(lab: Lab) -> None:
    """ReplaceRoute back and forth: from the API answer to the VPC namespace's new route."""
    ec2 = lab.ec2()
    table = lab.route_tables[0]
    enis = {name: node.eni_id for name, node in lab.nodes.items()}
    macs = {name: node.ip for name, node in lab.nodes.items()}
    ec2.create_route(
        RouteTableId=table, DestinationCidrBlock=f"{OVERLAY_IP}/32", NetworkInterfaceId=enis["a"]
    )

    def gateway() -> str | None:
        out = netns.ip(
            "-json", "route", "show", f"{OVERLAY_IP}/32", "table", str(DATAPLANE_TABLE),
            netns=lab.netns("vpc"),
        )  # fmt: skip
        routes = json.loads(out) if out.strip() else []
        return routes[0].get("gateway") if routes else None

    wait_until(lambda: gateway() == macs["a"], 2.0, interval=0.002)
    delays = []
    for node in ("b", "a") * 5:
        ec2.replace_route(
            RouteTableId=table,
            DestinationCidrBlock=f"{OVERLAY_IP}/32",
            NetworkInterfaceId=enis[node],
        )
        began = time.monotonic()
        wait_until(lambda n=node: gateway() == macs[n], 2.0, interval=0.002)
        delays.append(time.monotonic() - began)
    print(f"data plane delays: median {statistics.median(delays) * 1000:.1f} ms, max "
          f"{max(delays) * 1000:.1f} ms")  # fmt: skip
    assert statistics.median(delays) < 0.1


def test_stopping_an_instance_cuts_its_node_off_and_starting_it_boots_it(
    lab: Lab, tmp_path: Path
) -> None:
    a = lab.nodes["a"]
    ns = lab.netns("a")
    # the guest's state that a boot forgets: an extra address, a policy rule, a routing table
    add_address(lab, "a", f"{SECONDARY_IP}/24")
    netns.ip("rule", "add", "from", SECONDARY_IP, "lookup", "5001", "priority", "5001", netns=ns)
    netns.ip("route", "add", "default", "via", "10.0.1.1", "table", "5001", netns=ns)
    with Services(lab, ("a",)) as services:
        proc = services.procs["a"]
        samples = answers(lab, tmp_path, a.ip, 0.3)
        assert who(samples) == {"a"}
        lab.ec2().stop_instances(InstanceIds=[a.instance_id])
        # StopInstances answers once the node is cut off: nothing of it runs any more
        assert lab.power()["a"].state == "stopped"
        assert lab.power()["a"].offs == 1
        assert proc.wait(5.0) != 0
        links = {x["ifname"]: x for x in lab.ip_json("a", "link", "show")}
        assert "UP" not in links["eth0"]["flags"]
        assert lab.forwarded_to(a.ip) is None
        assert who(answers(lab, tmp_path, a.ip, 0.3)) == {None}

    lab.ec2().start_instances(InstanceIds=[a.instance_id])
    assert lab.power()["a"].boots == 1
    eth0 = lab.ip_json("a", "addr", "show", "dev", "eth0")[0]
    assert "UP" in eth0["flags"]
    assert [x["local"] for x in eth0["addr_info"] if x["family"] == "inet"] == [a.ip]
    assert lab.ip_json("a", "route", "show", "default")[0]["gateway"] == "10.0.1.1"
    assert not [r for r in lab.ip_json("a", "rule", "show") if r.get("priority") == 5001]
    assert lab.ip_json("a", "route", "show", "table", "5001") == []
    wait_until(lambda: lab.forwarded_to(a.ip) == "a", 2.0, what="a forwarded again")


def test_outage_arithmetic() -> None:
    def s(t: float, node: str | None) -> Sample:
        return Sample(t, 1.0, node, None if node else "timeout")

    samples = [s(0.0, "a"), s(0.1, "a"), s(0.2, None), s(0.3, None), s(0.4, "b"), s(0.5, "b")]
    outage = measure(samples, fault=0.15, new="b", old="a")
    assert outage.ended and outage.observed
    assert outage.seconds == pytest.approx(0.25)
    assert outage.gap == pytest.approx(0.3)
    assert (outage.failed, outage.answered_old, outage.relapses, outage.stray) == (2, 0, 0, 0)
    never = measure(samples[:4], fault=0.15, new="b", old="a")
    assert not never.ended and never.seconds is None and never.observed
    # b answers once, the address goes away again (a recovery in progress), then b for good
    relapse = [*samples[:5], s(0.5, None), s(0.6, "a"), s(0.7, None), s(0.8, "b"), s(0.9, "b")]
    outage = measure(relapse, fault=0.15, new="b", old="a")
    assert outage.first_new == pytest.approx(0.4)
    assert outage.seconds == pytest.approx(0.65)
    assert (outage.failed, outage.relapses, outage.stray) == (4, 2, 1)


def test_a_late_fault_carries_the_call_out_and_holds_the_answer(lab: Lab) -> None:
    """Fault kind `late`: the caller gives up (or dies) without an answer, the change is made."""
    from botocore.exceptions import ReadTimeoutError

    lab.set_fault("CreateRoute", "late", delay=2.0, count=1, node="host")
    impatient = lab.ec2(bypass_faults=False, read_timeout=0.3)
    with pytest.raises(ReadTimeoutError):
        impatient.create_route(
            RouteTableId=lab.route_tables[0],
            DestinationCidrBlock=f"{OVERLAY_IP}/32",
            NetworkInterfaceId=lab.nodes["b"].eni_id,
        )
    assert lab.fault_rules() == []  # the rule hit its one call
    wait_until(lambda: lab.forwarded_to(OVERLAY_IP) == "b", 1.0, what="the route, made anyway")
