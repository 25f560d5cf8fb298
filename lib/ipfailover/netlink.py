"""The operating-system side: links, addresses, policy rules and routes, through pyroute2.

A few typed functions over one ``IPRoute`` handle, so callers never pass verb strings or loose
keyword arguments. Every change is idempotent: "already exists" and "no such" from the kernel are
expected outcomes, not errors. Works with pyroute2 0.7.2 (what the distributions ship) and newer.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Optional

from ocf_shim import Deadline, GenericError

IFF_UP = 0x1
IFA_F_NODAD = 0x02
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
_EXISTS = (errno.EEXIST,)
_MISSING = (errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENODEV)


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mac: str
    up: bool


@dataclass(frozen=True)
class Addr:
    ip: str
    prefixlen: int
    index: int
    label: Optional[str]


@dataclass(frozen=True)
class Rule:
    priority: int
    table: int
    src: Optional[str]  # "10.0.3.7/32" or None for "from all"


@dataclass(frozen=True)
class RouteEntry:
    dst: Optional[str]  # "10.0.3.0/24" or None for the default route
    gateway: Optional[str]
    oif: Optional[int]
    table: int


def _family(ip: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET


class Netlink:
    """Owns one pyroute2 ``IPRoute`` for the life of an action (use as a context manager)."""

    def __init__(self) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        self._ipr: Any = IPRoute()
        self._error: type[Exception] = NetlinkError

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._ipr.close()

    def _do(
        self, ok_codes: tuple[int, ...], what: str, method: str, *args: Any, **kwargs: Any
    ) -> bool:
        """Run one change; False when the kernel says it was already so (``ok_codes``)."""
        try:
            getattr(self._ipr, method)(*args, **kwargs)
        except self._error as exc:
            if getattr(exc, "code", None) in ok_codes:
                return False
            raise GenericError(f"could not {what}: {exc}") from None
        return True

    # ------------------------------------------------------------------------- links

    def _link(self, msg: Any) -> Link:
        return Link(
            index=int(msg["index"]),
            name=str(msg.get_attr("IFLA_IFNAME")),
            mac=str(msg.get_attr("IFLA_ADDRESS") or "").lower(),
            up=bool(msg["flags"] & IFF_UP),
        )

    def link_by_name(self, name: str) -> Optional[Link]:
        indexes = self._ipr.link_lookup(ifname=name)
        return self._link(self._ipr.get_links(indexes[0])[0]) if indexes else None

    def link_by_index(self, index: int) -> Optional[Link]:
        try:
            return self._link(self._ipr.get_links(index)[0])
        except self._error:
            return None

    def links(self) -> list[Link]:
        return [self._link(msg) for msg in self._ipr.get_links()]

    def link_by_mac(self, mac: str) -> Optional[Link]:
        wanted = mac.lower()
        return next((link for link in self.links() if link.mac == wanted), None)

    def wait_for_link_by_mac(self, mac: str, deadline: Deadline, interval: float = 0.05) -> Link:
        """Poll until a link with this MAC shows up (a hot-plugged NIC takes a while)."""
        while True:
            link = self.link_by_mac(mac)
            if link is not None:
                return link
            deadline.sleep(interval, f"waiting for a network link with MAC {mac} to appear")

    def set_up(self, index: int) -> None:
        self._do((), f"bring link {index} up", "link", "set", index=index, state="up")

    # ------------------------------------------------------------------------- addresses

    def addresses(self, index: Optional[int] = None) -> list[Addr]:
        kwargs: dict[str, Any] = {} if index is None else {"index": index}
        result = []
        for msg in self._ipr.get_addr(**kwargs):
            ip = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            if ip is None:
                continue
            result.append(
                Addr(
                    ip=str(ipaddress.ip_address(ip)),
                    prefixlen=int(msg["prefixlen"]),
                    index=int(msg["index"]),
                    label=msg.get_attr("IFA_LABEL"),
                )
            )
        return result

    def find_address(self, ip: str, index: Optional[int] = None) -> Optional[Addr]:
        wanted = str(ipaddress.ip_address(ip))
        return next((a for a in self.addresses(index) if a.ip == wanted), None)

    def add_address(self, index: int, ip: str, prefixlen: int, label: Optional[str] = None) -> bool:
        kwargs: dict[str, Any] = {"index": index, "address": ip, "prefixlen": prefixlen}
        if _family(ip) == socket.AF_INET6:
            kwargs["flags"] = IFA_F_NODAD  # usable at once: the address is ours by AWS's word
        elif label:
            kwargs["label"] = label
        return self._do(_EXISTS, f"add address {ip}/{prefixlen}", "addr", "add", **kwargs)

    def del_address(self, index: int, ip: str, prefixlen: int) -> bool:
        return self._do(
            _MISSING,
            f"remove address {ip}/{prefixlen}",
            "addr",
            "del",
            index=index,
            address=ip,
            prefixlen=prefixlen,
        )

    # ------------------------------------------------------------------------- policy rules

    def rules(self, table: Optional[int] = None) -> list[Rule]:
        result = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in self._ipr.get_rules(family=family):
                msg_table = msg.get_attr("FRA_TABLE") or msg["table"]
                if table is not None and msg_table != table:
                    continue
                src = msg.get_attr("FRA_SRC")
                result.append(
                    Rule(
                        priority=int(msg.get_attr("FRA_PRIORITY") or 0),
                        table=int(msg_table),
                        src=f"{src}/{msg['src_len']}" if src else None,
                    )
                )
        return result

    def add_rule(self, src: str, table: int, priority: int) -> bool:
        network = ipaddress.ip_network(src, strict=False)
        return self._do(
            _EXISTS,
            f"add rule from {network} table {table}",
            "rule",
            "add",
            family=_family(str(network.network_address)),
            src=str(network.network_address),
            src_len=network.prefixlen,
            table=table,
            priority=priority,
        )

    def del_rule(self, src: str, table: int, priority: int) -> bool:
        network = ipaddress.ip_network(src, strict=False)
        return self._do(
            _MISSING,
            f"remove rule from {network} table {table}",
            "rule",
            "del",
            family=_family(str(network.network_address)),
            src=str(network.network_address),
            src_len=network.prefixlen,
            table=table,
            priority=priority,
        )

    # ------------------------------------------------------------------------- routes

    def routes(self, table: int) -> list[RouteEntry]:
        result = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in self._ipr.get_routes(family=family, table=table):
                if (msg.get_attr("RTA_TABLE") or msg["table"]) != table:
                    continue
                dst = msg.get_attr("RTA_DST")
                result.append(
                    RouteEntry(
                        dst=f"{dst}/{msg['dst_len']}" if dst else None,
                        gateway=msg.get_attr("RTA_GATEWAY"),
                        oif=msg.get_attr("RTA_OIF"),
                        table=table,
                    )
                )
        return result

    def replace_route(
        self, table: int, dst: Optional[str], oif: int, gateway: Optional[str] = None
    ) -> None:
        """Make the route to ``dst`` (None: default) in ``table`` go out of ``oif``."""
        family = (
            socket.AF_INET6
            if (dst and ":" in dst) or (gateway and ":" in gateway)
            else socket.AF_INET
        )
        kwargs: dict[str, Any] = {"table": table, "oif": oif, "family": family}
        kwargs["dst"] = dst if dst else ("::/0" if family == socket.AF_INET6 else "0.0.0.0/0")
        if gateway:
            kwargs["gateway"] = gateway
        else:
            kwargs["scope"] = RT_SCOPE_LINK
        self._do((), f"set route {kwargs['dst']} in table {table}", "route", "replace", **kwargs)

    def del_route(self, table: int, dst: Optional[str], oif: Optional[int] = None) -> bool:
        family = socket.AF_INET6 if dst and ":" in dst else socket.AF_INET
        # RT_SCOPE_NOWHERE matches a route of any scope (our subnet routes are scope link).
        kwargs: dict[str, Any] = {"table": table, "family": family, "scope": RT_SCOPE_NOWHERE}
        kwargs["dst"] = dst if dst else ("::/0" if family == socket.AF_INET6 else "0.0.0.0/0")
        if oif is not None:
            kwargs["oif"] = oif
        return self._do(
            _MISSING, f"remove route {kwargs['dst']} from table {table}", "route", "del", **kwargs
        )

    def flush_table(self, table: int) -> int:
        """Remove every route of ``table`` (both families); returns how many went."""
        removed = 0
        for family, default in ((socket.AF_INET, "0.0.0.0/0"), (socket.AF_INET6, "::/0")):
            for msg in self._ipr.get_routes(family=family, table=table):
                if (msg.get_attr("RTA_TABLE") or msg["table"]) != table:
                    continue
                dst = msg.get_attr("RTA_DST")
                kwargs: dict[str, Any] = {
                    "table": table,
                    "family": family,
                    "scope": RT_SCOPE_NOWHERE,
                    "dst": f"{dst}/{msg['dst_len']}" if dst else default,
                }
                oif = msg.get_attr("RTA_OIF")
                if oif is not None:
                    kwargs["oif"] = oif
                gateway = msg.get_attr("RTA_GATEWAY")
                if gateway:
                    kwargs["gateway"] = gateway
                if self._do(
                    _MISSING,
                    f"remove route {kwargs['dst']} from table {table}",
                    "route",
                    "del",
                    **kwargs,
                ):
                    removed += 1
        return removed
