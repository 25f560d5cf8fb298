"""The lab's VPC data plane: the VPC namespace forwards every address to the node AWS says owns it.

On EC2 there is no shared layer 2: the VPC delivers a packet to the network interface that owns
its destination, whatever the guests configure. The lab imitates that in the VPC namespace
(``Lab(dataplane=True)``), from the live moto state, in the lab server:

- an ENI attached (state ``attached``) to a *running* node instance gets a permanent neighbour
  entry "primary IPv4 -> the ENI's MAC" on the bridge of its subnet, and a /32 route to it;
- each of its secondary private IPv4 addresses: a /32 route via the ENI's primary address;
- each route of the *client subnet's* route table (its explicit association, else the VPC's
  main table) whose target is an ENI (or an instance: its primary ENI) of such a node: the
  destination via the ENI's primary address (overlay IPs);
- every other address of the lab's subnets is a black hole for routed traffic;
- each Elastic IP associated with a private address that AWS delivers to the ENI of the
  association (`elastic_ips`): packets from the client link to the public address get the
  private address as destination, and packets from the private address out of the client link
  get the public one as source. That is the Internet gateway's 1:1 NAT, stateless as AWS's, so
  a new association holds from the next packet: the client link stands for the Internet here,
  and the client reaches an associated private address only by its Elastic IP. An Elastic IP
  that is not associated (or whose private address AWS delivers nowhere) is not translated, and
  its packets find no route (the client gets "network unreachable"). The rules are one nftables
  table (``NAT_TABLE``, replaced whole in one transaction whenever the associations change);
  nftables (Debian's ``nftables``, in ``make deps``) is needed only once an EIP is associated.

These routes live in a table of their own (``DATAPLANE_TABLE``), looked up by a rule before the
main table, so the subnets' connected routes (and ARP, which any guest can answer) are never used
for forwarding: a node that configures an address AWS does not give it gets nothing. Frames go
to the owner's MAC, which the bridge delivers to the owner's port only (the others' NICs drop a
frame for another MAC). Traffic between two nodes of one subnet stays on the bridge (layer 2),
as corosync needs.

The server recomputes the plan on every tick (20 ms) and after every API call that may change
it, and applies only the difference with one ``ip -batch``: the data plane follows AWS within a
tick. The plan is a pure function of moto's objects (no locks, no I/O here except `apply`).
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import netns
from .spec import CLIENT_LINK, DATAPLANE_TABLE

LOG = logging.getLogger("lab.dataplane")


@dataclass(frozen=True)
class Hop:
    """Where the VPC sends a destination: the ENI that owns it, on its subnet's bridge."""

    eni_id: str
    node: str
    bridge: str  # the VPC namespace's link towards the ENI
    mac: str
    address: str  # the ENI's primary private IPv4 (next hop of every other destination)


Forwarding = dict[str, Hop]  # destination CIDR ("10.0.1.50/32") -> hop
Translations = dict[str, str]  # Elastic IP (public IPv4) -> the private IPv4 it stands for
NAT_TABLE = "lab_eip"  # the VPC namespace's nftables table (family ip) of the Elastic IPs


def _ipv4_cidr(text: str | None) -> str | None:
    if not text:
        return None
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return str(net) if net.version == 4 else None


def client_route_table(backend: Any, vpc_id: str, subnet_id: str | None) -> Any:
    """The route table AWS uses for the subnet: its explicit association, else the main one."""
    main = None
    for table in backend.route_tables.values():
        if table.vpc_id != vpc_id:
            continue
        if subnet_id is not None and subnet_id in table._associations.values():
            return table
        if table.main_association_id is not None:
            main = table
    return main


def plan(
    backend: Any,
    *,
    vpc_id: str,
    instance_nodes: Mapping[str, str],
    subnet_bridges: Mapping[str, str],
    client_subnet_id: str | None,
    attachment_status: Callable[[str], str],
) -> Forwarding:
    """What the VPC forwards where, from moto's state (see the module doc)."""
    owners: dict[str, Hop] = {}  # ENI id -> hop, for ENIs that AWS delivers to
    forwarding: Forwarding = {}
    for eni in list(backend.enis.values()):
        instance = eni.instance
        if instance is None or instance.id not in instance_nodes:
            continue
        if instance.state != "running" or attachment_status(eni.id) != "attached":
            continue
        bridge = subnet_bridges.get(eni.subnet.id)
        primary = _ipv4_cidr(eni.private_ip_address)
        if bridge is None or primary is None or not eni.mac_address:
            continue
        hop = Hop(
            eni_id=eni.id,
            node=instance_nodes[instance.id],
            bridge=bridge,
            mac=str(eni.mac_address).lower(),
            address=str(eni.private_ip_address),
        )
        owners[eni.id] = hop
        for item in eni.private_ip_addresses:
            cidr = _ipv4_cidr(item.get("PrivateIpAddress"))
            if cidr is not None:
                forwarding[cidr] = hop
        forwarding[primary] = hop
    table = client_route_table(backend, vpc_id, client_subnet_id)
    for route in list(table.routes) if table is not None else []:
        cidr = _ipv4_cidr(route.destination_cidr_block)
        if cidr is None or route.local:
            continue
        eni = route.interface
        if eni is None and route.instance is not None:
            eni = route.instance.nics.get(0)
        target = owners.get(eni.id) if eni is not None else None
        if target is not None and cidr not in forwarding:
            forwarding[cidr] = target
    return forwarding


def elastic_ips(backend: Any, forwarding: Forwarding) -> Translations:
    """The Elastic IPs the Internet gateway translates: those associated with a private address
    that `forwarding` delivers to the ENI of the association."""
    translations: Translations = {}
    for eip in list(backend.addresses):
        if eip.eni is None or not eip.public_ip:
            continue
        private = _ipv4_cidr(eip.private_ip_address)
        hop = forwarding.get(private) if private is not None else None
        if hop is not None and hop.eni_id == eip.eni.id:
            translations[str(eip.public_ip)] = str(eip.private_ip_address)
    return translations


def nft_script(wanted: Translations, link: str = CLIENT_LINK) -> str:
    """One nftables transaction replacing the NAT table with `wanted` (none: no table)."""
    lines = [f"add table ip {NAT_TABLE}", f"delete table ip {NAT_TABLE}"]
    if wanted:
        inbound = [
            f'    iifname "{link}" ip daddr {public} ip daddr set {private}'
            for public, private in sorted(wanted.items())
        ]
        outbound = [
            f'    oifname "{link}" ip saddr {private} ip saddr set {public}'
            for public, private in sorted(wanted.items())
        ]
        lines += [
            f"table ip {NAT_TABLE} {{",
            "  chain inbound {",
            "    type filter hook prerouting priority raw; policy accept;",
            *inbound,
            "  }",
            "  chain outbound {",
            "    type filter hook postrouting priority srcnat; policy accept;",
            *outbound,
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def ip_commands(applied: Forwarding, wanted: Forwarding) -> list[str]:
    """`ip -batch` lines turning the VPC namespace's table from `applied` into `wanted`."""
    table = f"table {DATAPLANE_TABLE}"
    commands = []
    neighbours_before = {(h.address, h.bridge): h.mac for h in applied.values()}
    neighbours_after = {(h.address, h.bridge): h.mac for h in wanted.values()}
    for (address, bridge), mac in sorted(neighbours_after.items()):
        if neighbours_before.get((address, bridge)) != mac:
            commands.append(f"neigh replace {address} lladdr {mac} dev {bridge} nud permanent")
    for cidr, hop in sorted(wanted.items()):
        if applied.get(cidr) == hop:
            continue
        if cidr == f"{hop.address}/32":
            commands.append(f"route replace {cidr} dev {hop.bridge} {table}")
        else:
            via = f"via {hop.address} dev {hop.bridge} onlink"
            commands.append(f"route replace {cidr} {via} {table}")
    for cidr in sorted(set(applied) - set(wanted)):
        commands.append(f"route del {cidr} {table}")
    for address, bridge in sorted(set(neighbours_before) - set(neighbours_after)):
        commands.append(f"neigh del {address} dev {bridge}")
    return commands


class DataPlane:
    """Applies plans to one VPC namespace, remembering what it applied."""

    def __init__(self, vpc_netns: str) -> None:
        self.vpc_netns = vpc_netns
        self.lock = threading.Lock()  # held by whoever applies or reads `applied`
        self.applied: Forwarding = {}
        self.translated: Translations = {}
        self.changes = 0  # number of applied differences, for the control API

    def apply(self, wanted: Forwarding, translations: Translations | None = None) -> None:
        # routes first, so that a new translation finds its route
        commands = ip_commands(self.applied, wanted)
        if commands:
            try:
                # -force: go on after an error (a route already gone), report it at the end
                netns.ip("-force", "-batch", "-", netns=self.vpc_netns, stdin="\n".join(commands))
            except netns.IpError as err:
                LOG.warning("data plane: %s", err)
            self.applied = dict(wanted)
            self.changes += 1
        translations = translations or {}
        if translations != self.translated:
            self.translate(translations)
            self.translated = dict(translations)
            self.changes += 1

    def translate(self, wanted: Translations) -> None:
        """Replace the VPC namespace's Elastic IP table (see the module doc)."""
        nft = shutil.which("nft")
        if nft is None:
            if wanted:
                LOG.warning("data plane: no nft (Debian's nftables): Elastic IPs not forwarded")
            return
        argv = ["ip", "netns", "exec", self.vpc_netns, nft, "-f", "-"]
        script = nft_script(wanted)
        done = subprocess.run(
            argv, input=script, capture_output=True, text=True, timeout=10.0, check=False
        )
        if done.returncode != 0:
            LOG.warning("data plane: nft: %s", done.stderr.strip())

    def describe(self) -> dict[str, Any]:
        return {
            "changes": self.changes,
            "forwarding": {
                cidr: {
                    "node": h.node,
                    "eni_id": h.eni_id,
                    "bridge": h.bridge,
                    "mac": h.mac,
                    "via": h.address,
                }
                for cidr, h in sorted(self.applied.items())
            },
            "elastic_ips": dict(sorted(self.translated.items())),
        }
