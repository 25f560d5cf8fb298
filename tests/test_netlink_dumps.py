"""The raw netlink reader against a fake kernel: interrupted dumps, rule reads that disagree,
and every way an answer can be wrong, each a GenericError (never a hang, never a stray exception).

The fake kernel answers each dump request with the next scripted answer, in netlink's wire format.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from typing import Any, Callable, Optional, Union

import pytest

from ipfailover.host.netlink import Addr, Netlink, RouteEntry, Rule
from ocf_shim import Deadline, GenericError

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_MULTI, NLM_F_DUMP_INTR = 0x2, 0x10
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE, RTM_NEWRULE = 16, 20, 24, 32
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
FRA_SRC, FRA_PRIORITY, FRA_TABLE = 2, 6, 15
IFLA_ADDRESS, IFLA_IFNAME = 1, 3
V4, V6 = socket.AF_INET, socket.AF_INET6

Message = tuple[int, bytes]  # (type, payload)
Datagram = Union[bytes, tuple[bytes, int], BaseException]  # data, (data, msg_flags), or raised
Answer = Callable[[int], list[Datagram]]  # the datagrams answering the request numbered seq


def pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def nlmsg(kind: int, flags: int, seq: int, payload: bytes) -> bytes:
    return pad(struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 4242) + payload)


def attr(kind: int, data: bytes) -> bytes:
    return pad(struct.pack("=HH", 4 + len(data), kind) + data)


def packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def addr(ip: str, prefixlen: int = 24, index: int = 2) -> Message:
    family = V6 if ":" in ip else V4
    head = struct.pack("=BBBBI", family, prefixlen, 0, 0, index)
    return RTM_NEWADDR, head + attr(IFA_ADDRESS, packed(ip)) + attr(IFA_LOCAL, packed(ip))


def rule(family: int, priority: int, table: int, src: Optional[str] = None) -> Message:
    src_len = ipaddress.ip_network(src).prefixlen if src else 0
    head = struct.pack("=BBBBBBBBI", family, 0, src_len, 0, 252, 0, 0, 1, 0)
    body = attr(FRA_TABLE, struct.pack("=I", table)) + attr(
        FRA_PRIORITY, struct.pack("=I", priority)
    )
    if src:
        body += attr(FRA_SRC, ipaddress.ip_network(src).network_address.packed)
    return RTM_NEWRULE, head + body


def route(
    family: int, table: int, dst: Optional[str] = None, gateway: Optional[str] = None
) -> Message:
    dst_len = ipaddress.ip_network(dst).prefixlen if dst else 0
    head = struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, 252, 3, 0, 1, 0)
    body = attr(RTA_TABLE, struct.pack("=I", table)) + attr(RTA_OIF, struct.pack("=I", 2))
    if dst:
        body += attr(RTA_DST, ipaddress.ip_network(dst).network_address.packed)
    if gateway:
        body += attr(RTA_GATEWAY, packed(gateway))
    return RTM_NEWROUTE, head + body


def link(index: int, name: str) -> Message:
    head = struct.pack("=BxHiII", 0, 1, index, 0x1, 0)
    return RTM_NEWLINK, head + attr(IFLA_IFNAME, name.encode() + b"\0") + attr(
        IFLA_ADDRESS, bytes.fromhex("02000a00010a")
    )


def dump(*messages: Message, intr: bool = False, status: int = 0, split: bool = False) -> Answer:
    """A dump's answer: the messages then NLMSG_DONE (with ``status``), flagged interrupted or
    not, in one datagram or (``split``) one datagram per message."""

    def answer(seq: int) -> list[Datagram]:
        flags = NLM_F_MULTI | (NLM_F_DUMP_INTR if intr else 0)
        parts = [nlmsg(kind, flags, seq, payload) for kind, payload in messages]
        parts.append(nlmsg(NLMSG_DONE, flags, seq, struct.pack("=i", -status)))
        return list(parts) if split else [b"".join(parts)]

    return answer


def raw(*datagrams: Datagram) -> Answer:
    """An answer given as datagrams (``seq`` is ignored: build them with seq 1)."""
    return lambda seq: list(datagrams)


class FakeKernel:
    """A bound NETLINK_ROUTE socket whose answers are scripted (one per dump request)."""

    def __init__(self, *answers: Answer, clock: Optional[list[float]] = None) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[int, int]] = []  # (message type, family) of each request
        self.timeouts: list[Optional[float]] = []
        self.pending: list[Datagram] = []
        self.opened = 0
        self.closed = 0
        self.clock = clock  # advanced by a second at each request, when given

    def open(self) -> FakeKernel:
        self.opened += 1
        return self

    # the socket
    def send(self, data: bytes, /) -> int:
        _, kind, _, seq, _ = struct.unpack_from("=IHHII", data)
        self.requests.append((kind, data[16]))
        if self.clock is not None:
            self.clock[0] += 1.0
        self.pending = self.answers.pop(0)(seq) if self.answers else []
        return len(data)

    def recvmsg(self, bufsize: int, /) -> tuple[bytes, list[Any], int, Any]:
        if not self.pending:
            raise socket.timeout("timed out")  # what a real socket does when nothing comes
        item = self.pending.pop(0)
        if isinstance(item, BaseException):
            raise item
        data, flags = item if isinstance(item, tuple) else (item, 0)
        return data[:bufsize], [], flags, (0, 0)

    def recv(self, bufsize: int, /) -> bytes:  # what older readers call
        return self.recvmsg(bufsize)[0]

    def settimeout(self, value: Optional[float], /) -> None:
        self.timeouts.append(value)

    def bind(self, address: Any, /) -> None:
        pass

    def close(self) -> None:
        self.closed += 1


def reader(kernel: FakeKernel, deadline: Optional[Deadline] = None) -> Netlink:
    return Netlink(deadline, open_socket=kernel.open)


def addresses_of(*ips: str) -> list[Addr]:
    return [Addr(ip=ip, prefixlen=24, index=2, label=None) for ip in ips]


# ----------------------------------------------------------------------------- interrupted dumps


def test_an_interrupted_address_dump_is_read_again() -> None:
    kernel = FakeKernel(
        dump(addr("10.0.1.10"), addr("10.0.1.20"), intr=True),  # 10.0.1.20 was being removed
        dump(addr("10.0.1.10"), addr("10.0.1.30")),
    )
    assert reader(kernel).addresses() == addresses_of("10.0.1.10", "10.0.1.30")
    assert len(kernel.requests) == 2


def test_an_interrupted_route_dump_is_read_again() -> None:
    default = route(V4, 100, None, "10.0.3.1")
    kernel = FakeKernel(
        dump(default, route(V4, 100, "10.0.9.0/24"), intr=True),
        dump(default),
        dump(),  # IPv6
        dump(default),  # the second read, which agrees
        dump(),
    )
    assert reader(kernel).routes(100) == [RouteEntry(None, "10.0.3.1", 2, 100, V4)]


def test_a_dump_interrupted_every_time_is_an_error_after_a_few_attempts() -> None:
    kernel = FakeKernel(*[dump(addr("10.0.1.10"), intr=True)] * 100)
    with pytest.raises(GenericError):
        reader(kernel).addresses()
    assert 2 <= len(kernel.requests) <= 10


def test_an_interruption_flagged_only_on_done_counts() -> None:
    def answer(seq: int) -> list[Datagram]:
        body = nlmsg(RTM_NEWADDR, NLM_F_MULTI, seq, addr("10.0.1.20")[1])
        done = nlmsg(NLMSG_DONE, NLM_F_MULTI | NLM_F_DUMP_INTR, seq, struct.pack("=i", 0))
        return [body, done]

    kernel = FakeKernel(answer, dump(addr("10.0.1.10")))
    assert reader(kernel).addresses() == addresses_of("10.0.1.10")


def test_retries_stop_at_the_deadline() -> None:
    clock = [0.0]
    kernel = FakeKernel(*[dump(addr("10.0.1.10"), intr=True)] * 100, clock=clock)
    deadline = Deadline(3.0, margin_s=0.0, clock=lambda: clock[0])
    with pytest.raises(GenericError):
        reader(kernel, deadline).addresses()
    assert len(kernel.requests) == 3  # one a second: the fourth would start past the deadline


# ----------------------------------------------------------------------------- rules


def test_rules_are_read_until_two_reads_agree() -> None:
    ours, stale = rule(V4, 6001, 6001, "10.0.3.7/32"), rule(V4, 6001, 6001, "10.0.3.8/32")
    kernel = FakeKernel(
        dump(ours, stale),  # a read that raced with the removal of the stale rule
        dump(),
        dump(ours),
        dump(),
        dump(ours),
        dump(),
    )
    assert reader(kernel).rules(6001) == [Rule(6001, 6001, "10.0.3.7/32", V4)]
    assert len(kernel.requests) == 6


def test_rules_that_never_settle_are_an_error_after_a_few_reads() -> None:
    answers = []
    for i in range(100):
        answers += [dump(rule(V4, 6001, 6001, f"10.0.3.{i}/32")), dump()]
    kernel = FakeKernel(*answers)
    with pytest.raises(GenericError):
        reader(kernel).rules()
    assert 4 <= len(kernel.requests) <= 20


# ----------------------------------------------------------------------------- families


def test_families_come_from_the_messages() -> None:
    kernel = FakeKernel(
        dump(addr("2001:db8::7", 64), addr("10.0.1.10")),
        dump(rule(V4, 32766, 254)),
        dump(rule(V6, 32766, 254)),  # "from all lookup main" of both families
        dump(rule(V4, 32766, 254)),
        dump(rule(V6, 32766, 254)),
    )
    nl = reader(kernel)
    assert [(a.ip, a.family) for a in nl.addresses()] == [("2001:db8::7", V6), ("10.0.1.10", V4)]
    assert nl.rules() == [Rule(32766, 254, None, V4), Rule(32766, 254, None, V6)]


def test_an_address_whose_size_does_not_fit_its_family_is_an_error() -> None:
    head = struct.pack("=BBBBI", V4, 128, 0, 0, 2)
    ipv6_in_v4 = (RTM_NEWADDR, head + attr(IFA_LOCAL, packed("2001:db8::7")))
    with pytest.raises(GenericError):
        reader(FakeKernel(dump(ipv6_in_v4))).addresses()


# ----------------------------------------------------------------------------- answers


def test_an_answer_split_across_datagrams_is_read_whole() -> None:
    kernel = FakeKernel(dump(link(1, "lo"), link(2, "eth0"), link(3, "eth1"), split=True))
    assert [(k.index, k.name) for k in reader(kernel).links()] == [
        (1, "lo"),
        (2, "eth0"),
        (3, "eth1"),
    ]


def test_answers_to_an_earlier_request_are_skipped() -> None:
    def answer(seq: int) -> list[Datagram]:
        late = nlmsg(RTM_NEWADDR, NLM_F_MULTI, seq - 1, addr("10.9.9.9")[1])
        late += nlmsg(NLMSG_DONE, NLM_F_MULTI, seq - 1, struct.pack("=i", 0))
        return [late, *dump(addr("10.0.1.10"))(seq)]

    assert reader(FakeKernel(dump(), answer)).addresses() == []
    nl = reader(FakeKernel(answer, answer))
    assert nl.addresses() == addresses_of("10.0.1.10")


HEADER_ONLY = struct.pack("=IHHII", 8, RTM_NEWADDR, NLM_F_MULTI, 1, 0)  # claims 8 bytes
BEYOND = struct.pack("=IHHII", 200, RTM_NEWADDR, NLM_F_MULTI, 1, 0) + b"\0" * 8
CUT_ATTRIBUTE = nlmsg(
    RTM_NEWADDR, NLM_F_MULTI, 1, struct.pack("=BBBBI", V4, 24, 0, 0, 2) + struct.pack("=HH", 40, 2)
)
BROKEN: dict[str, Answer] = {
    "an error code instead of a dump": raw(
        nlmsg(NLMSG_ERROR, 0, 1, struct.pack("=i", -errno.EPERM) + b"\0" * 16)
    ),
    "a done message carrying an error": dump(addr("10.0.1.10"), status=errno.ENOBUFS),
    "a message shorter than its header": raw(HEADER_ONLY),
    "a message longer than its datagram": raw(BEYOND),
    "stray bytes after the last message": raw(
        nlmsg(RTM_NEWADDR, 2, 1, addr("10.0.1.10")[1]) + b"\1" * 8
    ),
    "an attribute longer than its message": raw(CUT_ATTRIBUTE),
    "an answer that did not fit the buffer": raw((nlmsg(RTM_NEWADDR, 2, 1, b""), socket.MSG_TRUNC)),
    "an empty datagram": raw(b""),
    "no answer at all (timeout)": raw(),
    "a socket error": raw(OSError(errno.ENOBUFS, "No buffer space available")),
    "an error code without its status": raw(nlmsg(NLMSG_ERROR, 0, 1, b"")),
}


@pytest.mark.parametrize("answer", BROKEN.values(), ids=list(BROKEN))
def test_a_broken_answer_is_a_generic_error_and_the_next_read_starts_afresh(answer: Answer) -> None:
    kernel = FakeKernel(answer, dump(addr("10.0.1.10")))
    nl = reader(kernel)
    with pytest.raises(GenericError):
        nl.addresses()
    # The kernel refuses a new dump on a socket whose last dump was not read to its end.
    assert nl.addresses() == addresses_of("10.0.1.10")
    assert (kernel.opened, kernel.closed) == (2, 1)


def test_the_wait_for_the_kernel_never_passes_the_deadline() -> None:
    clock = [0.0]
    deadline = Deadline(2.5, margin_s=0.5, clock=lambda: clock[0])
    kernel = FakeKernel(dump(link(1, "lo")))
    assert [k.name for k in reader(kernel, deadline).links()] == ["lo"]
    assert kernel.timeouts and all(t is not None and 0 < t <= 2.0 for t in kernel.timeouts)
    kernel = FakeKernel(dump(link(1, "lo")))
    reader(kernel).links()
    assert kernel.timeouts and all(t == 5.0 for t in kernel.timeouts)


def test_past_the_deadline_a_read_is_made_once_with_a_short_wait_and_never_retried() -> None:
    """A monitor whose AWS check used up the time still decides from the OS: the one read it
    needs waits a moment (inside the deadline's margin); retries stop."""
    clock = [0.0]
    deadline = Deadline(2.0, margin_s=0.5, clock=lambda: clock[0])
    clock[0] = 1.6  # past the deadline (1.5)
    kernel = FakeKernel(dump(addr("10.0.1.10")))
    assert reader(kernel, deadline).addresses() == addresses_of("10.0.1.10")
    assert kernel.timeouts and all(t is not None and 0 < t < 0.5 for t in kernel.timeouts)
    kernel = FakeKernel(dump(addr("10.0.1.10"), intr=True), dump(addr("10.0.1.10")))
    with pytest.raises(GenericError):
        reader(kernel, deadline).addresses()
    assert len(kernel.requests) == 1
    kernel = FakeKernel(*[dump(rule(V4, 6001, 6001)), dump()] * 2)  # a read, then one to confirm
    assert reader(kernel, deadline).rules() == [Rule(6001, 6001, None, V4)]
    kernel = FakeKernel(dump(rule(V4, 1, 1)), dump(), dump(rule(V4, 2, 2)), dump(), dump(), dump())
    with pytest.raises(GenericError):
        reader(kernel, deadline).rules()
    assert len(kernel.requests) == 4


def test_a_socket_that_cannot_be_opened_is_a_generic_error() -> None:
    def refuse() -> FakeKernel:
        raise OSError(errno.EMFILE, "Too many open files")

    with pytest.raises(GenericError):
        Netlink(open_socket=refuse).links()


def test_the_eni_plan_keys_a_default_route_by_its_family() -> None:
    from ipfailover.eni.os_plan import route_key

    on_link_v6 = RouteEntry(dst=None, gateway=None, oif=3, table=100, family=V6)
    assert route_key(on_link_v6) == ("::/0", None)
    assert route_key(RouteEntry(None, None, 3, 100, V4)) == ("0.0.0.0/0", None)
