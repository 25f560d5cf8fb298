"""The operating-system side: links, addresses, policy rules and routes.

A few typed functions over the kernel's netlink interface (pyroute2 for changes), so callers
never pass verb strings or loose keyword arguments. Every change is idempotent: "already exists"
and "no such" from the kernel are expected outcomes, not errors. Works with pyroute2 0.7.2 (what
the distributions ship) and newer.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any, Optional

from ocf_shim import Deadline, GenericError

IFF_UP = 0x1
IFA_F_NODAD = 0x02
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
_EXISTS = (errno.EEXIST,)
# Netlink message types, flags and attributes (linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h)
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWLINK, _RTM_GETLINK, _RTM_NEWADDR, _RTM_GETADDR = 16, 18, 20, 22
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_IFLA_ADDRESS, _IFLA_IFNAME = 1, 3
_IFA_ADDRESS, _IFA_LOCAL, _IFA_LABEL = 1, 2, 3
_RTM_NEWROUTE, _RTM_GETROUTE, _RTM_NEWRULE, _RTM_GETRULE = 24, 26, 32, 34
_RTA_DST, _RTA_OIF, _RTA_GATEWAY, _RTA_TABLE = 1, 4, 5, 15
_FRA_SRC, _FRA_PRIORITY, _FRA_TABLE = 2, 6, 15
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
    family: int = socket.AF_INET


def _u32(raw: Optional[bytes]) -> int:
    return int(struct.unpack("=I", raw[:4])[0]) if raw and len(raw) >= 4 else 0


def _ip(family: int, raw: bytes) -> str:
    return socket.inet_ntop(family, raw)


def _family(ip: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET


class Netlink:
    """The netlink side of one action (use as a context manager).

    Everything is read over a plain ``AF_NETLINK`` socket, so a monitor that only looks never
    imports pyroute2 (0.1-0.2 s); pyroute2's ``IPRoute`` is opened on the first change.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
        self._sock.settimeout(5.0)  # the kernel answers at once; never hang an action on it
        self._sock.bind((0, 0))
        self._seq = 0
        self._iproute: Any = None
        self._error: type[Exception] = Exception

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()
        if self._iproute is not None:
            self._iproute.close()

    @property
    def _ipr(self) -> Any:
        if self._iproute is None:
            from pyroute2 import IPRoute
            from pyroute2.netlink.exceptions import NetlinkError

            self._error = NetlinkError
            self._iproute = IPRoute()
        return self._iproute

    def prepare_changes(self) -> None:
        """Load pyroute2 now (0.1-0.2 s), e.g. while waiting for EC2, rather than at the first
        change."""
        self._ipr  # noqa: B018 - the property opens IPRoute

    def _do(
        self, ok_codes: tuple[int, ...], what: str, method: str, *args: Any, **kwargs: Any
    ) -> bool:
        """Run one change; False when the kernel says it was already so (``ok_codes``)."""
        call = getattr(self._ipr, method)
        try:
            call(*args, **kwargs)
        except self._error as exc:
            if getattr(exc, "code", None) in ok_codes:
                return False
            raise GenericError(f"could not {what}: {exc}") from None
        return True

    # ------------------------------------------------------------------------- plain dumps

    def _dump(self, msg_type: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one dump request; (type, payload) of every answer message until NLMSG_DONE."""
        self._seq += 1
        flags = _NLM_F_REQUEST | _NLM_F_DUMP
        self._sock.send(struct.pack("=IHHII", 16 + len(body), msg_type, flags, self._seq, 0) + body)
        messages: list[tuple[int, bytes]] = []
        while True:
            data = self._sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _, seq, _ = struct.unpack_from("=IHHII", data, offset)
                if length < 16:
                    raise GenericError("malformed netlink answer")
                payload = data[offset + 16 : offset + length]
                offset += (length + 3) & ~3
                if seq != self._seq:
                    continue
                if kind == _NLMSG_DONE:
                    return messages
                if kind == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0] if len(payload) >= 4 else 0
                    if code:
                        raise GenericError(f"netlink dump failed: {os.strerror(code)}")
                    continue
                messages.append((kind, payload))

    @staticmethod
    def _attrs(payload: bytes, start: int) -> dict[int, bytes]:
        attrs: dict[int, bytes] = {}
        offset = start
        while offset + 4 <= len(payload):
            length, kind = struct.unpack_from("=HH", payload, offset)
            if length < 4:
                break
            attrs.setdefault(kind & 0x3FFF, payload[offset + 4 : offset + length])
            offset += (length + 3) & ~3
        return attrs

    # ------------------------------------------------------------------------- links

    def links(self) -> list[Link]:
        result = []
        body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)
        for kind, payload in self._dump(_RTM_GETLINK, body):
            if kind != _RTM_NEWLINK or len(payload) < 16:
                continue
            _, _, index, flags, _ = struct.unpack_from("=BxHiII", payload)
            attrs = self._attrs(payload, 16)
            name = attrs.get(_IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace")
            mac = ":".join(f"{b:02x}" for b in attrs.get(_IFLA_ADDRESS, b""))
            result.append(Link(index=index, name=name, mac=mac, up=bool(flags & IFF_UP)))
        return result

    def link_by_name(self, name: str) -> Optional[Link]:
        return next((link for link in self.links() if link.name == name), None)

    def link_by_index(self, index: int) -> Optional[Link]:
        return next((link for link in self.links() if link.index == index), None)

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
        result = []
        body = struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)
        for kind, payload in self._dump(_RTM_GETADDR, body):
            if kind != _RTM_NEWADDR or len(payload) < 8:
                continue
            family, prefixlen, _, _, msg_index = struct.unpack_from("=BBBBI", payload)
            if index is not None and msg_index != index:
                continue
            attrs = self._attrs(payload, 8)
            raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
            if raw is None or family not in (socket.AF_INET, socket.AF_INET6):
                continue
            label = attrs.get(_IFA_LABEL)
            result.append(
                Addr(
                    ip=str(ipaddress.ip_address(raw)),
                    prefixlen=prefixlen,
                    index=msg_index,
                    label=label.split(b"\0", 1)[0].decode(errors="replace") if label else None,
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
            body = struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0, 0, 0, 0, 0)
            for kind, payload in self._dump(_RTM_GETRULE, body):
                if kind != _RTM_NEWRULE or len(payload) < 12:
                    continue
                msg_family, _, src_len, _, hdr_table = struct.unpack_from("=BBBBB", payload)
                attrs = self._attrs(payload, 12)
                msg_table = _u32(attrs.get(_FRA_TABLE)) or hdr_table
                if table is not None and msg_table != table:
                    continue
                src = attrs.get(_FRA_SRC)
                result.append(
                    Rule(
                        priority=_u32(attrs.get(_FRA_PRIORITY)),
                        table=msg_table,
                        src=f"{_ip(msg_family, src)}/{src_len}" if src else None,
                    )
                )
        return result

    def add_rule(self, src: str, table: int, priority: int) -> bool:
        return self._rule("add", _EXISTS, src, table, priority)

    def del_rule(self, src: str, table: int, priority: int) -> bool:
        return self._rule("del", _MISSING, src, table, priority)

    def _rule(self, verb: str, ok: tuple[int, ...], src: str, table: int, priority: int) -> bool:
        network = ipaddress.ip_network(src, strict=False)
        return self._do(
            ok,
            f"{verb} rule from {network} table {table}",
            "rule",
            verb,
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
            body = struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0, 0, 0, 0, 0)
            for kind, payload in self._dump(_RTM_GETROUTE, body):
                if kind != _RTM_NEWROUTE or len(payload) < 12:
                    continue
                msg_family, dst_len, _, _, hdr_table = struct.unpack_from("=BBBBB", payload)
                attrs = self._attrs(payload, 12)
                if (_u32(attrs.get(_RTA_TABLE)) or hdr_table) != table:
                    continue
                dst, gateway, oif = (
                    attrs.get(_RTA_DST),
                    attrs.get(_RTA_GATEWAY),
                    attrs.get(_RTA_OIF),
                )
                result.append(
                    RouteEntry(
                        dst=f"{_ip(msg_family, dst)}/{dst_len}" if dst else None,
                        gateway=_ip(msg_family, gateway) if gateway else None,
                        oif=_u32(oif) if oif else None,
                        table=table,
                        family=msg_family,
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
        for route in self.routes(table):
            default = "::/0" if route.family == socket.AF_INET6 else "0.0.0.0/0"
            kwargs: dict[str, Any] = {
                "table": table,
                "family": route.family,
                "scope": RT_SCOPE_NOWHERE,
                "dst": route.dst or default,
            }
            if route.oif is not None:
                kwargs["oif"] = route.oif
            if route.gateway:
                kwargs["gateway"] = route.gateway
            what = f"remove route {kwargs['dst']} from table {table}"
            if self._do(_MISSING, what, "route", "del", **kwargs):
                removed += 1
        return removed
