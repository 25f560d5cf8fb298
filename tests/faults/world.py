"""The three agents as the fault matrix sees them.

A :class:`Resource` is one configured instance of an agent (its OCF parameters and the AWS
objects it moves). For each agent this module knows, reading only the simulator (``lab.ec2()``)
and ``ip -json`` in the nodes, never the agents' own code:

- ``holders``: the nodes AWS sends the resource to (more than one means AWS is inconsistent);
- ``leftovers``: what of the resource is in a node's OS (after a successful stop: nothing);
- ``damage``: changes made behind the agent's back, on the OS side or the AWS side.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import Eni, Lab, wait_until

AGENTS = ("aws-overlayip", "aws-secip", "aws-eni")
SHORT = {"aws-overlayip": "overlayip", "aws-secip": "secip", "aws-eni": "eni"}
NODES = ("a", "b")
OVERLAY_IPS = ("192.168.100.10", "192.168.100.11")  # outside the lab VPC (10.0.0.0/16)
SECONDARY_IPS = ("10.0.1.50", "10.0.1.51")  # free addresses of subnet "a", where both nodes are
ENI_TABLE_BASE = 5000  # aws-eni's default table and rule priority: 5000 + device_index


@dataclass
class Resource:
    """One resource of an agent, with what the matrix needs to judge its state."""

    agent: str
    params: dict[str, str]
    rsctmp: Path  # HA_RSCTMP of its runs (aws-eni keeps its record there)
    ip: str | None = None  # overlay or secondary IP
    eni: Eni | None = None  # aws-eni: the moved ENI
    eip: str | None = None  # aws-secip: the Elastic IP's allocation id
    tables: tuple[str, ...] = ()  # aws-overlayip: the managed route tables
    table: int = 0  # aws-eni: its policy routing table and rule priority
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.ip or (self.eni.id if self.eni else self.agent)

    def env(self) -> dict[str, str]:
        return {"HA_RSCTMP": str(self.rsctmp), **self.extra_env}


def make_resource(lab: Lab, agent: str, workdir: Path, index: int = 0) -> Resource:
    """A resource of ``agent`` in a fresh lab world (index 1: a second one beside the first)."""
    rsctmp = workdir / "rsctmp"
    rsctmp.mkdir(parents=True, exist_ok=True)
    if agent == "aws-overlayip":
        ip = OVERLAY_IPS[index]
        tables = tuple(lab.route_tables)
        params = {
            "ip": ip,
            "routing_table": ",".join(tables),
            "endpoint_url": lab.endpoint_url,
            "source_dest_check": "disable",
        }
        return Resource(agent, params, rsctmp, ip=ip, tables=tables)
    if agent == "aws-secip":
        ip = SECONDARY_IPS[index]
        eip = lab.allocate_eip()
        params = {"ip": ip, "endpoint_url": lab.endpoint_url, "elastic_ip_allocation_id": eip}
        return Resource(agent, params, rsctmp, ip=ip, eip=eip)
    if agent == "aws-eni":
        eni = lab.create_eni(subnet="c", secondary_ips=1)
        device_index = 1 + index
        params = {
            "eni_id": eni.id,
            "endpoint_url": lab.endpoint_url,
            "device_index": str(device_index),
        }
        return Resource(agent, params, rsctmp, eni=eni, table=ENI_TABLE_BASE + device_index)
    raise ValueError(f"unknown agent {agent!r}")


# ----------------------------------------------------------------------------- AWS side


def _node_of_eni(lab: Lab) -> dict[str, str]:
    return {node.eni_id: name for name, node in lab.nodes.items()}


def _node_of_instance(lab: Lab) -> dict[str, str]:
    return {node.instance_id: name for name, node in lab.nodes.items()}


def overlay_targets(lab: Lab, res: Resource) -> dict[str, str | None]:
    """Per managed table, the ENI its route for the overlay IP points at (None: no route)."""
    assert res.ip is not None
    return lab.route_targets(f"{res.ip}/{ipaddress.ip_address(res.ip).max_prefixlen}", res.tables)


def eip_target(lab: Lab, allocation_id: str) -> str | None:
    raw = lab.ec2().describe_addresses(AllocationIds=[allocation_id])["Addresses"][0]
    return raw.get("NetworkInterfaceId") or None


def eni_attachment(lab: Lab, eni_id: str) -> tuple[str, str] | None:
    """(instance id, status) of the ENI's attachment; None when it is available."""
    att = lab.eni(eni_id).get("Attachment")
    if not att or att.get("Status") == "detached":
        return None
    return str(att["InstanceId"]), str(att["Status"])


def holders(lab: Lab, res: Resource) -> set[str]:
    """The nodes AWS sends the resource to: node names, or ``other:<id>`` for anything else.

    aws-overlayip: the targets of the routes (a table without the route adds nothing);
    aws-secip: the ENIs holding the address (and the Elastic IP, which must point at one of
    them when associated); aws-eni: the instance it is attached (or attaching) to.
    """
    if res.agent == "aws-overlayip":
        by_eni = _node_of_eni(lab)
        return {by_eni.get(t, f"other:{t}") for t in overlay_targets(lab, res).values() if t}
    if res.agent == "aws-secip":
        assert res.ip is not None
        by_eni = _node_of_eni(lab)
        result = {by_eni.get(e, f"other:{e}") for e in lab.holders(res.ip)}
        if res.eip is not None:
            target = eip_target(lab, res.eip)
            if target is not None:
                result.add(by_eni.get(target, f"other:{target}"))
        return result
    assert res.eni is not None
    att = eni_attachment(lab, res.eni.id)
    if att is None:
        return set()
    return {_node_of_instance(lab).get(att[0], f"other:{att[0]}")}


def aws_points_at(lab: Lab, res: Resource, node: str) -> bool:
    """AWS sends all of the resource to ``node`` (every table, the address and its EIP, the
    attachment completed)."""
    if res.agent == "aws-overlayip":
        eni = lab.nodes[node].eni_id
        return set(overlay_targets(lab, res).values()) == {eni}
    if res.agent == "aws-secip":
        assert res.ip is not None
        eni = lab.nodes[node].eni_id
        if lab.holders(res.ip) != {eni}:
            return False
        return res.eip is None or eip_target(lab, res.eip) == eni
    assert res.eni is not None
    return eni_attachment(lab, res.eni.id) == (lab.nodes[node].instance_id, "attached")


def aws_snapshot(lab: Lab, res: Resource) -> Any:
    """Everything of the AWS side an agent of this kind could change (for 'nothing changed')."""
    if res.agent == "aws-overlayip":
        tables = lab.ec2().describe_route_tables()["RouteTables"]
        routes = sorted(
            (
                t["RouteTableId"],
                sorted(
                    (
                        str(r.get("DestinationCidrBlock") or r.get("DestinationIpv6CidrBlock")),
                        str(r.get("NetworkInterfaceId") or r.get("GatewayId")),
                    )
                    for r in t["Routes"]
                ),
            )
            for t in tables
        )
        return [*routes, _source_dest(lab)]
    enis = sorted(
        (
            e["NetworkInterfaceId"],
            e["Status"],
            str((e.get("Attachment") or {}).get("InstanceId")),
            tuple(sorted(i["PrivateIpAddress"] for i in e.get("PrivateIpAddresses", []))),
            tuple(sorted(i["Ipv6Address"] for i in e.get("Ipv6Addresses", []))),
        )
        for e in lab.ec2().describe_network_interfaces()["NetworkInterfaces"]
    )
    eips = sorted(
        (
            str(a.get("AllocationId")),
            str(a.get("NetworkInterfaceId")),
            str(a.get("PrivateIpAddress")),
        )
        for a in lab.ec2().describe_addresses()["Addresses"]
    )
    return [enis, eips]


def _source_dest(lab: Lab) -> list[tuple[str, bool]]:
    result = []
    for name, node in sorted(lab.nodes.items()):
        attr = lab.ec2().describe_network_interface_attribute(
            NetworkInterfaceId=node.eni_id, Attribute="sourceDestCheck"
        )
        result.append((name, bool(attr["SourceDestCheck"]["Value"])))
    return result


# ----------------------------------------------------------------------------- OS side


def addresses(lab: Lab, node: str) -> dict[str, set[str]]:
    """Link name -> its global addresses as ``ip/prefix``."""
    result: dict[str, set[str]] = {}
    for link in lab.ip_json(node, "addr", "show"):
        result[link["ifname"]] = {
            f"{a['local']}/{a['prefixlen']}"
            for a in link.get("addr_info", [])
            if a.get("scope") != "link" and a.get("scope") != "host"
        }
    return result


def links(lab: Lab, node: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = lab.ip_json(node, "link", "show")
    return result


def rules(lab: Lab, node: str) -> list[dict[str, Any]]:
    return [r for family in ("-4", "-6") for r in lab.ip_json(node, family, "rule", "show")]


def table_routes(lab: Lab, node: str, table: int | str) -> list[dict[str, Any]]:
    """``ip -json route show table T`` of both families (a table that never existed: empty)."""
    result: list[dict[str, Any]] = []
    for family in ("-4", "-6"):
        done = lab.ns_exec(node, ["ip", "-json", family, "route", "show", "table", str(table)])
        if done.returncode != 0:
            if "table does not exist" not in done.stderr:
                raise AssertionError(done.stderr)
            continue
        result += json.loads(done.stdout or "[]")
    return result


def _has_ip(lab: Lab, node: str, ip: str) -> list[str]:
    wanted = ipaddress.ip_address(ip)
    return [
        f"address {entry} on {link}"
        for link, entries in addresses(lab, node).items()
        for entry in entries
        if ipaddress.ip_address(entry.split("/")[0]) == wanted
    ]


def leftovers(lab: Lab, res: Resource, node: str) -> list[str]:
    """What of the resource is in the node's OS (after a successful stop there must be none)."""
    if res.agent in ("aws-overlayip", "aws-secip"):
        assert res.ip is not None
        return _has_ip(lab, node, res.ip)
    assert res.eni is not None
    found: list[str] = []
    for ip in (res.eni.ip, *res.eni.secondary_ips):
        found += _has_ip(lab, node, ip)
    for rule in rules(lab, node):
        if str(rule.get("table")) == str(res.table) or int(rule.get("priority", -1)) == res.table:
            found.append(f"rule 'from {rule.get('src', 'all')} lookup {rule.get('table')}'")
    found += [
        f"route {r.get('dst')} in table {res.table}" for r in table_routes(lab, node, res.table)
    ]
    attached_here = holders(lab, res) == {node}
    if not attached_here:
        found += [
            f"link {link['ifname']} with the ENI's MAC"
            for link in links(lab, node)
            if link.get("address") == res.eni.mac
        ]
    return found


def wait_clean(lab: Lab, res: Resource, node: str, timeout: float = 3.0) -> list[str]:
    """Leftovers in the node, given a moment for the lab to unplug a detached ENI's link."""
    try:
        wait_until(lambda: not leftovers(lab, res, node), timeout=timeout, interval=0.1)
    except AssertionError:
        return leftovers(lab, res, node)
    return []


def os_snapshot(lab: Lab, node: str) -> Any:
    """The node's links, addresses, rules and routes, without what the kernel changes alone
    (IPv6 link-local addresses, DAD flags, the local table, multicast routes)."""
    link_state = sorted(
        (link["ifname"], str(link.get("address")), "UP" in link.get("flags", []))
        for link in links(lab, node)
    )
    addrs = sorted((name, tuple(sorted(v))) for name, v in addresses(lab, node).items())
    rule_set = sorted(
        (int(r.get("priority", -1)), str(r.get("src", "all")), str(r.get("table")))
        for r in rules(lab, node)
    )
    routes = sorted(
        (str(r.get("table", "main")), str(r.get("dst")), str(r.get("gateway")), str(r.get("dev")))
        for r in table_routes(lab, node, "all")
        if r.get("table") != "local"
        and not str(r.get("dst", "")).startswith(("fe80:", "ff00:", "multicast"))
        and r.get("type") != "multicast"
    )
    return [link_state, addrs, rule_set, routes]


def snapshot(lab: Lab, res: Resource, nodes: tuple[str, ...] = NODES) -> Any:
    return [aws_snapshot(lab, res), *(os_snapshot(lab, node) for node in nodes)]


# ----------------------------------------------------------------------------- damage


def _ns(lab: Lab, node: str, *argv: str) -> None:
    lab.ns_exec(node, list(argv), check=True)


def _eni_link(lab: Lab, res: Resource, node: str) -> str:
    assert res.eni is not None
    found = [link["ifname"] for link in links(lab, node) if link.get("address") == res.eni.mac]
    assert found, f"no link with {res.eni.mac} in {node}"
    return str(found[0])


def _secondary(res: Resource) -> str:
    assert res.eni is not None
    return res.eni.secondary_ips[0] if res.eni.secondary_ips else res.eni.ip


def _del_address(lab: Lab, node: str, ip: str) -> None:
    for link, entries in addresses(lab, node).items():
        for entry in entries:
            if entry.split("/")[0] == ip:
                _ns(lab, node, "ip", "addr", "del", entry, "dev", link)
                return
    raise AssertionError(f"{ip} is not configured in {node}")


def _wait_holders(lab: Lab, res: Resource, want: set[str]) -> None:
    wait_until(lambda: holders(lab, res) == want, timeout=5, what=f"AWS holders == {want}")


def _overlay_replace(lab: Lab, res: Resource, node: str) -> None:
    assert res.ip is not None
    third = lab.create_eni(subnet="c")
    lab.ec2().replace_route(
        RouteTableId=res.tables[0], DestinationCidrBlock=f"{res.ip}/32", NetworkInterfaceId=third.id
    )


def _overlay_delete(lab: Lab, res: Resource, node: str) -> None:
    lab.ec2().delete_route(RouteTableId=res.tables[0], DestinationCidrBlock=f"{res.ip}/32")


def _secip_reassign(lab: Lab, res: Resource, node: str) -> None:
    other = next(n for n in NODES if n != node)
    lab.ec2().assign_private_ip_addresses(
        NetworkInterfaceId=lab.nodes[other].eni_id,
        PrivateIpAddresses=[res.ip],
        AllowReassignment=True,
    )
    wait_until(
        lambda: lab.holders(str(res.ip)) == {lab.nodes[other].eni_id},
        timeout=5,
        what="the reassignment",
    )


def _secip_unassign(lab: Lab, res: Resource, node: str) -> None:
    lab.ec2().unassign_private_ip_addresses(
        NetworkInterfaceId=lab.nodes[node].eni_id, PrivateIpAddresses=[res.ip]
    )
    wait_until(lambda: not lab.holders(str(res.ip)), timeout=5, what="the unassignment")


def _eni_detach(lab: Lab, res: Resource, node: str) -> None:
    assert res.eni is not None
    attachment = lab.eni(res.eni.id)["Attachment"]["AttachmentId"]
    lab.ec2().detach_network_interface(AttachmentId=attachment)
    _wait_holders(lab, res, set())


def _eni_move(lab: Lab, res: Resource, node: str) -> None:
    assert res.eni is not None
    _eni_detach(lab, res, node)
    other = next(n for n in NODES if n != node)
    lab.ec2().attach_network_interface(
        NetworkInterfaceId=res.eni.id, InstanceId=lab.nodes[other].instance_id, DeviceIndex=1
    )
    wait_until(
        lambda: (
            eni_attachment(lab, str(res.eni.id if res.eni else ""))
            == (lab.nodes[other].instance_id, "attached")
        ),
        timeout=5,
        what="the attachment to the other node",
    )


Damage = Callable[[Lab, Resource, str], None]

# (agent, damage) -> what is done to the node running the resource. "os:" damages the node's
# OS, "aws:" the simulator; both behind the agent's back.
DAMAGES: Mapping[tuple[str, str], Damage] = {
    ("aws-overlayip", "os:address deleted"): lambda lab, res, n: _del_address(lab, n, str(res.ip)),
    ("aws-overlayip", "aws:route replaced"): _overlay_replace,
    ("aws-overlayip", "aws:route deleted"): _overlay_delete,
    ("aws-secip", "os:address deleted"): lambda lab, res, n: _del_address(lab, n, str(res.ip)),
    ("aws-secip", "aws:IP reassigned"): _secip_reassign,
    ("aws-secip", "aws:IP unassigned"): _secip_unassign,
    ("aws-eni", "os:address deleted"): lambda lab, res, n: _del_address(lab, n, _secondary(res)),
    ("aws-eni", "os:rule deleted"): lambda lab, res, n: _ns(
        lab, n, "ip", "rule", "del", "priority", str(res.table), "from", _secondary(res)
    ),
    ("aws-eni", "os:route deleted"): lambda lab, res, n: _ns(
        lab, n, "ip", "route", "del", "default", "table", str(res.table)
    ),
    ("aws-eni", "os:link down"): lambda lab, res, n: _ns(
        lab, n, "ip", "link", "set", _eni_link(lab, res, n), "down"
    ),
    ("aws-eni", "aws:ENI detached"): _eni_detach,
    ("aws-eni", "aws:ENI moved"): _eni_move,
}
