"""aws-eni: a whole Elastic Network Interface moved to this instance, with policy routing.

AWS side: the ENI is attached to this instance (detached from its previous holder first, forced
only when ``force_detach`` allows it). OS side: the hot-plugged link with the ENI's MAC is up and
carries the ENI's private addresses, and (``policy_routing``) a rule per ENI address sends
traffic from it to a routing table of this resource that holds the subnet route and a default
route via the subnet's router, so that replies leave through the ENI. Stop removes the OS side and
detaches the ENI when, and only when, it is attached to this instance.

Every wait polls ``DescribeNetworkInterfaces`` at short intervals inside the action's deadline.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Optional, Union

from ocf_shim import OCF, ArgsError, ConfigError, Context, Deadline, GenericError, OCFError, get_log

from .eni_agent import NAME, Config
from .runtime import Runtime

if TYPE_CHECKING:
    from .aws import Api
    from .ec2 import Eni, Subnet
    from .netlink import Addr, Link, Netlink, RouteEntry, Rule

log = get_log("ipfailover")

# Waiting: poll quickly while a move is young, then spare the account's throttling bucket.
FAST_POLL = 0.1
MEDIUM_POLL = 0.2
SLOW_POLL = 0.5
RESEND_AFTER = 1.0  # seconds before a detach/attach that did not show up is sent again
FORCE_AFTER_SHARE = 0.4  # force a stuck detach after this share of the remaining budget...
FORCE_AFTER_MAX = 20.0  # ...but never later than this many seconds
DESCRIBE_ALLOWANCE = 0.3  # time kept for the describe call that follows a poll sleep

ENI_NOT_FOUND = "InvalidNetworkInterfaceID.NotFound"
IGNORED_DETACH_ERRORS = frozenset(
    {
        "IncorrectState",
        "InvalidAttachmentID.NotFound",
        "InvalidNetworkInterfaceAttachmentId.Malformed",
    }
)
RACE_ATTACH_ERRORS = frozenset({"InvalidNetworkInterface.InUse", "IncorrectState"})

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# ----------------------------------------------------------------------------- pure decisions:
# ----------------------------------------------------------------------------- the AWS side


class Action(enum.Enum):
    DONE = "done"
    ATTACH = "attach"
    DETACH = "detach"
    FORCE_DETACH = "force-detach"
    WAIT = "wait"


@dataclass(frozen=True)
class Move:
    action: Action
    why: str  # what is going on, for the log and for the error when time runs out
    waiting_on: Optional[str] = None  # the other instance whose detach we are waiting for


@dataclass(frozen=True)
class Progress:
    """What this action did so far, in seconds of its deadline's clock (``Deadline.elapsed``)."""

    now: float
    held_since: Optional[float] = None  # start: first seen on another instance; stop: first detach
    detach_sent: Optional[float] = None  # our last normal detach request
    forced_at: Optional[float] = None  # our forced detach request
    attach_sent: Optional[float] = None  # our last attach request

    def waited(self, began: float) -> float:
        """Seconds since our last request (or ``began``): how long this phase has taken."""
        sent = [t for t in (self.detach_sent, self.forced_at, self.attach_sent) if t is not None]
        return self.now - max([began, *sent])


def holder(eni: Eni) -> Optional[str]:
    """The instance the ENI is attached, attaching or detaching to/from; None when available."""
    att = eni.attachment
    if att is None or att.status == "detached":
        return None
    return att.instance_id or "another owner"


def attached_here(eni: Eni, instance_id: str) -> bool:
    att = eni.attachment
    return att is not None and att.instance_id == instance_id and att.status == "attached"


def _since(progress: Progress, when: Optional[float]) -> Optional[float]:
    return None if when is None else progress.now - when


def next_move(  # noqa: PLR0911 - a decision table reads best as one
    eni: Eni, instance_id: str, progress: Progress, force_detach: bool, force_after: float
) -> Move:
    """The next step to bring ``eni`` to ``instance_id``."""
    who = holder(eni)
    att = eni.attachment
    if who is None or att is None:
        if eni.status not in ("available", ""):
            return Move(Action.WAIT, f"{eni.id} is {eni.status} without an attachment")
        sent = _since(progress, progress.attach_sent)
        if sent is not None and sent < RESEND_AFTER:
            return Move(Action.WAIT, f"{eni.id} is not attaching yet after the attach request")
        return Move(Action.ATTACH, f"{eni.id} is available")
    if who == instance_id:
        if att.status == "attached":
            return Move(Action.DONE, f"{eni.id} is attached to this instance")
        if att.status == "attaching":
            return Move(Action.WAIT, f"{eni.id} is still attaching to this instance")
        return Move(Action.WAIT, f"{eni.id} is still {att.status} from this instance")
    held = _since(progress, progress.held_since) or 0.0
    if (
        force_detach
        and progress.forced_at is None
        and att.status in ("attached", "detaching")
        and held >= force_after
    ):
        return Move(
            Action.FORCE_DETACH,
            f"{eni.id} is still {att.status} on {who} after {held:.1f}s: forcing the detach",
            who,
        )
    if att.status == "attached":
        sent = _since(progress, progress.detach_sent)
        if progress.forced_at is None and (sent is None or sent >= RESEND_AFTER):
            return Move(Action.DETACH, f"{eni.id} is attached to {who}", who)
        return Move(
            Action.WAIT, f"{eni.id} is still attached to {who} after the detach request", who
        )
    if att.status == "attaching":
        return Move(Action.WAIT, f"{eni.id} is attaching to {who}; it is detached once attached")
    return Move(Action.WAIT, f"{eni.id} is still {att.status} from {who}", who)


def next_release_move(
    eni: Eni, instance_id: str, progress: Progress, force_detach: bool, force_after: float
) -> Move:
    """The next step to get ``eni`` off ``instance_id`` (it may stay wherever else it is)."""
    att = eni.attachment
    if att is None or att.status == "detached" or att.instance_id != instance_id:
        return Move(Action.DONE, f"{eni.id} is not attached to this instance")
    since_first = _since(progress, progress.held_since)
    if (
        force_detach
        and progress.forced_at is None
        and att.status == "detaching"
        and since_first is not None
        and since_first >= force_after
    ):
        return Move(
            Action.FORCE_DETACH,
            f"{eni.id} is still detaching from this instance after {since_first:.1f}s: forcing",
        )
    if att.status in ("attached", "attaching"):
        since_last = _since(progress, progress.detach_sent)
        if progress.forced_at is None and (since_last is None or since_last >= RESEND_AFTER):
            return Move(Action.DETACH, f"{eni.id} is {att.status} to this instance")
        return Move(Action.WAIT, f"{eni.id} is still {att.status} after the detach request")
    return Move(Action.WAIT, f"{eni.id} is still {att.status} from this instance")


def stuck_reason(move: Move, progress: Progress, force_detach: bool) -> str:
    """The exit reason when the time runs out while ``move`` says we are waiting."""
    waited = ""
    if progress.held_since is not None:
        waited = f" for {progress.now - progress.held_since:.1f}s"
    reason = f"gave up waiting{waited}: {move.why}"
    if move.waiting_on is not None:
        if progress.forced_at is not None:
            reason += " even after a forced detach"
        elif force_detach:
            reason += "; the forced detach did not fit in the start timeout: raise the timeout"
        else:
            reason += (
                f"; {move.waiting_on} may be hung: fence or stop it, or set force_detach=true "
                "(see its caveats)"
            )
    return reason


def poll_interval(waited: float) -> float:
    """Seconds to the next ``DescribeNetworkInterfaces`` after waiting ``waited`` for a move."""
    if waited < 2.0:
        return FAST_POLL
    if waited < 10.0:
        return MEDIUM_POLL
    return SLOW_POLL


def force_after(remaining: float) -> float:
    """After how many seconds a stuck detach is forced (when force_detach allows it)."""
    return max(0.0, min(FORCE_AFTER_MAX, FORCE_AFTER_SHARE * remaining))


# ----------------------------------------------------------------------------- pure decisions:
# ----------------------------------------------------------------------------- the OS side


@dataclass(frozen=True)
class EniFacts:
    """What the OS side of the ENI is made of: from EC2 (start, monitor) or from the record."""

    eni_id: str
    mac: str
    ipv4s: tuple[str, ...]
    ipv6s: tuple[str, ...]
    subnet_id: str
    subnet_cidr: str
    ipv6_cidrs: tuple[str, ...]

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
        from . import record

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


RouteKey = tuple[str, Optional[str]]  # (destination CIDR, gateway or None for on-link)


@dataclass(frozen=True)
class WantedOs:
    mac: str
    addresses: tuple[tuple[str, int], ...]  # (address, prefix length)
    rules: tuple[str, ...]  # source networks, e.g. "10.0.3.100/32"
    routes: tuple[RouteKey, ...]  # subnet routes first, then default routes
    table: int
    priority: int


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


@dataclass(frozen=True)
class ObservedOs:
    link: Optional[Link]  # the link with the ENI's MAC
    addresses: tuple[Addr, ...]  # on that link
    rules: tuple[Rule, ...]  # all policy rules
    routes: tuple[RouteEntry, ...]  # in our table


def route_key(entry: RouteEntry) -> RouteKey:
    gateway = ipaddress.ip_address(entry.gateway) if entry.gateway else None
    if entry.dst:
        dst = str(ipaddress.ip_network(entry.dst, strict=False))
    else:  # the default route of its gateway's family, or of the message's when on-link
        v6 = gateway.version == 6 if gateway else entry.family == socket.AF_INET6
        dst = "::/0" if v6 else "0.0.0.0/0"
    return dst, str(gateway) if gateway else None


def _rule_src(rule: Rule) -> Optional[str]:
    return str(ipaddress.ip_network(rule.src, strict=False)) if rule.src else None


def own_rules(rules: Sequence[Rule], table: int, priority: int) -> list[Rule]:
    return [r for r in rules if r.table == table and r.priority == priority]


def foreign_rules(rules: Sequence[Rule], table: int, priority: int) -> list[Rule]:
    """Rules of someone else at our priority, or into our table at another priority."""
    return [r for r in rules if (r.table == table) != (r.priority == priority)]


@dataclass(frozen=True)
class OsPlan:
    link_missing: bool = False
    bring_up: bool = False
    add_addresses: tuple[tuple[str, int], ...] = ()
    del_rules: tuple[str, ...] = ()  # our rules from sources that are not the ENI's
    add_rules: tuple[str, ...] = ()
    flush_routes: bool = False  # our table holds routes we do not want
    set_routes: tuple[RouteKey, ...] = ()

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
    sources = {_rule_src(r) for r in ours}
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


def _route_text(key: RouteKey) -> str:
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
        f"route {_route_text(key)} dev {dev} is missing from table {wanted.table}"
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


# ----------------------------------------------------------------------------- the record
# What start configured, so that monitor (monitor_api=false, or EC2 unreachable) and stop (EC2
# unreachable) know the ENI's MAC and addresses without asking EC2. Per ENI and instance, in the
# resource agents' runtime directory (tmpfs: gone after a reboot, as the OS configuration is).


def record_path(environ: Mapping[str, str], eni_id: str, instance_id: str) -> str:
    from . import record

    return record.path_in(environ, f"{NAME}-{eni_id}-{instance_id}.json")


def _state_dir(ctx: Context) -> str:
    from . import record

    return record.state_dir(ctx.environ)


def _record_names(ctx: Context, eni_id: str) -> list[str]:
    from . import record

    return record.names(ctx.environ, f"{NAME}-{eni_id}-")


def any_record(environ: Mapping[str, str], eni_id: str) -> Optional[EniFacts]:
    """The record of this ENI whatever the instance, for when this instance's id is unknown
    (metadata service unreachable). The directory is the node's own (tmpfs), so there is normally
    at most one; when usable records disagree about the ENI's MAC or addresses, no one of them
    can be trusted over the others: GenericError (monitor then says "cannot tell", never 7)."""
    from . import record

    found = {}
    for path in record.names(environ, f"{NAME}-{eni_id}-"):
        facts = load_record(path, eni_id)
        if facts is not None:
            found[path] = facts
    kinds = {(f.mac, frozenset(f.ips)) for f in found.values()}
    if len(kinds) > 1:
        raise GenericError(
            f"the records of {eni_id} in {record.state_dir(environ)} disagree "
            f"({', '.join(sorted(os.path.basename(p) for p in found))}) and this instance's id "
            "is unknown (instance metadata unreachable): cannot tell which describes this node; "
            "remove the records of other instances"
        )
    return next(iter(found.values()), None)


def load_record(path: str, eni_id: Optional[str] = None) -> Optional[EniFacts]:
    """The facts start recorded at ``path``; None (with a warning) when absent or unusable, or
    when the record is not about ``eni_id``."""
    from . import record

    data = record.read(path)
    if data is None:
        return None
    try:
        facts = EniFacts.from_json(data)
    except ValueError as exc:
        record.ignored(path, str(exc))
        return None
    if eni_id is not None and facts.eni_id != eni_id:
        record.ignored(path, f"it is about {facts.eni_id[:40]!r}, not {eni_id}")
        return None
    return facts


def save_record(path: str, facts: EniFacts, instance_id: str) -> None:
    """Not fatal when it fails (a warning): monitor with the EC2 check does not need it."""
    from . import record

    record.write(path, facts.to_json(instance_id))


def remove_record(path: str) -> None:
    from . import record

    record.remove(path)


# ----------------------------------------------------------------------------- effects: AWS


class EniNotFound(ConfigError):
    """The configured ENI does not exist (exit 6)."""


def _describe(api: Api, eni_id: str) -> Eni:
    """The ENI; its absence is a configuration error (exit 6)."""
    from . import ec2
    from .aws import error_code

    try:
        return ec2.describe_eni(api, eni_id)
    except OCFError as exc:
        if error_code(exc) == ENI_NOT_FOUND:
            raise EniNotFound(
                f"network interface {eni_id} does not exist in this region: check eni_id"
            ) from None
        raise


def _availability_zone(rt: Runtime) -> str:
    return rt.imds.get("meta-data/placement/availability-zone").strip()


def primary_problem(eni: Eni) -> Optional[str]:
    """Why the ENI cannot be moved at all: it is some instance's primary interface."""
    att = eni.attachment
    if att is not None and att.device_index == 0 and att.status != "detached":
        return (
            f"{eni.id} is the primary network interface (device index 0) of "
            f"{att.instance_id}: it cannot be detached; use a secondary ENI"
        )
    return None


def _check_movable(rt: Runtime, eni: Eni) -> None:
    problem = primary_problem(eni)
    if problem:
        raise ConfigError(problem)
    _check_zone(rt, eni)


def _check_zone(rt: Runtime, eni: Eni) -> None:
    zone = _availability_zone(rt)
    if eni.az and zone and eni.az != zone:
        raise ArgsError(
            f"{eni.id} is in availability zone {eni.az} but this instance is in {zone}: an ENI "
            "can only be attached to instances of its own zone"
        )


def _detach(api: Api, attachment_id: str, force: bool) -> None:
    from . import ec2
    from .aws import error_code

    try:
        ec2.detach_eni(api, attachment_id, force=force)
    except OCFError as exc:
        if error_code(exc) in IGNORED_DETACH_ERRORS:
            log.debug("detach of %s: %s (looking again)", attachment_id, exc.reason)
            return
        raise


def _attach(api: Api, cfg: Config, instance_id: str) -> None:
    from . import ec2
    from .aws import error_code

    try:
        ec2.attach_eni(api, cfg.eni_id, instance_id, cfg.device_index)
    except OCFError as exc:
        code = error_code(exc)
        if code in RACE_ATTACH_ERRORS:
            log.info("attach of %s: %s (looking again)", cfg.eni_id, exc.reason)
            return
        if code == "InvalidParameterValue" and "device index" in exc.reason.lower():
            raise ArgsError(
                f"device index {cfg.device_index} is taken on this instance ({exc.reason}): "
                "another ENI uses it, or a forced detach left it blocked until the instance is "
                "stopped; choose another device_index"
            ) from None
        if code in ("AttachmentLimitExceeded", "InvalidParameterCombination"):
            raise ArgsError(
                f"{cfg.eni_id} cannot be attached to this instance: {exc.reason}"
            ) from None
        raise


def _sleep_or_give_up(
    deadline: Deadline, waited: float, move: Move, progress: Progress, force: bool
) -> None:
    pause = poll_interval(waited)
    if not deadline.allows(pause + DESCRIBE_ALLOWANCE):
        raise GenericError(stuck_reason(move, progress, force))
    deadline.sleep(pause, move.why)


def _bring_here(
    ctx: Context,
    api: Api,
    cfg: Config,
    instance_id: str,
    eni: Eni,
    *,
    while_waiting: Callable[[], object] = lambda: None,
) -> Eni:
    """Detach from any other holder, attach here, wait until attached; the ENI as then seen.

    ``while_waiting`` runs once, after the first request, while EC2 works on it.
    """
    from . import ec2

    deadline = ctx.deadline
    began = deadline.elapsed()
    grace = force_after(deadline.remaining())
    progress = Progress(now=began)
    while True:
        now = deadline.elapsed()
        other = holder(eni)
        if other is not None and other != instance_id and progress.held_since is None:
            progress = _with(progress, held_since=now)
        progress = _with(progress, now=now)
        move = next_move(eni, instance_id, progress, cfg.force_detach, grace)
        log.debug("%s -> %s (%s)", move.why, move.action.value, eni.status)
        if move.action is Action.DONE:
            log.info("%s attached to %s after %.1fs", eni.id, instance_id, now - began)
            return eni
        if move.action in (Action.DETACH, Action.FORCE_DETACH):
            assert eni.attachment is not None
            force = move.action is Action.FORCE_DETACH
            if force:
                log.warning("%s; the device index may stay blocked on %s", move.why, other)
                progress = _with(progress, forced_at=now)
            else:
                log.info("detaching %s from %s", eni.id, other)
                progress = _with(progress, detach_sent=now)
            _detach(api, eni.attachment.id, force)
        elif move.action is Action.ATTACH:
            log.info("attaching %s to %s at device index %d", eni.id, instance_id, cfg.device_index)
            _attach(api, cfg, instance_id)
            progress = _with(progress, attach_sent=now)
        if move.action is not Action.WAIT:
            while_waiting()
            while_waiting = lambda: None  # noqa: E731 - once is enough
        _sleep_or_give_up(deadline, progress.waited(began), move, progress, cfg.force_detach)
        eni = ec2.describe_eni(api, cfg.eni_id)


def _release(ctx: Context, api: Api, cfg: Config, instance_id: str, eni: Eni) -> Eni:
    """Detach from this instance (if attached here) and wait until it is off this instance."""
    from . import ec2

    deadline = ctx.deadline
    began = deadline.elapsed()
    grace = force_after(deadline.remaining())
    progress = Progress(now=began)
    while True:
        now = deadline.elapsed()
        progress = _with(progress, now=now)
        move = next_release_move(eni, instance_id, progress, cfg.force_detach, grace)
        if move.action is Action.DONE:
            if progress.detach_sent is not None:
                log.info("%s detached from %s after %.1fs", eni.id, instance_id, now - began)
            return eni
        if move.action in (Action.DETACH, Action.FORCE_DETACH):
            assert eni.attachment is not None
            force = move.action is Action.FORCE_DETACH
            if force:
                log.warning("%s", move.why)
                progress = _with(progress, forced_at=now)
            else:
                log.info("detaching %s from this instance (%s)", eni.id, instance_id)
                if progress.held_since is None:
                    progress = _with(progress, held_since=now)
                progress = _with(progress, detach_sent=now)
            _detach(api, eni.attachment.id, force)
        _sleep_or_give_up(deadline, progress.waited(began), move, progress, cfg.force_detach)
        eni = ec2.describe_eni(api, cfg.eni_id)


def _with(progress: Progress, **changes: Any) -> Progress:
    return replace(progress, **changes)


# ----------------------------------------------------------------------------- effects: the OS


def _observe(nl: Netlink, mac: str, table: int) -> ObservedOs:
    link = nl.link_by_mac(mac)
    return ObservedOs(
        link=link,
        addresses=tuple(nl.addresses(link.index)) if link else (),
        rules=tuple(nl.rules()),
        routes=tuple(nl.routes(table)),
    )


def _apply_os(nl: Netlink, wanted: WantedOs, link: Link, plan: OsPlan) -> None:
    if plan.bring_up:
        nl.set_up(link.index)
        log.info("brought %s up", link.name)
    for ip, prefixlen in plan.add_addresses:
        nl.add_address(link.index, ip, prefixlen)
        log.info("added %s/%d to %s", ip, prefixlen, link.name)
    for src in plan.del_rules:
        nl.del_rule(src, wanted.table, wanted.priority)
        log.info("removed stale rule from %s lookup %d", src, wanted.table)
    if plan.flush_routes:
        nl.flush_table(wanted.table)
        log.info("flushed routes this resource did not add from table %d", wanted.table)
    for dst, gateway in plan.set_routes:
        nl.replace_route(wanted.table, dst, link.index, gateway)
    if plan.set_routes:
        log.info(
            "table %d: %s dev %s",
            wanted.table,
            ", ".join(_route_text(key) for key in plan.set_routes),
            link.name,
        )
    for src in plan.add_rules:
        nl.add_rule(src, wanted.table, wanted.priority)
    if plan.add_rules:
        log.info(
            "rules from %s lookup %d priority %d",
            ", ".join(plan.add_rules),
            wanted.table,
            wanted.priority,
        )


def _configure_os(ctx: Context, nl: Netlink, cfg: Config, wanted: WantedOs) -> Link:
    """Wait for the link, make the OS match ``wanted``, read it all back."""
    if nl.link_by_mac(wanted.mac) is None:
        log.info("waiting for the link with MAC %s", wanted.mac)
    try:
        link = nl.wait_for_link_by_mac(wanted.mac, ctx.deadline)
    except GenericError as exc:
        raise GenericError(
            f"{cfg.eni_id} is attached, but no link with its MAC {wanted.mac} appeared in the "
            f"OS ({exc.reason})"
        ) from None
    observed = _observe(nl, wanted.mac, cfg.table)
    for rule in foreign_rules(observed.rules, cfg.table, cfg.priority):
        log.warning(
            "rule 'from %s lookup %d priority %d' is not this resource's but uses its table or "
            "priority (route_table_id=%d, rule_priority=%d)",
            rule.src or "all",
            rule.table,
            rule.priority,
            cfg.table,
            cfg.priority,
        )
    plan = plan_os(wanted, observed)
    if not plan.empty:
        _apply_os(nl, wanted, link, plan)
        observed = _observe(nl, wanted.mac, cfg.table)
        left = plan_os(wanted, observed)
        if not left.empty:
            raise GenericError(
                f"the OS configuration of {cfg.eni_id} did not take: "
                + "; ".join(os_problems(left, wanted, link.name))
            )
    return observed.link or link


def _release_os(nl: Netlink, cfg: Config, mac: Optional[str], ips: Sequence[str]) -> None:
    """Remove what is known to be the ENI's: our rules from its addresses, our table's routes
    through its link, its addresses on its link; verify.

    Only from facts (the record of our start, or EC2's description of the ENI): a rule or route
    of our table and priority that is not from the ENI's addresses or through its link may be
    another resource's (the same table or priority by mistake) and is left alone.
    """
    link = nl.link_by_mac(mac) if mac else None
    wanted = {str(ipaddress.ip_address(ip)) for ip in ips}
    sources = {str(ipaddress.ip_network(ip)) for ip in wanted}

    def rules() -> list[Rule]:
        return [
            r for r in own_rules(nl.rules(), cfg.table, cfg.priority) if _rule_src(r) in sources
        ]

    def routes() -> list[RouteEntry]:
        index = link.index if link is not None else None
        return [r for r in nl.routes(cfg.table) if index is not None and r.oif == index]

    for rule in rules():
        assert rule.src is not None
        nl.del_rule(rule.src, cfg.table, cfg.priority)
        log.info("removed rule from %s lookup %d", rule.src, cfg.table)
    for route in routes():
        nl.del_route(cfg.table, route.dst, route.oif, route.family)
        log.info("removed route %s from table %d", _route_text(route_key(route)), cfg.table)
    if link is not None:
        for addr in nl.addresses(link.index):
            if addr.ip in wanted:
                nl.del_address(link.index, addr.ip, addr.prefixlen)
                log.info("removed %s/%d from %s", addr.ip, addr.prefixlen, link.name)
    left = [f"rule from {r.src}" for r in rules()]
    left += [f"route {_route_text(route_key(r))}" for r in routes()]
    if link is not None:
        left += [f"address {a.ip}" for a in nl.addresses(link.index) if a.ip in wanted]
    if left:
        raise GenericError(f"could not remove {', '.join(left)} of {cfg.eni_id}")


# ----------------------------------------------------------------------------- handlers


def start(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    from . import ec2, node

    with Runtime(ctx, cfg.aws) as rt:
        instance_id = node.instance_id(rt.imds)
        api = rt.api()
        eni = _describe(api, cfg.eni_id)
        problem = primary_problem(eni)
        if problem:
            raise ConfigError(problem)
        subnets: list[Subnet] = []
        subnet_id = eni.subnet_id

        def prepare() -> None:
            """What start needs after the move; done while EC2 detaches or attaches."""
            subnets.append(ec2.describe_subnet(api, subnet_id))
            rt.netlink.prepare_changes()

        if not attached_here(eni, instance_id):
            _check_zone(rt, eni)
            eni = _bring_here(ctx, api, cfg, instance_id, eni, while_waiting=prepare)
        elif eni.attachment is not None and eni.attachment.device_index != cfg.device_index:
            log.info(
                "%s is attached here at device index %d (device_index=%d): left as it is",
                eni.id,
                eni.attachment.device_index,
                cfg.device_index,
            )
        if not subnets or subnets[0].id != eni.subnet_id:
            subnets[:] = [ec2.describe_subnet(api, eni.subnet_id)]
        facts = eni_facts(eni, subnets[0].cidr, subnets[0].ipv6_cidrs)
        wanted = wanted_os(facts, cfg.policy_routing, cfg.table, cfg.priority, cfg.ipv6_gateway)
        # Recorded before the OS is changed: a start killed midway leaves what stop needs.
        save_record(record_path(ctx.environ, cfg.eni_id, instance_id), facts, instance_id)
        link = _configure_os(ctx, rt.netlink, cfg, wanted)
        log.info(
            "%s is active on %s (%s) after %.1fs, %d API calls",
            cfg.eni_id,
            link.name,
            ", ".join(facts.ips),
            ctx.deadline.elapsed(),
            rt.api_calls(),
        )
    return OCF.SUCCESS


def stop(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    from . import node

    with Runtime(ctx, cfg.aws) as rt:
        instance_id = node.instance_id(rt.imds)
        path = record_path(ctx.environ, cfg.eni_id, instance_id)
        record = load_record(path, cfg.eni_id)
        # The OS side first, from what start recorded: it goes whatever EC2 says or does.
        _release_os(rt.netlink, cfg, record.mac if record else None, record.ips if record else ())
        try:
            eni: Optional[Eni] = _describe(rt.api(), cfg.eni_id)
        except EniNotFound:
            log.warning("%s no longer exists: only the OS side was cleaned up", cfg.eni_id)
            eni = None
        except OCFError as exc:
            # A missing permission stays exit 4 (DESIGN: permission errors map to 4).
            raise OCFError(
                f"{'removed' if record else 'without a record, left'} the OS configuration of "
                f"{cfg.eni_id}, but cannot tell whether it is "
                f"still attached here: {exc.reason}",
                OCF.ERR_PERM if exc.rc == OCF.ERR_PERM else OCF.ERR_GENERIC,
            ) from None
        problem = primary_problem(eni) if eni is not None else None
        if problem:
            # Never configured by us (start refuses): its addresses and attachment stay.
            log.warning("%s: left alone", problem)
        elif eni is not None:
            # Addresses EC2 knows and the record did not (no record, or the ENI changed).
            _release_os(rt.netlink, cfg, eni.mac, [*eni.private_ips, *eni.ipv6s])
            who = holder(eni)
            if who == instance_id:
                _release(ctx, rt.api(), cfg, instance_id, eni)
            elif who is not None:
                log.info("%s is attached to %s: left alone", cfg.eni_id, who)
        remove_record(path)
    return OCF.SUCCESS


def _record_check(
    ctx: Context, nl: Netlink, cfg: Config, record: Optional[EniFacts], damaged: bool = False
) -> int:
    """The OS-only check, from what start recorded (``damaged``: a record exists but could not
    be used, so a start did run here: "not running" would be a guess)."""
    if record is None:
        if damaged:
            raise GenericError(
                f"cannot tell whether {cfg.eni_id} is running here: its record in "
                f"{_state_dir(ctx)} is unusable (see the warning) and EC2 cannot be asked"
            )
        if cfg.policy_routing and own_rules(nl.rules(), cfg.table, cfg.priority):
            raise GenericError(
                f"cannot tell whether {cfg.eni_id} is running here: rules of table {cfg.table} "
                "exist but there is no record of a start on this node"
            )
        if not ctx.is_probe:
            log.info("%s was not started on this node (no record)", cfg.eni_id)
        return OCF.NOT_RUNNING
    wanted = wanted_os(record, cfg.policy_routing, cfg.table, cfg.priority, cfg.ipv6_gateway)
    problems = monitor_problems(wanted, _observe(nl, record.mac, cfg.table))
    if problems:
        log.warning("%s is not working on this node: %s", cfg.eni_id, "; ".join(problems))
        return OCF.NOT_RUNNING
    return OCF.SUCCESS


def monitor(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    from . import ec2, node
    from .aws import error_code

    with Runtime(ctx, cfg.aws) as rt:
        try:
            instance_id = node.instance_id(rt.imds)
        except OCFError as exc:
            # No metadata service, so no credentials either: like EC2 being unreachable, judge
            # by the OS side (the record names the ENI's MAC and addresses).
            log.warning(
                "cannot learn this instance's id (%s): judging %s by the OS side only",
                exc.reason,
                cfg.eni_id,
            )
            record = any_record(ctx.environ, cfg.eni_id)
            damaged = record is None and bool(_record_names(ctx, cfg.eni_id))
            return _record_check(ctx, rt.netlink, cfg, record, damaged)
        path = record_path(ctx.environ, cfg.eni_id, instance_id)
        record = load_record(path, cfg.eni_id)
        damaged = record is None and os.path.lexists(path)
        if not cfg.monitor_api:
            return _record_check(ctx, rt.netlink, cfg, record, damaged)
        try:
            api = rt.api()
            eni = ec2.describe_eni(api, cfg.eni_id)
        except OCFError as exc:
            if error_code(exc) == ENI_NOT_FOUND:
                raise GenericError(f"{cfg.eni_id} no longer exists") from None
            log.warning(
                "the EC2 check of %s could not complete (%s): judging by the OS side only",
                cfg.eni_id,
                exc.reason,
            )
            return _record_check(ctx, rt.netlink, cfg, record, damaged)
        problem = primary_problem(eni)
        if problem:
            raise ConfigError(problem)
        if not attached_here(eni, instance_id):
            if not ctx.is_probe:
                att = eni.attachment
                state = f"{att.status} to {att.instance_id}" if att else eni.status
                log.warning("%s is not attached to this instance (%s)", cfg.eni_id, state)
            return OCF.NOT_RUNNING
        if record is not None and same_eni(record, eni):
            facts = record
        else:
            # Attached here, but no (or an outdated) record: e.g. after a restart of the
            # cluster stack. One more call, on this rare path only.
            subnet = ec2.describe_subnet(api, eni.subnet_id)
            facts = eni_facts(eni, subnet.cidr, subnet.ipv6_cidrs)
        wanted = wanted_os(facts, cfg.policy_routing, cfg.table, cfg.priority, cfg.ipv6_gateway)
        problems = monitor_problems(wanted, _observe(rt.netlink, eni.mac, cfg.table))
    if problems:
        log.warning(
            "%s is attached here but its OS configuration is incomplete (removed by another "
            "program?): %s",
            cfg.eni_id,
            "; ".join(problems),
        )
        return OCF.NOT_RUNNING
    return OCF.SUCCESS


def validate(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    from . import ec2, node

    with Runtime(ctx, cfg.aws) as rt:
        instance_id = node.instance_id(rt.imds)
        api = rt.api()
        eni = _describe(api, cfg.eni_id)
        _check_movable(rt, eni)
        taken = [
            other.id
            for other in ec2.describe_enis(api, filters={"attachment.instance-id": [instance_id]})
            if other.id != eni.id
            and other.attachment is not None
            and other.attachment.device_index == cfg.device_index
        ]
        if taken:
            raise ArgsError(
                f"device index {cfg.device_index} of this instance is used by {taken[0]}: "
                "choose another device_index"
            )
        if not attached_here(eni, instance_id):
            ec2.attach_eni(api, cfg.eni_id, instance_id, cfg.device_index, dry_run=True)
            who = holder(eni)
            if who is not None and eni.attachment is not None:
                ec2.detach_eni(api, eni.attachment.id, force=cfg.force_detach, dry_run=True)
        foreign = foreign_rules(rt.netlink.rules(), cfg.table, cfg.priority)
        if foreign:
            rule = foreign[0]
            raise ArgsError(
                f"rule 'from {rule.src or 'all'} lookup {rule.table} priority {rule.priority}' "
                f"collides with this resource's table {cfg.table} / priority {cfg.priority}: "
                "choose another route_table_id and rule_priority"
            )
    return OCF.SUCCESS
