"""aws-secip: a secondary private IP address of a subnet, assigned to this instance's ENI.

AWS side: the address is a secondary private IP (IPv4) or an IPv6 address of the ENI of
``interface``, moved here with ``AssignPrivateIpAddresses(AllowReassignment=true)`` (IPv6 cannot
be reassigned: it is unassigned from the holder first); optionally an Elastic IP associated with
it. OS side: the address on ``interface``. One ``DescribeNetworkInterfaces`` call filtered by the
address tells both who holds it and whether that is us. Stop removes the address from the OS and
unassigns it from this node's ENI only while this ENI still holds it: an address another node took
over is never touched.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

from ocf_shim import OCF, ConfigError, Context, GenericError, OCFError, get_log

from .runtime import Runtime
from .secip_agent import Config

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

if TYPE_CHECKING:
    from .aws import Api
    from .ec2 import Address, Eni
    from .netlink import Addr, Link
    from .node import InterfaceFacts
    from .params import IPAddress

log = get_log("ipfailover")

POLL_INTERVAL = 0.1  # seconds between DescribeNetworkInterfaces while a move completes
SLOW_POLL_INTERVAL = 0.25  # after SLOW_POLL_AFTER polls: spare the account's throttling bucket
SLOW_POLL_AFTER = 20

# ----------------------------------------------------------------------------- pure decisions


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
        if any(_same_ip(ip, text) for text in addresses):
            holders.append(eni.id)
            if ip.version == 4 and _same_ip(ip, eni.primary_ip):
                primary_of = eni.id
    return Holding(tuple(dict.fromkeys(holders)), primary_of)


def _same_ip(ip: IPAddress, text: str) -> bool:
    try:
        return ipaddress.ip_address(text) == ip
    except ValueError:
        return False


def eip_points_here(address: Address, eni_id: str, ip: IPAddress) -> bool:
    return (
        address.eni_id == eni_id
        and address.private_ip is not None
        and (_same_ip(ip, address.private_ip))
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
        listed = any(_same_ip(ip, text) for text in interface_ips)
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


@dataclass(frozen=True)
class Plan:
    """What start must change; empty when AWS and the OS are already right."""

    take_from: tuple[str, ...]  # IPv6: unassign from these ENIs before assigning
    assign: bool  # assign the address to our ENI
    associate_eip: bool  # point the Elastic IP at our ENI and the address
    os_remove_prefix: Optional[int]  # the address is configured with another prefix: remove it
    os_add: bool  # configure the address on the interface

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
    return Plan(
        # IPv6 cannot be reassigned: every other holder must let go first.
        take_from=held.others(eni_id) if ip.version == 6 else (),
        assign=not held.held_by(eni_id),
        associate_eip=eip is not None and not eip_points_here(eip, eni_id, ip),
        os_remove_prefix=os_prefix if wrong_prefix else None,
        os_add=os_prefix is None or wrong_prefix,
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


# ----------------------------------------------------------------------------- effects


def _describe_holding(api: Api, ip: IPAddress) -> Holding:
    """One DescribeNetworkInterfaces call filtered by the address."""
    from . import ec2

    key = "addresses.private-ip-address" if ip.version == 4 else "ipv6-addresses.ipv6-address"
    return holding(ip, ec2.describe_enis(api, filters={key: [str(ip)]}))


def _subnet_blocks(rt: Runtime, cfg: Config, facts: InterfaceFacts) -> list[str]:
    """The CIDR blocks of the ENI's subnet of the address's family: IMDS, else DescribeSubnets."""
    from . import ec2

    if cfg.version == 4 and facts.subnet_cidr:
        return [facts.subnet_cidr]
    if cfg.version == 6:
        text = rt.imds.get_optional(
            f"meta-data/network/interfaces/macs/{facts.mac}/subnet-ipv6-cidr-blocks"
        )
        blocks = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if blocks:
            return blocks
    subnet = ec2.describe_subnet(rt.api(), facts.subnet_id)
    return [subnet.cidr] if cfg.version == 4 else list(subnet.ipv6_cidrs)


def _check_subnet(rt: Runtime, cfg: Config, facts: InterfaceFacts) -> int:
    """Raise ConfigError unless the address belongs to the ENI's subnet; the OS prefix length."""
    blocks = _subnet_blocks(rt, cfg, facts)
    problem = subnet_problem(cfg.ip, facts.subnet_id, blocks, facts.eni_id)
    if problem:
        raise ConfigError(problem)
    if cfg.cidr_netmask is not None:
        return cfg.cidr_netmask
    prefix = subnet_prefixlen(cfg.ip, blocks)
    assert prefix is not None  # subnet_problem found the block
    return prefix


def _record_path(ctx: Context, mac: str, ip: IPAddress) -> str:
    from . import record
    from .secip_agent import NAME

    return record.path_in(ctx.environ, f"{NAME}-{mac.replace(':', '')}-{ip}.json".replace(":", "_"))


def _recorded(ctx: Context, mac: str, ip: IPAddress) -> bool:
    """Whether this agent's start recorded adding ``ip`` on the interface with ``mac``."""
    from . import record

    path = _record_path(ctx, mac, ip)
    data = record.read(path)
    if data is None:
        return False
    try:
        ok = _same_ip(ip, record.text(data, "ip")) and record.text(data, "mac") == mac
    except ValueError as exc:
        record.ignored(path, str(exc))
        return False
    if not ok:
        record.ignored(path, "it is about another address or interface")
    return ok


def _record(ctx: Context, link: Link, ip: IPAddress, prefix: int) -> None:
    from . import record

    data = {"ip": str(ip), "prefixlen": prefix, "mac": link.mac, "interface": link.name}
    record.write(_record_path(ctx, link.mac, ip), data)


def _entries(rt: Runtime, cfg: Config, link: Link) -> list[Addr]:
    """The address on the interface, once per prefix length it is configured with."""
    wanted = str(cfg.ip)
    return [a for a in rt.netlink.addresses(link.index) if a.ip == wanted]


def _interface_ips(rt: Runtime, cfg: Config, mac: str) -> tuple[Optional[list[str]], str]:
    """The ENI's addresses of the address's family from IMDS (None and why when unavailable)."""
    leaf = "local-ipv4s" if cfg.version == 4 else "ipv6s"
    try:
        text = rt.imds.get_optional(f"meta-data/network/interfaces/macs/{mac}/{leaf}")
    except OCFError as exc:
        return None, f"the instance metadata did not answer ({exc.reason})"
    if text is None:
        return None, f"the instance metadata has no {leaf} for MAC {mac}"
    return [line.strip() for line in text.splitlines() if line.strip()], ""


def _verdict(
    rt: Runtime,
    ctx: Context,
    cfg: Config,
    link: Link,
    entries: Sequence[Addr],
    *,
    held: Optional[Holding] = None,
    eni_id: Optional[str] = None,
) -> Verdict:
    """Whether the address found on the interface is a primary address, from the kernel, this
    agent's record, IMDS and (when given) EC2; an UNSURE verdict's ``why`` tells what to do."""
    from . import record

    recorded = _recorded(ctx, link.mac, cfg.ip)
    ips, imds_trouble = None, ""
    if cfg.version == 4 or not recorded:
        ips, imds_trouble = _interface_ips(rt, cfg, link.mac)
    verdict = primary_verdict(
        cfg.ip,
        recorded=recorded,
        kernel_secondary=all(a.secondary for a in entries) if cfg.version == 4 else None,
        interface_ips=ips,
        held=held,
        eni_id=eni_id,
    )
    if verdict.state != UNSURE:
        return verdict
    shown = ", ".join(f"{a.ip}/{a.prefixlen}" for a in entries)
    facts = [
        "the kernel does not flag it secondary"
        if cfg.version == 4
        else "IPv6 has no secondary flag",
        f"this agent has no record of adding it in {record.state_dir(ctx.environ)}",
        imds_trouble
        or "the instance metadata lists it on this interface's ENI, as it lists the node's own",
    ]
    return Verdict(
        UNSURE,
        f"cannot tell whether {shown} on {link.name} is this node's own address: "
        f"{'; '.join(facts)}. Check that ip is not this node's address; if it is a service "
        f"address of this resource, remove it from {link.name} by hand and start again",
    )


def _describe_eip(api: Api, cfg: Config) -> Optional[Address]:
    from . import ec2

    if cfg.eip_allocation_id is None:
        return None
    return ec2.describe_address(api, cfg.eip_allocation_id)


def _observe(api: Api, cfg: Config, with_eip: bool) -> tuple[Holding, Optional[Address]]:
    """The holder of the address and (``with_eip``) the Elastic IP, read at the same time."""
    if not with_eip or cfg.eip_allocation_id is None:
        return _describe_holding(api, cfg.ip), None
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        later = pool.submit(_describe_eip, api, cfg)
        held = _describe_holding(api, cfg.ip)
        return held, later.result()


def _move(api: Api, cfg: Config, eni_id: str, plan: Plan, ctx: Context) -> None:
    """Move the address to our ENI (IPv4: reassign; IPv6: release from the holders, assign)."""
    from . import ec2
    from .aws import error_code

    ip = str(cfg.ip)
    if cfg.version == 4:
        ec2.assign_private_ip(api, eni_id, ip, allow_reassignment=True)
        return
    for holder in plan.take_from:
        ec2.unassign_ipv6(api, holder, ip)
        log.info("unassigned %s from %s (IPv6 cannot be reassigned)", ip, holder)
    if not plan.assign:
        return
    attempt = 0
    while True:
        try:
            ec2.assign_ipv6(api, eni_id, ip)
            return
        except OCFError as exc:
            if error_code(exc) != "InvalidParameterValue":
                raise
            # EC2 may still show the previous holder for a moment after the unassign.
            others = _describe_holding(api, cfg.ip).others(eni_id)
            if not others:
                raise
            for holder in others:
                ec2.unassign_ipv6(api, holder, ip)
            ctx.deadline.sleep(
                poll_interval(attempt), f"waiting for {', '.join(others)} to release {ip}"
            )
            attempt += 1


def _wait_for_aws(
    api: Api, cfg: Config, eni_id: str, ctx: Context, with_eip: bool
) -> tuple[Holding, Optional[Address]]:
    """Poll at short intervals until EC2 shows the address (and the EIP) on our ENI."""
    attempt = 0
    while True:
        held, eip = _observe(api, cfg, with_eip)
        problems = aws_problems(cfg.ip, eni_id, held, eip)
        if not problems:
            return held, eip
        ctx.deadline.sleep(
            poll_interval(attempt), f"waiting for EC2 to confirm the move ({'; '.join(problems)})"
        )
        attempt += 1


def _ensure_eip(api: Api, cfg: Config, eni_id: str, known: Optional[Address], ctx: Context) -> None:
    """Point the Elastic IP at the address on our ENI, unless ``known`` says it already does."""
    from . import ec2

    if cfg.eip_allocation_id is None or known is None:
        return
    if eip_points_here(known, eni_id, cfg.ip):
        return
    ec2.associate_address(api, cfg.eip_allocation_id, eni_id, str(cfg.ip))
    log.info("associated Elastic IP %s with %s on %s", known.public_ip, cfg.ip, eni_id)
    _wait_for_aws(api, cfg, eni_id, ctx, with_eip=True)


def start(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    from . import node

    # Reads do not load pyroute2 (0.1 s to import); the first change does, while EC2 completes
    # the move.
    with Runtime(ctx, cfg.aws) as rt:
        link = rt.require_link(cfg.interface)
        facts = node.interface_facts(rt.imds, link.mac)
        prefix = _check_subnet(rt, cfg, facts)
        eni_id = facts.eni_id
        api = rt.api()
        held, eip = _observe(api, cfg, with_eip=True)
        entries = _entries(rt, cfg, link)
        present = entries[0] if entries else None
        if present is not None:
            # Start may change its prefix and stop will remove it: only when it is not a primary.
            verdict = _verdict(rt, ctx, cfg, link, entries, held=held, eni_id=eni_id)
            if verdict.state == PRIMARY:
                raise ConfigError(verdict.why)
            if verdict.state == UNSURE:
                raise GenericError(verdict.why)
        plan = plan_start(
            cfg.ip,
            eni_id,
            held,
            eip,
            os_prefix=present.prefixlen if present else None,
            want_prefix=prefix,
        )
        if plan.empty:
            _record(ctx, link, cfg.ip, prefix)
            log.info("%s is already assigned to %s and configured on %s", cfg.ip, eni_id, link.name)
            return OCF.SUCCESS
        moved = plan.assign or bool(plan.take_from)
        if moved:
            _move(api, cfg, eni_id, plan, ctx)
            log.info(
                "assigned %s to %s (was on %s)",
                cfg.ip,
                eni_id,
                ", ".join(held.holders) or "no network interface",
            )
        # The OS side while EC2 completes the move: harmless before AWS delivers the packets.
        if plan.os_remove_prefix is not None:
            rt.netlink.del_address(link.index, str(cfg.ip), plan.os_remove_prefix)
        if plan.os_add:
            # Recorded first: a start killed right after the add still leaves its own address
            # recognisable to stop.
            _record(ctx, link, cfg.ip, prefix)
            rt.netlink.add_address(link.index, str(cfg.ip), prefix)
            log.info("configured %s/%d on %s", cfg.ip, prefix, link.name)
        if moved:
            _wait_for_aws(api, cfg, eni_id, ctx, with_eip=False)
            if plan.assign:
                # An Elastic IP follows a reassigned IPv4 address: look where it points now.
                eip = _describe_eip(api, cfg)
        _ensure_eip(api, cfg, eni_id, eip, ctx)
        if not any(a.prefixlen == prefix for a in _entries(rt, cfg, link)):
            raise GenericError(
                f"{cfg.ip}/{prefix} did not stay on {cfg.interface} (removed by another program?)"
            )
        _record(ctx, link, cfg.ip, prefix)
        log.info(
            "%s is assigned to %s and configured on %s (%d API calls)",
            cfg.ip,
            eni_id,
            link.name,
            rt.api_calls(),
        )
    return OCF.SUCCESS


def stop(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    from . import ec2, node, record

    with Runtime(ctx, cfg.aws) as rt:
        link = rt.netlink.link_by_name(cfg.interface)
        if link is None:
            log.info("interface %s is gone, so %s is not configured", cfg.interface, cfg.ip)
            return OCF.SUCCESS
        entries = _entries(rt, cfg, link)
        if entries:
            verdict = _verdict(rt, ctx, cfg, link, entries)
            if verdict.state != NOT_PRIMARY:
                # Never started by us (start refuses a primary address), or no fact tells: leave
                # the node reachable. Failing the stop would get the node fenced for it.
                log.warning("%s: not removing it", verdict.why)
                return OCF.SUCCESS
            for entry in entries:
                rt.netlink.del_address(link.index, entry.ip, entry.prefixlen)
                log.info("removed %s/%d from %s", entry.ip, entry.prefixlen, cfg.interface)
            if _entries(rt, cfg, link):
                raise GenericError(f"{cfg.ip} is still on {cfg.interface} after removing it")
        record.remove(_record_path(ctx, link.mac, cfg.ip))
        if not cfg.unassign_on_stop:
            return OCF.SUCCESS
        try:
            eni_id = node.eni_id_of_mac(rt.imds, link.mac)
            api = rt.api()
            held = _describe_holding(api, cfg.ip)
            if not held.held_by(eni_id):
                log.info(
                    "%s is not assigned to %s (holder: %s): nothing to unassign",
                    cfg.ip,
                    eni_id,
                    ", ".join(held.holders) or "none",
                )
                return OCF.SUCCESS
            if held.primary_of == eni_id:
                log.error("%s: not unassigning it", primary_problem(cfg.ip, held))
                return OCF.SUCCESS
            if cfg.version == 4:
                ec2.unassign_private_ip(api, eni_id, str(cfg.ip))
            else:
                ec2.unassign_ipv6(api, eni_id, str(cfg.ip))
            log.info("unassigned %s from %s", cfg.ip, eni_id)
        except OCFError as exc:
            # The address is off this node; whoever starts next reassigns it. Failing the stop
            # would get this node fenced for a leftover AWS assignment.
            log.warning(
                "%s is removed from %s, but unassigning it from this node's ENI failed: %s",
                cfg.ip,
                cfg.interface,
                exc.reason,
            )
    return OCF.SUCCESS


def monitor(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    from . import node
    from .aws import error_code

    with Runtime(ctx, cfg.aws) as rt:
        link = rt.netlink.link_by_name(cfg.interface)
        entries = _entries(rt, cfg, link) if link is not None else []
        if link is None or not entries:
            if not ctx.is_probe:
                log.info("%s is not configured on %s", cfg.ip, cfg.interface)
            return OCF.NOT_RUNNING
        held: Optional[Holding] = None
        eni_id: Optional[str] = None
        if cfg.monitor_api:
            try:
                eni_id = node.eni_id_of_mac(rt.imds, link.mac)
                held = _describe_holding(rt.api(), cfg.ip)
            except OCFError as exc:
                if str(error_code(exc)).endswith(".NotFound") or exc.rc == OCF.ERR_CONFIGURED:
                    raise GenericError(
                        f"the address cannot be looked up in EC2: {exc.reason}"
                    ) from None
                log.warning(
                    "%s is configured on %s, but the AWS check could not complete: %s",
                    cfg.ip,
                    cfg.interface,
                    exc.reason,
                )
        verdict = _verdict(rt, ctx, cfg, link, entries, held=held, eni_id=eni_id)
        if verdict.state == PRIMARY:
            raise ConfigError(verdict.why)
        if verdict.state == UNSURE:
            if ctx.is_probe:
                # "Running" would make Pacemaker stop it here, or keep it from starting.
                raise GenericError(verdict.why)
            log.warning("%s; stop will leave it on the interface", verdict.why)
    if held is None or eni_id is None:
        return OCF.SUCCESS
    problems = aws_problems(cfg.ip, eni_id, held)
    if problems:
        log.warning("%s is configured here but not assigned to this node: %s", cfg.ip, problems[0])
        return OCF.NOT_RUNNING
    return OCF.SUCCESS


def validate(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    from . import ec2, node

    with Runtime(ctx, cfg.aws) as rt:
        link = rt.require_link(cfg.interface)
        facts = node.interface_facts(rt.imds, link.mac)
        _check_subnet(rt, cfg, facts)
        api = rt.api()
        eni_id = facts.eni_id
        eni = ec2.describe_eni(api, eni_id)  # the ENI exists and we may describe it
        if eni.subnet_id and eni.subnet_id != facts.subnet_id:
            raise ConfigError(
                f"{eni_id} is in {eni.subnet_id} according to EC2, but in {facts.subnet_id} "
                "according to the instance metadata"
            )
        held = _describe_holding(api, cfg.ip)
        problem = primary_problem(cfg.ip, held)
        if problem:
            raise ConfigError(problem)
        entries = _entries(rt, cfg, link)
        if entries:
            verdict = _verdict(rt, ctx, cfg, link, entries, held=held, eni_id=eni_id)
            if verdict.state == PRIMARY:
                raise ConfigError(verdict.why)
            if verdict.state == UNSURE:
                raise GenericError(verdict.why)
        # EC2 has no DryRun for (Un)AssignPrivateIpAddresses and (Un)AssignIpv6Addresses, so
        # their permissions cannot be checked without changing something; AssociateAddress has.
        if cfg.eip_allocation_id is not None:
            ec2.describe_address(api, cfg.eip_allocation_id)
            ec2.associate_address(api, cfg.eip_allocation_id, eni_id, str(cfg.ip), dry_run=True)
    return OCF.SUCCESS
