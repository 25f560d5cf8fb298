"""The operating-system side: links, addresses, policy rules and routes.

A few typed functions over the kernel's netlink interface, so callers never pass verb strings or
loose keyword arguments. Every change is idempotent: "already exists" and "no such" from the
kernel are expected outcomes, not errors. Reads and address changes go over our own socket
(rtnl.py); links, policy rules and routes (aws-eni's changes) through pyroute2, 0.7.2 (what the
distributions ship) and newer.
"""

from __future__ import annotations

import _socket
import errno
import ipaddress
import os
import struct
import sys

from ipfailover.host.rtnl import (
    FRA_PRIORITY,
    FRA_SRC,
    IFA_ADDRESS,
    IFA_FLAGS,
    IFA_LABEL,
    IFA_LOCAL,
    IFLA_ADDRESS,
    IFLA_IFNAME,
    NLM_F_CREATE,
    NLM_F_EXCL,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTA_TABLE,
    RTM_DELADDR,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_GETRULE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTM_NEWRULE,
    RawNetlink,
    attribute,
    route_socket,
)
from ocf_shim import Deadline, GenericError, NotInstalledError

# No dataclasses or typing at run time: every monitor reads links and addresses, and those two
# imports cost about as much CPU as starting Python (issue 16: the OS-only monitor's budget).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Callable, Optional

    from ipfailover.host.rtnl import NetlinkSocket

IFF_UP = 0x1
IFA_F_SECONDARY = 0x01  # IPv4: another address of the same subnet and prefix came first
IFA_F_NODAD = 0x02
IFA_F_PERMANENT = 0x80  # no lifetime: configured, not learnt (DHCPv6, SLAAC)
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
_EXISTS = (errno.EEXIST,)
_MISSING = (errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENODEV)
_ADDRESS_BYTES: dict[int, int] = {_socket.AF_INET: 4, _socket.AF_INET6: 16}


class _Value:
    """An immutable value, equal to and hashed as another of its class with the same fields
    (its ``__slots__``): what a frozen dataclass gives, for a few classes read at every monitor."""

    __slots__: tuple[str, ...] = ()

    def _init(self, **fields: object) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self) or not isinstance(other, _Value):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._fields()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({shown})"


class Link(_Value):
    __slots__ = ("index", "name", "mac", "up")  # noqa: RUF023 - in order
    index: int
    name: str
    mac: str
    up: bool

    def __init__(self, index: int, name: str, mac: str, up: bool) -> None:
        self._init(index=index, name=name, mac=mac, up=up)


class Addr(_Value):
    __slots__ = ("ip", "prefixlen", "index", "label", "flags", "family")  # noqa: RUF023 - in order
    ip: str
    prefixlen: int
    index: int
    label: Optional[str]
    flags: int  # IFA_F_*
    family: int  # from the message (ifa_family)

    def __init__(  # noqa: PLR0917 - the fields, in order, as the dataclass had them
        self,
        ip: str,
        prefixlen: int,
        index: int,
        label: Optional[str],
        flags: int = 0,
        family: int = _socket.AF_INET,
    ) -> None:
        self._init(ip=ip, prefixlen=prefixlen, index=index, label=label, flags=flags, family=family)

    @property
    def secondary(self) -> bool:
        """IPv4: the kernel's secondary flag (an address of the same subnet and prefix length,
        normally the node's primary, was there first)."""
        return bool(self.flags & IFA_F_SECONDARY)


class Rule(_Value):
    __slots__ = ("priority", "table", "src", "family")  # noqa: RUF023 - in order
    priority: int
    table: int
    src: Optional[str]  # "10.0.3.7/32" or None for "from all"
    family: int  # from the message: tells "from all" rules of both apart

    def __init__(
        self, priority: int, table: int, src: Optional[str], family: int = _socket.AF_INET
    ) -> None:
        self._init(priority=priority, table=table, src=src, family=family)


class RouteEntry(_Value):
    __slots__ = ("dst", "gateway", "oif", "table", "family")  # noqa: RUF023 - in order
    dst: Optional[str]  # "10.0.3.0/24" or None for the default route
    gateway: Optional[str]
    oif: Optional[int]
    table: int
    family: int

    def __init__(
        self,
        dst: Optional[str],
        gateway: Optional[str],
        oif: Optional[int],
        table: int,
        family: int = _socket.AF_INET,
    ) -> None:
        self._init(dst=dst, gateway=gateway, oif=oif, table=table, family=family)


def _u32(raw: Optional[bytes]) -> int:
    return int(struct.unpack("=I", raw[:4])[0]) if raw and len(raw) >= 4 else 0


def _ip(family: int, raw: bytes) -> str:
    """The address in ``raw`` read as the message's family says, never guessed from its size."""
    if len(raw) != _ADDRESS_BYTES.get(family):
        raise GenericError(
            f"malformed netlink answer: a {len(raw)}-byte address of address family {family}"
        )
    if family == _socket.AF_INET:
        return str(ipaddress.IPv4Address(raw))
    return str(ipaddress.IPv6Address(raw))


def _family(text: str) -> int:
    """The family of an address or network given as text, from its parsed value."""
    network = ipaddress.ip_network(text, strict=False)
    return _socket.AF_INET6 if network.version == 6 else _socket.AF_INET


def _pyroute2_missing(detail: str) -> NotInstalledError:
    return NotInstalledError(
        f"pyroute2 cannot be imported on this node: {detail}; install pyroute2 0.7.2 or later for"
        f" {sys.executable} (python3-pyroute2; python311-pyroute2 on SLES 15)"
    )


def _address_message(index: int, ip: str, prefixlen: int, flags: int = 0) -> bytes:
    """The body of an RTM_NEWADDR or RTM_DELADDR request: the header (scope global) and the
    address as both local and peer address, as ``ip address`` sends it (no peer of its own)."""
    raw = ipaddress.ip_address(ip).packed
    family = _socket.AF_INET6 if len(raw) == 16 else _socket.AF_INET
    header = struct.pack("=BBBBI", family, prefixlen, flags, 0, index)
    return header + attribute(IFA_LOCAL, raw) + attribute(IFA_ADDRESS, raw)


def _route_family(dst: Optional[str], gateway: Optional[str], family: Optional[int]) -> int:
    """A route's family: the one given, else that of its destination or gateway, else IPv4."""
    if family is not None:
        return family
    given = dst or gateway
    return _family(given) if given else _socket.AF_INET


class Netlink(RawNetlink):
    """The netlink side of one action (use as a context manager).

    Everything is read, and addresses are added and removed, over a plain ``AF_NETLINK``
    socket, so a monitor, and an action that changes only addresses, never imports pyroute2
    (0.1-0.2 s of CPU); pyroute2's ``IPRoute`` is opened on the first other change.
    ``deadline`` (the action's) bounds every read, retries and waits for the kernel included;
    ``open_socket`` gives the socket to read from.
    """

    def __init__(
        self,
        deadline: Optional[Deadline] = None,
        open_socket: Callable[[], NetlinkSocket] = route_socket,
    ) -> None:
        super().__init__(deadline, open_socket)
        self._iproute: Any = None
        self._error: type[Exception] = Exception

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        super().close()
        if self._iproute is not None:
            self._iproute.close()

    @property
    def _ipr(self) -> Any:
        if self._iproute is None:
            try:
                from pyroute2 import IPRoute
                from pyroute2.netlink.exceptions import NetlinkError
            except ImportError as exc:
                raise _pyroute2_missing(str(exc)) from None
            self._error = NetlinkError
            try:
                self._iproute = IPRoute()
            except OSError as exc:
                raise GenericError(f"could not open a netlink socket for changes: {exc}") from None
        return self._iproute

    def check_changes_possible(self) -> None:
        """Fail (5) before anything is changed when pyroute2 is not installed at all: a look for
        the package, not its import (prepare_changes or the first change imports it)."""
        from importlib.util import find_spec

        if find_spec("pyroute2") is None:
            raise _pyroute2_missing("no module named 'pyroute2'")

    def prepare_changes(self) -> None:
        """Load pyroute2 now (0.1-0.2 s), e.g. while waiting for EC2, rather than at the first
        change of a link, rule or route."""
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
        except OSError as exc:  # the socket itself: a timeout, a closed or broken handle
            raise GenericError(f"could not {what}: {type(exc).__name__}: {exc}") from None
        return True

    def _change(
        self, ok_codes: tuple[int, ...], what: str, msg_type: int, flags: int, body: bytes
    ) -> bool:
        """One change over our own socket; False when the kernel says it was already so."""
        code = self._request(msg_type, flags, body, what)
        if code in ok_codes:
            return False
        if code:
            raise GenericError(f"could not {what}: {os.strerror(code)} (errno {code})")
        return True

    # ------------------------------------------------------------------------- links

    def links(self) -> list[Link]:
        result = []
        body = struct.pack("=BxHiII", _socket.AF_UNSPEC, 0, 0, 0, 0)
        for kind, payload in self._dump(RTM_GETLINK, body):
            if kind != RTM_NEWLINK or len(payload) < 16:
                continue
            _, _, index, flags, _ = struct.unpack_from("=BxHiII", payload)
            attrs = self._attrs(payload, 16)
            name = attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace")
            mac = ":".join(f"{b:02x}" for b in attrs.get(IFLA_ADDRESS, b""))
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
        body = struct.pack("=BBBBI", _socket.AF_UNSPEC, 0, 0, 0, 0)
        for kind, payload in self._dump(RTM_GETADDR, body):
            if kind != RTM_NEWADDR or len(payload) < 8:
                continue
            family, prefixlen, hdr_flags, _, msg_index = struct.unpack_from("=BBBBI", payload)
            if index is not None and msg_index != index:
                continue
            attrs = self._attrs(payload, 8)
            flags = _u32(attrs.get(IFA_FLAGS)) if IFA_FLAGS in attrs else hdr_flags
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw is None or family not in (_socket.AF_INET, _socket.AF_INET6):
                continue
            label = attrs.get(IFA_LABEL)
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
        """Add ``ip``/``prefixlen`` to link ``index``, as ``ip address add`` does (scope global,
        no broadcast; IPv4 with ``label`` when given; IPv6 without duplicate address detection:
        usable at once, the address is ours by AWS's word). False when it is there already."""
        family = _family(ip)
        v6 = family == _socket.AF_INET6
        body = _address_message(index, ip, prefixlen, IFA_F_NODAD if v6 else 0)
        if label and not v6:
            body += attribute(IFA_LABEL, label.encode() + b"\0")
        what = f"add address {ip}/{prefixlen}"
        create = NLM_F_CREATE | NLM_F_EXCL
        if self._change(_EXISTS, what, RTM_NEWADDR, create, body):
            return True
        if v6 or not label:
            return False
        # There already, with another label (added by hand, or before iflabel was set): the
        # kernel keeps an address's label for its lifetime (a replace leaves it), so the
        # address is added again with it; scripts grep for the label.
        seen = [a for a in self.addresses(index) if a.ip == ip and a.prefixlen == prefixlen]
        if not seen or seen[0].label == label:
            return False
        self.del_address(index, ip, prefixlen)
        return self._change((), what + f" with label {label}", RTM_NEWADDR, create, body)

    def del_address(self, index: int, ip: str, prefixlen: int) -> bool:
        """Remove ``ip``/``prefixlen`` from link ``index``; False when it is not there."""
        what = f"remove address {ip}/{prefixlen}"
        body = _address_message(index, ip, prefixlen)
        return self._change(_MISSING, what, RTM_DELADDR, 0, body)

    # ------------------------------------------------------------------------- policy rules

    def rules(self, table: Optional[int] = None) -> list[Rule]:
        """The policy rules of both families (into ``table`` only, when given).

        The kernel never flags a rule dump as interrupted: read until two reads agree.
        """
        return self._settled(lambda: self._read_rules(table), "policy rules")

    def _tables_dump(
        self, request: int, reply: int
    ) -> Iterator[tuple[int, int, int, int, dict[int, bytes]]]:
        """(family, dst_len, src_len, table, attributes) of each rule or route of both families:
        a rule's header (fib_rule_hdr) and a route's (rtmsg) begin alike, and FRA_TABLE is
        RTA_TABLE (the 32-bit table id, where the header's byte cannot hold it)."""
        for family in (_socket.AF_INET, _socket.AF_INET6):
            body = struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0, 0, 0, 0, 0)
            for kind, payload in self._dump(request, body):
                if kind != reply or len(payload) < 12:
                    continue
                msg_family, dst_len, src_len, _, hdr_table = struct.unpack_from("=BBBBB", payload)
                attrs = self._attrs(payload, 12)
                yield msg_family, dst_len, src_len, _u32(attrs.get(RTA_TABLE)) or hdr_table, attrs

    def _read_rules(self, table: Optional[int]) -> list[Rule]:
        result = []
        for family, _, src_len, msg_table, attrs in self._tables_dump(RTM_GETRULE, RTM_NEWRULE):
            if table is not None and msg_table != table:
                continue
            src = attrs.get(FRA_SRC)
            result.append(
                Rule(
                    priority=_u32(attrs.get(FRA_PRIORITY)),
                    table=msg_table,
                    src=f"{_ip(family, src)}/{src_len}" if src else None,
                    family=family,
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
        for family, dst_len, _, msg_table, attrs in self._tables_dump(RTM_GETROUTE, RTM_NEWROUTE):
            if msg_table != table:
                continue
            dst, gateway, oif = attrs.get(RTA_DST), attrs.get(RTA_GATEWAY), attrs.get(RTA_OIF)
            result.append(
                RouteEntry(
                    dst=f"{_ip(family, dst)}/{dst_len}" if dst else None,
                    gateway=_ip(family, gateway) if gateway else None,
                    oif=_u32(oif) if oif else None,
                    table=table,
                    family=family,
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
        kwargs["dst"] = dst if dst else ("::/0" if family == _socket.AF_INET6 else "0.0.0.0/0")
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
        kwargs["dst"] = dst if dst else ("::/0" if family == _socket.AF_INET6 else "0.0.0.0/0")
        if oif is not None:
            kwargs["oif"] = oif
        return self._do(
            _MISSING, f"remove route {kwargs['dst']} from table {table}", "route", "del", **kwargs
        )

    def flush_table(self, table: int) -> int:
        """Remove every route of ``table`` (both families); returns how many went."""
        removed = 0
        for route in self.routes(table):
            default = "::/0" if route.family == _socket.AF_INET6 else "0.0.0.0/0"
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
