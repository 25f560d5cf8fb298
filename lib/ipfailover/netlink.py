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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, TypeVar

from ocf_shim import Deadline, GenericError

IFF_UP = 0x1
IFA_F_SECONDARY = 0x01  # IPv4: another address of the same subnet and prefix came first
IFA_F_NODAD = 0x02
IFA_F_PERMANENT = 0x80  # no lifetime: configured, not learnt (DHCPv6, SLAAC)
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
_EXISTS = (errno.EEXIST,)
# Netlink message types, flags and attributes (linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h)
_NLMSG_ERROR, _NLMSG_DONE, _NLMSG_OVERRUN = 2, 3, 4
_RTM_NEWLINK, _RTM_GETLINK, _RTM_NEWADDR, _RTM_GETADDR = 16, 18, 20, 22
_NLM_F_REQUEST, _NLM_F_DUMP_INTR, _NLM_F_DUMP = 0x1, 0x10, 0x300
_IFLA_ADDRESS, _IFLA_IFNAME = 1, 3
_IFA_ADDRESS, _IFA_LOCAL, _IFA_LABEL = 1, 2, 3
_IFA_FLAGS = 8  # the 32-bit flags (the header keeps only the low 8 bits)
_RTM_NEWROUTE, _RTM_GETROUTE, _RTM_NEWRULE, _RTM_GETRULE = 24, 26, 32, 34
_RTA_DST, _RTA_OIF, _RTA_GATEWAY, _RTA_TABLE = 1, 4, 5, 15
_FRA_SRC, _FRA_PRIORITY, _FRA_TABLE = 2, 6, 15
_MISSING = (errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENODEV)
_DUMPS = {
    _RTM_GETLINK: "links",
    _RTM_GETADDR: "addresses",
    _RTM_GETROUTE: "routes",
    _RTM_GETRULE: "policy rules",
}
_RECV_TIMEOUT = 5.0  # the kernel answers at once; never hang an action on it
_RECV_BUFFER = 1 << 16  # the kernel fills at most 32 KiB per datagram of a dump
# Reads of a table that changed while it was read (an interrupted dump, rule reads that disagree).
# A read takes well under a millisecond on a node: only a storm of changes exhausts these.
_READ_ATTEMPTS = 10
# Past the deadline, the one read an action needs still waits this long for the kernel (inside
# the deadline's margin: a monitor whose AWS check used up the time still decides from the OS);
# only the retries stop.
_LATE_WAIT = 0.2
_ADDRESS_BYTES: dict[int, int] = {socket.AF_INET: 4, socket.AF_INET6: 16}
_T = TypeVar("_T")


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
    flags: int = 0  # IFA_F_*
    family: int = socket.AF_INET  # from the message (ifa_family)

    @property
    def secondary(self) -> bool:
        """IPv4: the kernel's secondary flag (an address of the same subnet and prefix length,
        normally the node's primary, was there first)."""
        return bool(self.flags & IFA_F_SECONDARY)


@dataclass(frozen=True)
class Rule:
    priority: int
    table: int
    src: Optional[str]  # "10.0.3.7/32" or None for "from all"
    family: int = socket.AF_INET  # from the message: tells "from all" rules of both apart


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
    """The address in ``raw`` read as the message's family says, never guessed from its size."""
    if len(raw) != _ADDRESS_BYTES.get(family):
        raise GenericError(
            f"malformed netlink answer: a {len(raw)}-byte address of address family {family}"
        )
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(raw))
    return str(ipaddress.IPv6Address(raw))


def _family(text: str) -> int:
    """The family of an address or network given as text, from its parsed value."""
    network = ipaddress.ip_network(text, strict=False)
    return socket.AF_INET6 if network.version == 6 else socket.AF_INET


def _route_family(dst: Optional[str], gateway: Optional[str], family: Optional[int]) -> int:
    """A route's family: the one given, else that of its destination or gateway, else IPv4."""
    if family is not None:
        return family
    given = dst or gateway
    return _family(given) if given else socket.AF_INET


def _messages(data: bytes, what: str) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, sequence number, payload) of each message in one datagram."""
    offset = 0
    while offset < len(data):
        length = struct.unpack_from("=I", data, offset)[0] if len(data) - offset >= 16 else 0
        if length < 16 or offset + length > len(data):
            raise GenericError(
                f"malformed netlink answer listing the kernel's {what}: a truncated message "
                f"at byte {offset} of {len(data)}"
            )
        _, kind, flags, seq, _ = struct.unpack_from("=IHHII", data, offset)
        yield kind, flags, seq, data[offset + 16 : offset + length]
        offset += (length + 3) & ~3


def _status(payload: bytes, what: str) -> int:
    """The error number an NLMSG_ERROR or NLMSG_DONE message carries (0: none)."""
    if len(payload) < 4:
        raise GenericError(f"malformed netlink answer listing the kernel's {what}: no status")
    return abs(int(struct.unpack_from("=i", payload)[0]))


class NetlinkSocket(Protocol):
    """What the reader needs of a bound ``NETLINK_ROUTE`` socket (tests give a fake kernel)."""

    def send(self, data: bytes, /) -> int: ...

    def recvmsg(self, bufsize: int, /) -> tuple[bytes, list[Any], int, Any]: ...

    def settimeout(self, value: Optional[float], /) -> None: ...

    def close(self) -> None: ...


def route_socket() -> NetlinkSocket:
    """A new ``NETLINK_ROUTE`` socket, bound."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    try:
        sock.bind((0, 0))
    except OSError:
        sock.close()
        raise
    return sock


class Netlink:
    """The netlink side of one action (use as a context manager).

    Everything is read over a plain ``AF_NETLINK`` socket, so a monitor that only looks never
    imports pyroute2 (0.1-0.2 s); pyroute2's ``IPRoute`` is opened on the first change.
    ``deadline`` (the action's) bounds every read, retries and waits for the kernel included;
    ``open_socket`` gives the socket to read from.
    """

    def __init__(
        self,
        deadline: Optional[Deadline] = None,
        open_socket: Callable[[], NetlinkSocket] = route_socket,
    ) -> None:
        self._deadline = deadline
        self._open_socket = open_socket
        self._sock: Optional[NetlinkSocket] = None
        self._seq = 0
        self._iproute: Any = None
        self._error: type[Exception] = Exception

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._drop_socket()
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
        """(type, payload) of every message of the kernel's answer to one dump request.

        A dump the kernel flags ``NLM_F_DUMP_INTR`` (the table changed while it was read, e.g.
        cloud-netconfig adding addresses) may miss or repeat entries: it is read again, a bounded
        number of times, within the deadline.
        """
        what = _DUMPS[msg_type]
        for attempt in range(_READ_ATTEMPTS):
            if attempt:
                self._check(what)
            messages, interrupted = self._dump_once(msg_type, body, what)
            if not interrupted:
                return messages
        raise GenericError(
            f"the kernel's {what} kept changing while they were read "
            f"({_READ_ATTEMPTS} dumps in a row were interrupted)"
        )

    def _settled(self, read: Callable[[], _T], what: str) -> _T:
        """``read()`` again until two reads in a row agree, within the deadline.

        For tables whose dumps the kernel never flags as interrupted (policy rules, routes),
        though a change between two parts of a long dump can make it miss or repeat entries.
        """
        last = read()
        for attempt in range(_READ_ATTEMPTS - 1):
            if attempt:
                self._check(what)  # a read after a disagreement
            current = read()
            if current == last:
                return current
            last = current
        raise GenericError(
            f"the kernel's {what} kept changing while they were read "
            f"(no two of {_READ_ATTEMPTS} reads in a row agreed)"
        )

    def _dump_once(
        self, msg_type: int, body: bytes, what: str
    ) -> tuple[list[tuple[int, bytes]], bool]:
        """One dump: its messages, and whether the kernel flagged it as interrupted.

        A failure drops the socket: the kernel refuses (EBUSY) a new dump on a socket whose
        last dump was not read to its end.
        """
        try:
            return self._exchange(self._socket(), msg_type, body, what)
        except GenericError:
            self._drop_socket()
            raise

    def _socket(self) -> NetlinkSocket:
        if self._sock is None:
            try:
                self._sock = self._open_socket()
            except OSError as exc:
                raise GenericError(f"could not open a netlink socket: {exc}") from None
        return self._sock

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _check(self, what: str) -> None:
        """Before a retry: only within the deadline."""
        if self._deadline is not None:
            self._deadline.check(f"reading the kernel's {what}")

    def _timeout(self) -> float:
        """How long to wait for the kernel's next answer: 5 s at most, and never past the
        deadline by more than a moment."""
        if self._deadline is None:
            return _RECV_TIMEOUT
        return min(_RECV_TIMEOUT, max(self._deadline.remaining(), _LATE_WAIT))

    def _exchange(
        self, sock: NetlinkSocket, msg_type: int, body: bytes, what: str
    ) -> tuple[list[tuple[int, bytes]], bool]:
        self._seq += 1
        seq, flags = self._seq, _NLM_F_REQUEST | _NLM_F_DUMP
        try:
            sock.settimeout(self._timeout())
            sock.send(struct.pack("=IHHII", 16 + len(body), msg_type, flags, seq, 0) + body)
        except OSError as exc:
            raise GenericError(f"could not ask the kernel for its {what}: {exc}") from None
        messages: list[tuple[int, bytes]] = []
        interrupted = False
        while True:
            for kind, msg_flags, msg_seq, payload in _messages(self._recv(sock, what), what):
                if msg_seq != seq:
                    continue  # a late answer to an earlier request
                interrupted = interrupted or bool(msg_flags & _NLM_F_DUMP_INTR)
                if kind in (_NLMSG_ERROR, _NLMSG_DONE):
                    code = _status(payload, what)
                    if code:
                        raise GenericError(
                            f"the kernel could not list its {what}: {os.strerror(code)}"
                        )
                    if kind == _NLMSG_DONE:
                        return messages, interrupted
                elif kind == _NLMSG_OVERRUN:
                    raise GenericError(f"the kernel's answer listing its {what} overran")
                else:
                    messages.append((kind, payload))

    def _recv(self, sock: NetlinkSocket, what: str) -> bytes:
        timeout = self._timeout()
        try:
            sock.settimeout(timeout)
            data, _, msg_flags, _ = sock.recvmsg(_RECV_BUFFER)
        except socket.timeout:
            if self._deadline is not None and self._deadline.expired():
                raise self._deadline.timeout_error(f"reading the kernel's {what}") from None
            raise GenericError(
                f"the kernel did not answer within {timeout:.1f}s while listing its {what}"
            ) from None
        except OSError as exc:
            raise GenericError(f"could not read the kernel's {what}: {exc}") from None
        if msg_flags & socket.MSG_TRUNC:
            raise GenericError(
                f"a netlink answer listing the kernel's {what} was longer than {_RECV_BUFFER} bytes"
            )
        if not data:
            raise GenericError(f"an empty netlink answer while listing the kernel's {what}")
        return data

    @staticmethod
    def _attrs(payload: bytes, start: int) -> dict[int, bytes]:
        attrs: dict[int, bytes] = {}
        offset = start
        while offset + 4 <= len(payload):
            length, kind = struct.unpack_from("=HH", payload, offset)
            if length < 4 or offset + length > len(payload):
                raise GenericError("malformed netlink answer: a truncated attribute")
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
            family, prefixlen, hdr_flags, _, msg_index = struct.unpack_from("=BBBBI", payload)
            if index is not None and msg_index != index:
                continue
            attrs = self._attrs(payload, 8)
            flags = _u32(attrs.get(_IFA_FLAGS)) if _IFA_FLAGS in attrs else hdr_flags
            raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
            if raw is None or family not in (socket.AF_INET, socket.AF_INET6):
                continue
            label = attrs.get(_IFA_LABEL)
            result.append(
                Addr(
                    ip=_ip(family, raw),
                    prefixlen=prefixlen,
                    index=msg_index,
                    label=label.split(b"\0", 1)[0].decode(errors="replace") if label else None,
                    flags=flags,
                    family=family,
                )
            )
        return result

    def find_address(self, ip: str, index: Optional[int] = None) -> Optional[Addr]:
        wanted = str(ipaddress.ip_address(ip))
        return next((a for a in self.addresses(index) if a.ip == wanted), None)

    def add_address(self, index: int, ip: str, prefixlen: int, label: Optional[str] = None) -> bool:
        family = _family(ip)
        kwargs: dict[str, Any] = {"index": index, "address": ip, "prefixlen": prefixlen}
        kwargs["family"] = family
        if family == socket.AF_INET6:
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
            family=_family(ip),
        )

    # ------------------------------------------------------------------------- policy rules

    def rules(self, table: Optional[int] = None) -> list[Rule]:
        """The policy rules of both families (into ``table`` only, when given).

        The kernel never flags a rule dump as interrupted: read until two reads agree.
        """
        return self._settled(lambda: self._read_rules(table), "policy rules")

    def _read_rules(self, table: Optional[int]) -> list[Rule]:
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
                        family=msg_family,
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
        """The routes of both families in ``table``.

        The kernel does not flag a route dump as interrupted (IPv4 and IPv6 route dumps carry no
        consistency check): read until two reads agree.
        """
        return self._settled(lambda: self._read_routes(table), f"routes of table {table}")

    def _read_routes(self, table: int) -> list[RouteEntry]:
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
        self,
        table: int,
        dst: Optional[str],
        oif: int,
        gateway: Optional[str] = None,
        family: Optional[int] = None,
    ) -> None:
        """Make the route to ``dst`` (None: default) in ``table`` go out of ``oif``.

        Its family is ``family`` when given, else that of ``dst`` or ``gateway``, else IPv4 (an
        on-link IPv6 default route needs ``family``).
        """
        family = _route_family(dst, gateway, family)
        kwargs: dict[str, Any] = {"table": table, "oif": oif, "family": family}
        kwargs["dst"] = dst if dst else ("::/0" if family == socket.AF_INET6 else "0.0.0.0/0")
        if gateway:
            kwargs["gateway"] = gateway
        else:
            kwargs["scope"] = RT_SCOPE_LINK
        self._do((), f"set route {kwargs['dst']} in table {table}", "route", "replace", **kwargs)

    def del_route(
        self,
        table: int,
        dst: Optional[str],
        oif: Optional[int] = None,
        family: Optional[int] = None,
    ) -> bool:
        """Remove the route to ``dst`` (None: the default route of ``family``, else IPv4)."""
        family = _route_family(dst, None, family)
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
