"""aws-secip's pure decisions: who holds the address, whether it fits the subnet, whether the
address on the interface is this node's own (the primary-address guard), the start plan (the one
place that says which calls start makes, with whose credentials, and which of them validate-all
can check with DryRun) and the pacing of the waits.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Union

from ipfailover.secip.declaration import same_ip
from ocf_shim import ConfigError

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

if TYPE_CHECKING:
    from ipfailover.aws.ec2 import Address, Eni
    from ipfailover.config.params import IPAddress
    from ipfailover.host.netlink import Link


POLL_INTERVAL = 0.1  # seconds between DescribeNetworkInterfaces while a move completes
SLOW_POLL_INTERVAL = 0.25  # after SLOW_POLL_AFTER polls: spare the account's throttling bucket
SLOW_POLL_AFTER = 20


@dataclass(frozen=True)
class Holding:
    """Who holds the address, as EC2 reports it."""

    holders: tuple[str, ...]  # ENI ids that show the address (normally at most one)
    primary_of: Optional[str]  # the ENI whose primary private IP it is, if any

    def held_by(self, eni_id: str) -> bool:
        return eni_id in self.holders

    def others(self, eni_id: str) -> tuple[str, ...]:
        return tuple(holder for holder in self.holders if holder != eni_id)


def holding(ip: IPAddress, enis: Sequence[Eni]) -> Holding:
    """Read the holder(s) of ``ip`` off described ENIs (whatever filter the call used)."""
    holders = []
    primary_of = None
    for eni in enis:
        addresses = eni.private_ips if ip.version == 4 else eni.ipv6s
        if any(same_ip(ip, text) for text in addresses):
            holders.append(eni.id)
            if ip.version == 4 and same_ip(ip, eni.primary_ip):
                primary_of = eni.id
    return Holding(tuple(dict.fromkeys(holders)), primary_of)


def eip_points_here(address: Address, eni_id: str, ip: IPAddress) -> bool:
    return (
        address.eni_id == eni_id
        and address.private_ip is not None
        and (same_ip(ip, address.private_ip))
    )


def _networks(blocks: Sequence[str], version: int) -> list[IPNetwork]:
    """The well-formed CIDR blocks of one IP version (IMDS text may carry blanks)."""
    networks = []
    for block in blocks:
        try:
            network = ipaddress.ip_network(block.strip(), strict=False)
        except ValueError:
            continue
        if network.version == version:
            networks.append(network)
    return networks


def subnet_problem(
    ip: IPAddress, subnet_id: str, blocks: Sequence[str], eni_id: str
) -> Optional[str]:
    """Why ``ip`` cannot be a secondary address of a subnet with these CIDR blocks (None: fine)."""
    networks = _networks(blocks, ip.version)
    if not networks:
        return (
            f"subnet {subnet_id} of {eni_id} has no IPv{ip.version} CIDR block, so {ip} cannot "
            "be used"
        )
    containing = next((n for n in networks if ip in n), None)
    if containing is None:
        shown = ", ".join(str(n) for n in networks)
        return (
            f"{ip} is outside subnet {subnet_id} ({shown}) of {eni_id}: use a free address of "
            "that subnet, or an interface whose network interface is in the address's subnet"
        )
    if isinstance(containing, ipaddress.IPv4Network) and (
        int(ip) - int(containing.network_address) < 4 or ip == containing.broadcast_address
    ):
        return (
            f"{ip} is reserved by AWS in subnet {subnet_id} ({containing}): the first four "
            "addresses and the last one of a subnet cannot be assigned"
        )
    return None


def subnet_prefixlen(ip: IPAddress, blocks: Sequence[str]) -> Optional[int]:
    """The prefix length of the block of ``blocks`` that contains ``ip``."""
    return next((n.prefixlen for n in _networks(blocks, ip.version) if ip in n), None)


def primary_problem(ip: IPAddress, held: Holding) -> Optional[str]:
    if held.primary_of is None:
        return None
    return (
        f"{ip} is the primary private IP address of {held.primary_of}; a primary address cannot "
        "move: choose a free address of the subnet"
    )


def primary_of_interface(local_ipv4s: Optional[str]) -> Optional[IPAddress]:
    """The primary private IPv4 of an ENI from its IMDS ``local-ipv4s`` list (primary first)."""
    for line in (local_ipv4s or "").splitlines():
        try:
            return ipaddress.ip_address(line.strip())
        except ValueError:
            return None
    return None


# Whether the address on the interface is this node's own (its ENI's primary address): stop may
# remove it only when facts say it is not, never by default (issue 12).
PRIMARY = "primary"  # known to be a primary address: refuse (6), never remove
NOT_PRIMARY = "not primary"  # known not to be this node's own address: ours to manage
UNSURE = "unsure"  # the facts are unavailable: refuse (1), never remove


@dataclass(frozen=True)
class Verdict:
    state: str  # PRIMARY, NOT_PRIMARY or UNSURE
    why: str


def primary_verdict(  # noqa: PLR0911 - one rule per fact, in order
    ip: IPAddress,
    *,
    recorded: bool,
    kernel_secondary: Optional[bool],
    interface_ips: Optional[Sequence[str]],
    held: Optional[Holding] = None,
    eni_id: Optional[str] = None,
) -> Verdict:
    """Is ``ip``, found on the interface, a primary address? From facts only.

    ``recorded``: this agent's start recorded adding it here. ``kernel_secondary`` (IPv4, None
    when unknown): the kernel flags every entry of it IFA_F_SECONDARY, so an address of the same
    subnet and prefix (the node's primary) came first. ``interface_ips``: the ENI's addresses
    from IMDS (IPv4: ``local-ipv4s``, primary first; IPv6: ``ipv6s``), None when IMDS did not
    answer. ``held``: EC2's view, None when not asked or unreachable; ``eni_id``: the ENI behind
    the interface, when known. Positive facts ("it is a primary") win over the others.
    """
    if held is not None and held.primary_of is not None:
        return Verdict(PRIMARY, primary_problem(ip, held) or "")
    first = None
    if ip.version == 4 and interface_ips is not None:
        first = primary_of_interface("\n".join(interface_ips))
    if ip.version == 4 and first == ip:
        return Verdict(
            PRIMARY,
            f"{ip} is the primary private IP address of this interface's network interface "
            "(instance metadata local-ipv4s); a primary address cannot move: choose a free "
            "address of the subnet",
        )
    if recorded:
        return Verdict(NOT_PRIMARY, "this agent's start added it (record)")
    if ip.version == 4 and kernel_secondary:
        return Verdict(NOT_PRIMARY, "the kernel flags it secondary")
    if interface_ips is not None:
        listed = any(same_ip(ip, text) for text in interface_ips)
        if ip.version == 4 and first is not None:
            return Verdict(NOT_PRIMARY, "the instance metadata names another primary address")
        if ip.version == 6 and not listed:
            return Verdict(NOT_PRIMARY, "the instance metadata does not list it on this ENI")
    if held is not None:
        if ip.version == 4:
            return Verdict(NOT_PRIMARY, "EC2 shows it as nobody's primary address")
        if eni_id is not None and not held.held_by(eni_id):
            return Verdict(NOT_PRIMARY, f"EC2 does not show it on {eni_id}")
    return Verdict(UNSURE, "no fact tells whether it is this node's own address")


NO_DRY_RUN = "EC2 has no DryRun for it, so it cannot be checked without changing something"


@dataclass(frozen=True)
class AwsStep:
    """One EC2 call of start. ``unchecked``: why validate-all cannot check it (None: DryRun)."""

    operation: str
    eni_id: str  # the network interface it acts on
    unchecked: Optional[str] = None
    principal: str = "node"  # whose credentials make the call


@dataclass(frozen=True)
class OsStep:
    """One change on the interface: "remove" the address with another prefix, or "add" it (and
    its record). validate-all skips it."""

    change: str
    prefixlen: int


Step = Union[AwsStep, OsStep]


@dataclass(frozen=True)
class Observation:
    """What start and validate-all read before deciding (see secip.actions.observe)."""

    link: Link
    eni_id: str
    prefix: int  # the prefix length the address gets on the interface
    held: Holding
    eip: Optional[Address]  # the Elastic IP, when configured
    present_prefix: Optional[int]  # the address on the interface, if it is (None: absent)


@dataclass(frozen=True)
class Plan:
    """What start must change; empty when AWS and the OS are already right. ``steps``: the same
    decisions as the calls and OS changes they make, in order (derived, so not compared)."""

    take_from: tuple[str, ...]  # IPv6: unassign from these ENIs before assigning
    assign: bool  # assign the address to our ENI
    associate_eip: bool  # point the Elastic IP at our ENI and the address
    os_remove_prefix: Optional[int]  # the address is configured with another prefix: remove it
    os_add: bool  # configure the address on the interface
    steps: tuple[Step, ...] = field(default=(), compare=False)

    @property
    def empty(self) -> bool:
        return not (self.take_from or self.assign or self.associate_eip or self.os_add)


def plan_start(
    ip: IPAddress,
    eni_id: str,
    held: Holding,
    eip: Optional[Address],
    *,
    os_prefix: Optional[int],
    want_prefix: int,
) -> Plan:
    """Compare what is wanted with what is observed. ``eip`` is the Elastic IP when configured,
    ``os_prefix`` the prefix of the address on the interface (None: absent)."""
    problem = primary_problem(ip, held)
    if problem:
        raise ConfigError(problem)
    wrong_prefix = os_prefix is not None and os_prefix != want_prefix
    # IPv6 cannot be reassigned: every other holder must let go first.
    take_from = held.others(eni_id) if ip.version == 6 else ()
    assign = not held.held_by(eni_id)
    os_remove_prefix = os_prefix if wrong_prefix else None
    os_add = os_prefix is None or wrong_prefix
    steps: list[Step] = [AwsStep("UnassignIpv6Addresses", h, NO_DRY_RUN) for h in take_from]
    if assign:
        operation = "AssignPrivateIpAddresses" if ip.version == 4 else "AssignIpv6Addresses"
        steps.append(AwsStep(operation, eni_id, NO_DRY_RUN))
    if os_remove_prefix is not None:
        steps.append(OsStep("remove", os_remove_prefix))
    if os_add:
        steps.append(OsStep("add", want_prefix))
    if eip is not None:
        # Made unless the Elastic IP points here once the move is done (a reassigned IPv4
        # address takes it along): start looks again then; validate-all checks it always.
        steps.append(AwsStep("AssociateAddress", eni_id))
    return Plan(
        take_from=take_from,
        assign=assign,
        associate_eip=eip is not None and not eip_points_here(eip, eni_id, ip),
        os_remove_prefix=os_remove_prefix,
        os_add=os_add,
        steps=tuple(steps),
    )


def plan(seen: Observation, ip: IPAddress) -> Plan:
    """start's plan from what start and validate-all observed."""
    return plan_start(
        ip,
        seen.eni_id,
        seen.held,
        seen.eip,
        os_prefix=seen.present_prefix,
        want_prefix=seen.prefix,
    )


def aws_problems(
    ip: IPAddress, eni_id: str, held: Holding, eip: Optional[Address] = None
) -> list[str]:
    """Why AWS does not (yet) send ``ip`` to ``eni_id``; empty when it does."""
    problems = []
    if not held.held_by(eni_id):
        where = ", ".join(held.holders) if held.holders else "no network interface"
        problems.append(f"{ip} is assigned to {where}, not to {eni_id}")
    if eip is not None and not eip_points_here(eip, eni_id, ip):
        target = f"{eip.eni_id} / {eip.private_ip}" if eip.eni_id else "nothing"
        problems.append(f"Elastic IP {eip.public_ip} points at {target}")
    return problems


def poll_interval(attempt: int) -> float:
    """How long to wait before the next look (``attempt`` counts from 0)."""
    return POLL_INTERVAL if attempt < SLOW_POLL_AFTER else SLOW_POLL_INTERVAL
