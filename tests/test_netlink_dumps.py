"""Raw netlink against a fake kernel: interrupted dumps, rule reads that disagree, the address
changes' requests and acknowledgements, and every way an answer can be wrong, each a
GenericError (never a hang, never a stray exception).

The fake kernel answers each request with the next scripted answer, in netlink's wire format.
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
        self.sent: list[bytes] = []  # each request whole
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
        self.sent.append(bytes(data))
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


# ----------------------------------------------------------------------------- address changes

RTM_DELADDR, IFA_LABEL = 21, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFA_F_NODAD = 0x02


def ack(status: int = 0, late: bool = False) -> Answer:
    """The kernel's acknowledgement of a change: NLMSG_ERROR carrying -``status`` (0: done) and
    the request's header; ``late``: an acknowledgement of the request before comes first."""

    def answer(seq: int) -> list[Datagram]:
        head = struct.pack("=IHHII", 32, RTM_NEWADDR, 0, seq, 0)
        done = nlmsg(NLMSG_ERROR, 0, seq, struct.pack("=i", -status) + head)
        if late:
            return [nlmsg(NLMSG_ERROR, 0, seq - 1, struct.pack("=i", 0) + head) + done]
        return [done]

    return answer


def parsed(request: bytes) -> tuple[int, int, tuple[int, ...], dict[int, bytes]]:
    """(type, flags, (family, prefixlen, flags, scope, index), attributes) of a sent request."""
    length, kind, flags, _, _ = struct.unpack_from("=IHHII", request)
    assert length == len(request)
    head = struct.unpack_from("=BBBBI", request, 16)
    attrs, offset = {}, 24
    while offset < length:
        size, key = struct.unpack_from("=HH", request, offset)
        attrs[key] = request[offset + 4 : offset + size]
        offset += (size + 3) & ~3
    return kind, flags, head, attrs


def test_an_ipv4_address_is_added_with_its_label_and_acknowledged() -> None:
    kernel = FakeKernel(ack())
    assert reader(kernel).add_address(2, "10.0.1.50", 24, "eth0:ha") is True
    kind, flags, head, attrs = parsed(kernel.sent[0])
    assert kind == RTM_NEWADDR
    assert flags == NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    assert head == (V4, 24, 0, 0, 2)
    assert attrs == {
        IFA_LOCAL: packed("10.0.1.50"),
        IFA_ADDRESS: packed("10.0.1.50"),
        IFA_LABEL: b"eth0:ha\0",
    }


def test_an_ipv6_address_is_added_without_duplicate_address_detection_or_label() -> None:
    kernel = FakeKernel(ack())
    assert reader(kernel).add_address(2, "2001:db8:0::7", 128, "eth0:ha") is True
    _, _, head, attrs = parsed(kernel.sent[0])
    assert head == (V6, 128, IFA_F_NODAD, 0, 2)
    assert attrs == {IFA_LOCAL: packed("2001:db8::7"), IFA_ADDRESS: packed("2001:db8::7")}


def test_a_removal_names_the_address_and_its_prefix() -> None:
    kernel = FakeKernel(ack())
    assert reader(kernel).del_address(3, "10.0.1.50", 32) is True
    kind, flags, head, attrs = parsed(kernel.sent[0])
    assert (kind, flags, head) == (RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, (V4, 32, 0, 0, 3))
    assert attrs == {IFA_LOCAL: packed("10.0.1.50"), IFA_ADDRESS: packed("10.0.1.50")}


@pytest.mark.parametrize(
    ("change", "status", "result"),
    [
        ("add", errno.EEXIST, False),
        ("del", errno.EADDRNOTAVAIL, False),
        ("del", errno.ENODEV, False),
        ("del", errno.ENOENT, False),
        ("add", errno.ENODEV, GenericError),
        ("add", errno.EPERM, GenericError),
        ("add", errno.EINVAL, GenericError),
        ("del", errno.EPERM, GenericError),
    ],
)
def test_what_the_kernel_refuses_is_already_so_or_an_error(
    change: str, status: int, result: Any
) -> None:
    nl = reader(FakeKernel(ack(status)))

    def run() -> bool:
        if change == "add":
            return nl.add_address(2, "10.0.1.50", 24)
        return nl.del_address(2, "10.0.1.50", 24)

    if result is GenericError:
        with pytest.raises(GenericError) as info:
            run()
        assert "10.0.1.50/24" in str(info.value)
    else:
        assert run() is result


def test_an_acknowledgement_of_an_earlier_request_is_skipped() -> None:
    assert reader(FakeKernel(ack(errno.EEXIST, late=True))).add_address(2, "10.0.1.50", 24) is False


@pytest.mark.parametrize("answer", BROKEN.values(), ids=list(BROKEN))
def test_a_broken_acknowledgement_is_a_generic_error_and_the_next_change_starts_afresh(
    answer: Answer,
) -> None:
    """A refusal (the scripted EPERM) keeps the socket; anything else drops it."""
    kernel = FakeKernel(answer, ack())
    nl = reader(kernel)
    with pytest.raises(GenericError):
        nl.add_address(2, "10.0.1.50", 24)
    assert nl.add_address(2, "10.0.1.50", 24) is True
    refused = answer is BROKEN["an error code instead of a dump"]
    assert (kernel.opened, kernel.closed) == ((1, 0) if refused else (2, 1))


def test_the_wait_for_an_acknowledgement_never_passes_the_deadline() -> None:
    clock = [0.0]
    deadline = Deadline(2.5, margin_s=0.5, clock=lambda: clock[0])
    kernel = FakeKernel(ack())
    assert reader(kernel, deadline).add_address(2, "10.0.1.50", 24) is True
    assert kernel.timeouts and all(t is not None and 0 < t <= 2.0 for t in kernel.timeouts)
    clock[0] = 3.0  # past the deadline: the kernel that does not answer is a timeout
    with pytest.raises(GenericError):
        reader(FakeKernel(raw()), deadline).del_address(2, "10.0.1.50", 24)
