"""aws-eni's OS side, planned: what the ENI needs on this host (link, addresses, policy rules and
routes) compared with what netlink shows. Pure functions.

The OS-only monitor (ipfailover.eni.watch) runs through this module at every interval, so it
imports no dataclasses or typing at run time: its values are netlink's immutable ``_Value``
classes, which compare, hash and print as frozen dataclasses do (issue 16).
"""

from __future__ import annotations

import _socket
import ipaddress

from ipfailover.host.netlink import _Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, Optional, Union

    from ipfailover.aws.ec2 import Eni
    from ipfailover.host.netlink import Addr, Link, RouteEntry, Rule

    IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
    RouteKey = tuple[str, Optional[str]]  # (destination CIDR, gateway or None for on-link)


class EniFacts(_Value):
    """What the OS side of the ENI is made of: from EC2 (start, monitor) or from the record."""

    __slots__ = (  # noqa: RUF023 - in order
        "eni_id",
        "mac",
        "ipv4s",
        "ipv6s",
        "subnet_id",
        "subnet_cidr",
        "ipv6_cidrs",
    )
    eni_id: str
    mac: str
    ipv4s: tuple[str, ...]
    ipv6s: tuple[str, ...]
    subnet_id: str
    subnet_cidr: str
    ipv6_cidrs: tuple[str, ...]

    def __init__(  # noqa: PLR0917 - the fields, in order, as the dataclass had them
        self,
        eni_id: str,
        mac: str,
        ipv4s: tuple[str, ...],
        ipv6s: tuple[str, ...],
        subnet_id: str,
        subnet_cidr: str,
        ipv6_cidrs: tuple[str, ...],
    ) -> None:
        self._init(
            eni_id=eni_id,
            mac=mac,
            ipv4s=ipv4s,
            ipv6s=ipv6s,
            subnet_id=subnet_id,
            subnet_cidr=subnet_cidr,
            ipv6_cidrs=ipv6_cidrs,
        )

    @property
    def ips(self) -> tuple[str, ...]:
        return self.ipv4s + self.ipv6s

    def to_json(self, instance_id: str) -> dict[str, Any]:
        return {
            "eni_id": self.eni_id,
            "instance_id": instance_id,
            "mac": self.mac,
            "ipv4s": list(self.ipv4s),
            "ipv6s": list(self.ipv6s),
            "subnet_id": self.subnet_id,
            "subnet_cidr": self.subnet_cidr,
            "ipv6_cidrs": list(self.ipv6_cidrs),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EniFacts:
        """The facts of a record; ``record.DamagedRecord`` (a ValueError) unless every field is
        what start writes."""
        from ipfailover.host import record

        facts = cls(
            eni_id=record.text(data, "eni_id"),
            mac=record.text(data, "mac").lower(),
            ipv4s=record.texts(data, "ipv4s"),
            ipv6s=record.texts(data, "ipv6s"),
            subnet_id=record.text(data, "subnet_id"),
            subnet_cidr=record.text(data, "subnet_cidr"),
            ipv6_cidrs=record.texts(data, "ipv6_cidrs"),
        )
        for ip in facts.ips:
            ipaddress.ip_address(ip)  # ValueError on a damaged record
        ipaddress.ip_network(facts.subnet_cidr)
        return facts


def eni_facts(eni: Eni, subnet_cidr: str, ipv6_cidrs: Sequence[str]) -> EniFacts:
    return EniFacts(
        eni_id=eni.id,
        mac=eni.mac.lower(),
        ipv4s=tuple(eni.private_ips),
        ipv6s=tuple(str(ipaddress.ip_address(ip)) for ip in eni.ipv6s),
        subnet_id=eni.subnet_id,
        subnet_cidr=subnet_cidr,
        ipv6_cidrs=tuple(ipv6_cidrs),
    )


def same_eni(facts: EniFacts, eni: Eni) -> bool:
    """True when ``facts`` (from the record) still describe ``eni`` as EC2 reports it."""
    return (
        facts.mac == eni.mac.lower()
        and facts.subnet_id == eni.subnet_id
        and set(facts.ipv4s) == set(eni.private_ips)
        and set(facts.ipv6s) == {str(ipaddress.ip_address(ip)) for ip in eni.ipv6s}
    )


def router(cidr: str) -> str:
    """The VPC router of a subnet: the first host of its IPv4 CIDR block."""
    return str(ipaddress.ip_network(cidr, strict=False).network_address + 1)


def _ipv6_network(ip: str, blocks: Sequence[str]) -> IPNetwork:
    address = ipaddress.ip_address(ip)
    for block in blocks:
        try:
            network = ipaddress.ip_network(block, strict=False)
        except ValueError:
            continue
        if network.version == 6 and address in network:
            return network
    return ipaddress.ip_network(f"{ip}/64", strict=False)  # AWS subnets are /64


class WantedOs(_Value):
    __slots__ = ("mac", "addresses", "rules", "routes", "table", "priority")  # noqa: RUF023
    mac: str
    addresses: tuple[tuple[str, int], ...]  # (address, prefix length)
    rules: tuple[str, ...]  # source networks, e.g. "10.0.3.100/32"
    routes: tuple[RouteKey, ...]  # subnet routes first, then default routes
    table: int
    priority: int

    def __init__(  # noqa: PLR0917 - the fields, in order, as the dataclass had them
        self,
        mac: str,
        addresses: tuple[tuple[str, int], ...],
        rules: tuple[str, ...],
        routes: tuple[RouteKey, ...],
        table: int,
        priority: int,
    ) -> None:
        self._init(
            mac=mac, addresses=addresses, rules=rules, routes=routes, table=table, priority=priority
        )


def wanted_os(
    facts: EniFacts,
    policy_routing: bool,
    table: int,
    priority: int,
    ipv6_gateway: Optional[str] = None,
) -> WantedOs:
    """The OS configuration that makes ``facts``'s ENI usable on this node."""
    subnet = ipaddress.ip_network(facts.subnet_cidr, strict=False)
    addresses = [(ip, subnet.prefixlen) for ip in facts.ipv4s]
    v6_networks = [_ipv6_network(ip, facts.ipv6_cidrs) for ip in facts.ipv6s]
    addresses += [(ip, net.prefixlen) for ip, net in zip(facts.ipv6s, v6_networks)]
    rules: list[str] = []
    routes: list[RouteKey] = []
    if policy_routing:
        rules = [str(ipaddress.ip_network(ip)) for ip in facts.ips]
        if facts.ipv4s:
            routes.append((str(subnet), None))
        routes += [(str(net), None) for net in dict.fromkeys(v6_networks)]
        if facts.ipv4s:
            routes.append(("0.0.0.0/0", router(facts.subnet_cidr)))
        if facts.ipv6s and ipv6_gateway:
            routes.append(("::/0", ipv6_gateway))
    return WantedOs(
        mac=facts.mac,
        addresses=tuple(addresses),
        rules=tuple(rules),
        routes=tuple(routes),
        table=table,
        priority=priority,
    )


class ObservedOs(_Value):
    __slots__ = ("link", "addresses", "rules", "routes")  # noqa: RUF023 - in order
    link: Optional[Link]  # the link with the ENI's MAC
    addresses: tuple[Addr, ...]  # on that link
    rules: tuple[Rule, ...]  # all policy rules
    routes: tuple[RouteEntry, ...]  # in our table

    def __init__(
        self,
        link: Optional[Link],
        addresses: tuple[Addr, ...],
        rules: tuple[Rule, ...],
        routes: tuple[RouteEntry, ...],
    ) -> None:
        self._init(link=link, addresses=addresses, rules=rules, routes=routes)


def route_key(entry: RouteEntry) -> RouteKey:
    gateway = ipaddress.ip_address(entry.gateway) if entry.gateway else None
    if entry.dst:
        dst = str(ipaddress.ip_network(entry.dst, strict=False))
    else:  # the default route of its gateway's family, or of the message's when on-link
        v6 = gateway.version == 6 if gateway else entry.family == _socket.AF_INET6
        dst = "::/0" if v6 else "0.0.0.0/0"
    return dst, str(gateway) if gateway else None


def rule_src(rule: Rule) -> Optional[str]:
    return str(ipaddress.ip_network(rule.src, strict=False)) if rule.src else None


def own_rules(rules: Sequence[Rule], table: int, priority: int) -> list[Rule]:
    return [r for r in rules if r.table == table and r.priority == priority]


def foreign_rules(rules: Sequence[Rule], table: int, priority: int) -> list[Rule]:
    """Rules of someone else at our priority, or into our table at another priority."""
    return [r for r in rules if (r.table == table) != (r.priority == priority)]


class OsPlan(_Value):
    __slots__ = (  # noqa: RUF023 - in order
        "link_missing",
        "bring_up",
        "add_addresses",
        "del_rules",
        "add_rules",
        "flush_routes",
        "set_routes",
    )
    link_missing: bool
    bring_up: bool
    add_addresses: tuple[tuple[str, int], ...]
    del_rules: tuple[str, ...]  # our rules from sources that are not the ENI's
    add_rules: tuple[str, ...]
    flush_routes: bool  # our table holds routes we do not want
    set_routes: tuple[RouteKey, ...]

    def __init__(  # noqa: PLR0917 - the fields, in order, as the dataclass had them
        self,
        link_missing: bool = False,
        bring_up: bool = False,
        add_addresses: tuple[tuple[str, int], ...] = (),
        del_rules: tuple[str, ...] = (),
        add_rules: tuple[str, ...] = (),
        flush_routes: bool = False,
        set_routes: tuple[RouteKey, ...] = (),
    ) -> None:
        self._init(
            link_missing=link_missing,
            bring_up=bring_up,
            add_addresses=add_addresses,
            del_rules=del_rules,
            add_rules=add_rules,
            flush_routes=flush_routes,
            set_routes=set_routes,
        )

    @property
    def empty(self) -> bool:
        return self == OsPlan()


def plan_os(wanted: WantedOs, observed: ObservedOs) -> OsPlan:
    """What to change so that the OS matches ``wanted`` (empty when it does)."""
    link = observed.link
    if link is None:
        return OsPlan(link_missing=True)
    present = {str(ipaddress.ip_address(a.ip)) for a in observed.addresses}
    # An address a cloud helper configured with another prefix length counts: do not fight it.
    add_addresses = tuple((ip, plen) for ip, plen in wanted.addresses if ip not in present)

    ours = own_rules(observed.rules, wanted.table, wanted.priority)
    sources = {rule_src(r) for r in ours}
    add_rules = tuple(src for src in wanted.rules if src not in sources)
    del_rules = tuple(sorted(src for src in sources if src is not None and src not in wanted.rules))

    have: dict[RouteKey, set[Optional[int]]] = {}
    for entry in observed.routes:
        have.setdefault(route_key(entry), set()).add(entry.oif)
    extra = any(key not in wanted.routes for key in have)
    if extra:
        set_routes = wanted.routes
    else:
        set_routes = tuple(key for key in wanted.routes if have.get(key) != {link.index})
    return OsPlan(
        bring_up=not link.up,
        add_addresses=add_addresses,
        del_rules=del_rules,
        add_rules=add_rules,
        flush_routes=extra,
        set_routes=set_routes,
    )


def route_text(key: RouteKey) -> str:
    dst, gateway = key
    name = "default" if dst in ("0.0.0.0/0", "::/0") else dst
    return f"{name} via {gateway}" if gateway else f"{name} (on-link)"


def os_problems(plan: OsPlan, wanted: WantedOs, link_name: str = "") -> list[str]:
    """What ``plan`` would change, in words: what is wrong with the OS side."""
    if plan.link_missing:
        return [f"no network link with the ENI's MAC {wanted.mac} (not attached here?)"]
    dev = link_name or wanted.mac
    problems = []
    if plan.bring_up:
        problems.append(f"link {dev} is down")
    problems += [f"address {ip} is missing on {dev}" for ip, _ in plan.add_addresses]
    problems += [
        f"rule 'from {src} lookup {wanted.table} priority {wanted.priority}' is missing"
        for src in plan.add_rules
    ]
    problems += [
        f"stale rule 'from {src} lookup {wanted.table}' for an address the ENI does not have"
        for src in plan.del_rules
    ]
    if plan.flush_routes:
        problems.append(f"table {wanted.table} holds routes this resource did not add")
    problems += [
        f"route {route_text(key)} dev {dev} is missing from table {wanted.table}"
        for key in plan.set_routes
    ]
    return problems


def monitor_problems(wanted: WantedOs, observed: ObservedOs) -> list[str]:
    """What is missing from the OS side; leftovers start would tidy do not stop the ENI working."""
    plan = plan_os(wanted, observed)
    link = observed.link
    if link is None:
        return os_problems(plan, wanted)
    have = {route_key(e) for e in observed.routes if e.oif == link.index}
    missing = OsPlan(
        bring_up=plan.bring_up,
        add_addresses=plan.add_addresses,
        add_rules=plan.add_rules,
        set_routes=tuple(key for key in wanted.routes if key not in have),
    )
    return os_problems(missing, wanted, link.name)
