"""Raw netlink: dumps of the kernel's routing tables, and acknowledged single changes, over a
plain ``AF_NETLINK`` socket.

Kept hand-written on purpose: pyroute2's import costs 0.1-0.2 s of CPU (its package loads every
entry point it has), against a few milliseconds here. A monitor only reads, and aws-overlayip and
aws-secip only add and remove an address: none of them imports pyroute2 (it was 40 % of their
starts' CPU, which a failover of many resources spends at once). Every exchange is bounded by
the action's deadline; dumps the kernel flags as interrupted, or reads that disagree, are read
again a bounded number of times.
"""

from __future__ import annotations

import _socket  # socket's own module: socket.py's enums cost ~5 ms of every monitor's CPU
import os
import struct

from ocf_shim import Deadline, GenericError

# No typing at run time: every monitor reads the kernel's tables (the OS-only monitor's CPU).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Callable, Optional, Protocol, TypeVar

    _T = TypeVar("_T")

    class NetlinkSocket(Protocol):
        """What the reader needs of a bound ``NETLINK_ROUTE`` socket (tests give a fake
        kernel)."""

        def send(self, data: bytes, /) -> int: ...

        def recvmsg(self, bufsize: int, /) -> tuple[bytes, list[Any], int, Any]: ...

        def settimeout(self, value: Optional[float], /) -> None: ...

        def close(self) -> None: ...


# Netlink message types, flags and attributes (linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h)
NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 2, 3, 4
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 16, 18, 20, 21, 22
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_DUMP = 0x1, 0x4, 0x10, 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400  # of a new object: refuse an existing one; create it
IFLA_ADDRESS, IFLA_IFNAME = 1, 3
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL = 1, 2, 3
IFA_FLAGS = 8  # the 32-bit flags (the header keeps only the low 8 bits)
RTM_NEWROUTE, RTM_GETROUTE, RTM_NEWRULE, RTM_GETRULE = 24, 26, 32, 34
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
FRA_SRC, FRA_PRIORITY, FRA_TABLE = 2, 6, 15
_DUMPS = {
    RTM_GETLINK: "links",
    RTM_GETADDR: "addresses",
    RTM_GETROUTE: "routes",
    RTM_GETRULE: "policy rules",
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


def _messages(data: bytes, doing: str) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, sequence number, payload) of each message in one datagram; ``doing`` (e.g.
    "listing the kernel's addresses") says in errors what the answer was for."""
    offset = 0
    while offset < len(data):
        length = struct.unpack_from("=I", data, offset)[0] if len(data) - offset >= 16 else 0
        if length < 16 or offset + length > len(data):
            raise GenericError(
                f"malformed netlink answer while {doing}: a truncated message "
                f"at byte {offset} of {len(data)}"
            )
        _, kind, flags, seq, _ = struct.unpack_from("=IHHII", data, offset)
        yield kind, flags, seq, data[offset + 16 : offset + length]
        offset += (length + 3) & ~3


def _status(payload: bytes, doing: str) -> int:
    """The error number an NLMSG_ERROR or NLMSG_DONE message carries (0: none)."""
    if len(payload) < 4:
        raise GenericError(f"malformed netlink answer while {doing}: no status")
    return abs(int(struct.unpack_from("=i", payload)[0]))


def attribute(kind: int, data: bytes) -> bytes:
    """One netlink attribute (length, type, data), padded to 4 bytes."""
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + bytes(-length % 4)


def route_socket() -> NetlinkSocket:
    """A new ``NETLINK_ROUTE`` socket, bound."""
    sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, 0)
    try:
        sock.bind((0, 0))
    except OSError:
        sock.close()
        raise
    return sock


class RawNetlink:
    """Dumps of the kernel's tables and single changes over one socket, bounded by ``deadline``
    (the action's); ``open_socket`` gives the socket (tests give a fake kernel)."""

    def __init__(
        self,
        deadline: Optional[Deadline] = None,
        open_socket: Callable[[], NetlinkSocket] = route_socket,
    ) -> None:
        self._deadline = deadline
        self._open_socket = open_socket
        self._sock: Optional[NetlinkSocket] = None
        self._seq = 0

    def close(self) -> None:
        self._drop_socket()

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
        seq, flags = self._seq, NLM_F_REQUEST | NLM_F_DUMP
        doing = f"listing the kernel's {what}"
        try:
            sock.settimeout(self._timeout())
            sock.send(struct.pack("=IHHII", 16 + len(body), msg_type, flags, seq, 0) + body)
        except OSError as exc:
            raise GenericError(f"could not ask the kernel for its {what}: {exc}") from None
        messages: list[tuple[int, bytes]] = []
        interrupted = False
        while True:
            for kind, msg_flags, msg_seq, payload in _messages(self._recv(sock, doing), doing):
                if msg_seq != seq:
                    continue  # a late answer to an earlier request
                interrupted = interrupted or bool(msg_flags & NLM_F_DUMP_INTR)
                if kind in (NLMSG_ERROR, NLMSG_DONE):
                    code = _status(payload, doing)
                    if code:
                        raise GenericError(
                            f"the kernel could not list its {what}: {os.strerror(code)}"
                        )
                    if kind == NLMSG_DONE:
                        return messages, interrupted
                elif kind == NLMSG_OVERRUN:
                    raise GenericError(f"the kernel's answer listing its {what} overran")
                else:
                    messages.append((kind, payload))

    def _request(self, msg_type: int, flags: int, body: bytes, what: str) -> int:
        """One change (``what``, e.g. "add address 10.0.1.50/24"), acknowledged: 0 when the
        kernel made it, else the error number it refused it with (the caller knows which ones
        mean "already so"). A failure to talk to the kernel drops the socket and raises."""
        self._seq += 1
        seq, doing = self._seq, f"trying to {what}"
        try:
            sock = self._socket()
            try:
                sock.settimeout(self._timeout())
                header = struct.pack(
                    "=IHHII", 16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_ACK | flags, seq, 0
                )
                sock.send(header + body)
            except OSError as exc:
                raise GenericError(f"could not {what}: {exc}") from None
            while True:
                for kind, _, msg_seq, payload in _messages(self._recv(sock, doing), doing):
                    if msg_seq == seq and kind == NLMSG_ERROR:
                        return _status(payload, doing)
        except GenericError:
            self._drop_socket()
            raise

    def _recv(self, sock: NetlinkSocket, doing: str) -> bytes:
        timeout = self._timeout()
        try:
            sock.settimeout(timeout)
            data, _, msg_flags, _ = sock.recvmsg(_RECV_BUFFER)
        except _socket.timeout:
            if self._deadline is not None and self._deadline.expired():
                raise self._deadline.timeout_error(doing) from None
            raise GenericError(
                f"the kernel did not answer within {timeout:.1f}s while {doing}"
            ) from None
        except OSError as exc:
            raise GenericError(f"could not read the kernel's answer while {doing}: {exc}") from None
        if msg_flags & _socket.MSG_TRUNC:
            raise GenericError(
                f"a netlink answer while {doing} was longer than {_RECV_BUFFER} bytes"
            )
        if not data:
            raise GenericError(f"an empty netlink answer while {doing}")
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
