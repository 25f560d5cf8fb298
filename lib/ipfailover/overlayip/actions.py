"""aws-overlayip: an overlay IP address, outside the VPC's CIDR, routed to this instance.

AWS side: in every managed route table, the route for the address (/32 or /128) targets the ENI
of ``interface`` on this instance; the ENI must not check source/destination. OS side: the
address on ``interface``. Stop removes the address only: routes are left for the next owner to
take over (a route that points elsewhere is never touched).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ipfailover.overlayip.declaration import Config
from ipfailover.runtime import Runtime, aws_check, run_parallel
from ocf_shim import OCF, ConfigError, Context, GenericError, OCFError, get_log

if TYPE_CHECKING:
    from ipfailover.aws.client import Api
    from ipfailover.aws.ec2 import RouteTable
    from ipfailover.config.params import IPAddress

log = get_log("ipfailover")

REAPPLY_AFTER = 1.0  # seconds; see reapply_patience
REAPPLY_JITTER = 0.5

# ----------------------------------------------------------------------------- pure decisions


@dataclass(frozen=True)
class RouteChange:
    table_id: str
    kind: str  # "create" | "replace"
    previous: Optional[str]  # what the route pointed at before, for the log


def missing_tables(requested: Sequence[str], tables: Sequence[RouteTable]) -> list[str]:
    found = {table.id for table in tables}
    return [table_id for table_id in requested if table_id not in found]


def foreign_tables(tables: Sequence[RouteTable], vpc_id: str) -> list[str]:
    return [table.id for table in tables if table.vpc_id and table.vpc_id != vpc_id]


def plan_routes(
    cidr: str, eni_id: str, tables: Sequence[RouteTable], create: bool
) -> list[RouteChange]:
    """What to change so that every table routes ``cidr`` to ``eni_id`` (empty: nothing)."""
    changes = []
    for table in tables:
        route = table.route_to(cidr)
        if route is None:
            if not create:
                raise ConfigError(
                    f"route table {table.id} has no route for {cidr} and create_route is false: "
                    "create the route or set create_route=true"
                )
            changes.append(RouteChange(table.id, "create", None))
        elif route.eni_id != eni_id or route.state != "active":
            previous = route.eni_id or route.other_target or route.instance_id or "nothing"
            changes.append(RouteChange(table.id, "replace", f"{previous} ({route.state})"))
    return changes


def route_problems(cidr: str, eni_id: str, tables: Sequence[RouteTable]) -> list[str]:
    """Why the tables do not (all) send ``cidr`` to ``eni_id``; empty when they do."""
    problems = []
    for table in tables:
        route = table.route_to(cidr)
        if route is None:
            problems.append(f"{table.id} has no route for {cidr}")
        elif route.eni_id != eni_id:
            target = route.eni_id or route.other_target or route.instance_id or "nothing"
            problems.append(f"{table.id} routes {cidr} to {target}")
        elif route.state != "active":
            problems.append(f"{table.id} route for {cidr} is {route.state}")
    return problems


def reapply_patience(rand: Callable[[], float] = random.random) -> float:
    """How long start lets a changed route show another target before changing it again: more
    than EC2's reads lag behind, jittered so that two nodes racing fall out of step."""
    return REAPPLY_AFTER + REAPPLY_JITTER * rand()


def overlaps_vpc(ip: IPAddress, vpc_cidrs: Sequence[str]) -> Optional[str]:
    """The VPC CIDR block that contains ``ip``, if any."""
    for block in vpc_cidrs:
        try:
            network = ipaddress.ip_network(block, strict=False)
        except ValueError:
            continue
        if network.version == ip.version and ip in network:
            return block
    return None


# ----------------------------------------------------------------------------- effects


def _find_tables(api: Api, cfg: Config, vpc_id: str) -> list[RouteTable]:
    """The managed tables, in one DescribeRouteTables call (by id, by tag, or both)."""
    from ipfailover.aws import ec2
    from ipfailover.aws.errors import is_not_found

    if cfg.table_ids and cfg.table_tag:
        # One call for both: ask for the VPC's tables and pick ids and tagged ones locally.
        key, value = cfg.table_tag
        tables = [
            t
            for t in ec2.describe_route_tables(api, vpc_id=vpc_id)
            if t.id in cfg.table_ids or t.tags.get(key) == value
        ]
    elif cfg.table_ids:
        try:
            tables = ec2.describe_route_tables(api, table_ids=cfg.table_ids)
        except OCFError as exc:
            if is_not_found(exc):
                raise ConfigError(
                    f"route table(s) not found: {exc.reason}; check routing_table"
                ) from None
            raise
    else:
        assert cfg.table_tag is not None
        tables = ec2.describe_route_tables(api, tag=cfg.table_tag, vpc_id=vpc_id)
        if not tables:
            key, value = cfg.table_tag
            raise ConfigError(f"no route table of {vpc_id} is tagged {key}={value}")
    missing = missing_tables(cfg.table_ids, tables)
    if missing:
        raise ConfigError(f"route table(s) {', '.join(missing)} not found in {vpc_id}")
    foreign = foreign_tables(tables, vpc_id)
    if foreign:
        raise ConfigError(
            f"route table(s) {', '.join(foreign)} belong to another VPC than this instance's "
            f"({vpc_id})"
        )
    return tables


def _apply(api: Api, cfg: Config, eni_id: str, change: RouteChange) -> None:
    """Make one table route the address to us, tolerating a race with another node."""
    from ipfailover.aws import ec2
    from ipfailover.aws.errors import INVALID_PARAMETER_VALUE, ROUTE_ALREADY_EXISTS, error_code

    kind = change.kind
    for _ in range(2):
        try:
            if kind == "create":
                ec2.create_route(api, change.table_id, cfg.cidr, eni_id)
            else:
                ec2.replace_route(api, change.table_id, cfg.cidr, eni_id)
        except OCFError as exc:
            code = error_code(exc)
            if kind == "create" and code == ROUTE_ALREADY_EXISTS:
                kind = "replace"  # someone created it since we looked
                continue
            if kind == "replace" and code == INVALID_PARAMETER_VALUE and cfg.create_route:
                kind = "create"  # someone deleted it since we looked
                continue
            raise
        log.info(
            "%s route %s in %s -> %s (was %s)",
            "created" if kind == "create" else "replaced",
            cfg.cidr,
            change.table_id,
            eni_id,
            change.previous or "absent",
        )
        return
    raise GenericError(f"route for {cfg.cidr} in {change.table_id} keeps changing under us")


def _check_source_dest(api: Api, cfg: Config, eni_id: str, dry_run: bool) -> None:
    from ipfailover.aws import ec2

    if cfg.source_dest_check == "ignore":
        return
    eni = ec2.describe_eni(api, eni_id)
    if not eni.source_dest_check:
        return
    if cfg.source_dest_check == "verify":
        raise ConfigError(
            f"source/destination check is on for {eni_id}, so AWS drops traffic for {cfg.ip}: "
            "turn it off (source_dest_check=disable does it at start)"
        )
    if dry_run:
        ec2.set_source_dest_check(api, eni_id, False, dry_run=True)
    else:
        ec2.set_source_dest_check(api, eni_id, False)
        log.info("turned source/destination check off on %s", eni_id)


def start(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    from ipfailover.aws import instance

    with Runtime(ctx, cfg.aws) as rt:
        link = rt.require_link(cfg.interface)
        facts = instance.interface_facts(rt.imds, link.mac)
        blocks = facts.vpc_cidrs
        if cfg.ip.version == 6 and not any(":" in block for block in blocks):
            # IMDS lists the VPC's IPv6 blocks only to an ENI that has an IPv6 address.
            from ipfailover.aws import ec2

            blocks = ec2.describe_vpc(rt.api(), facts.vpc_id).cidrs
        inside = overlaps_vpc(cfg.ip, blocks)
        if inside:
            raise ConfigError(
                f"{cfg.ip} is inside the VPC CIDR {inside}: an overlay IP must be outside"
            )
        api = rt.api()
        tables = _find_tables(api, cfg, facts.vpc_id)
        _check_source_dest(api, cfg, facts.eni_id, dry_run=False)
        # The address first: packets may arrive the moment the first route changes.
        rt.netlink.add_address(link.index, str(cfg.ip), cfg.ip.max_prefixlen, cfg.label)

        def take(tables: Sequence[RouteTable]) -> list[RouteChange]:
            planned = plan_routes(cfg.cidr, facts.eni_id, tables, cfg.create_route)
            run_parallel(lambda change: _apply(api, cfg, facts.eni_id, change), planned)
            return planned

        changes = take(tables)
        applied, patience = ctx.deadline.elapsed(), reapply_patience()
        while changes:
            tables = _find_tables(api, cfg, facts.vpc_id)
            problems = route_problems(cfg.cidr, facts.eni_id, tables)
            if not problems:
                break
            if ctx.deadline.elapsed() - applied >= patience:
                # Longer than EC2's reads lag: another node is changing the same routes (both
                # started at once). Take them again; the first node that reads every table back
                # as its own returns, the other's next look brings them all to one node.
                log.warning("routes changed under us (%s): changing them again", problems[0])
                changes = take(tables)
                applied, patience = ctx.deadline.elapsed(), reapply_patience()
                continue
            ctx.deadline.sleep(0.2, f"waiting for the routes to settle ({'; '.join(problems)})")
        if not _configured(rt, cfg, link.index):
            raise GenericError(
                _others_note(rt, cfg, link.index)
                or f"{cfg.ip} did not stay on {cfg.interface} (removed by another program?)"
            )
        log.info(
            "%s routed to %s in %d table(s) (%d changed), %d API calls",
            cfg.ip,
            facts.eni_id,
            len(tables),
            len(changes),
            rt.api_calls(),
        )
    return OCF.SUCCESS


def _configured(rt: Runtime, cfg: Config, index: int) -> bool:
    """Whether the address is on the interface as start adds it: /32 (IPv4) or /128 (IPv6).

    The same address with another prefix length is not this resource's (start never adds it so):
    e.g. the node's own address, in a misconfiguration. It is neither reported as running nor
    removed.
    """
    wanted = str(cfg.ip)
    return any(
        a.ip == wanted and a.prefixlen == cfg.ip.max_prefixlen for a in rt.netlink.addresses(index)
    )


def _others_note(rt: Runtime, cfg: Config, index: int) -> Optional[str]:
    """A word about the address configured here with another prefix length, if it is."""
    wanted = str(cfg.ip)
    others = [
        f"{a.ip}/{a.prefixlen}"
        for a in rt.netlink.addresses(index)
        if a.ip == wanted and a.prefixlen != cfg.ip.max_prefixlen
    ]
    if not others:
        return None
    return (
        f"{', '.join(others)} on {cfg.interface} is not this resource's (it adds "
        f"{cfg.ip}/{cfg.ip.max_prefixlen} only): left alone; check the ip parameter"
    )


def stop(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    with Runtime(ctx, cfg.aws) as rt:
        link = rt.netlink.link_by_name(cfg.interface)
        if link is None:
            log.info("interface %s is gone, so %s is not configured", cfg.interface, cfg.ip)
            return OCF.SUCCESS
        if rt.netlink.del_address(link.index, str(cfg.ip), cfg.ip.max_prefixlen):
            log.info("removed %s from %s", cfg.ip, cfg.interface)
        if _configured(rt, cfg, link.index):
            raise GenericError(f"{cfg.ip} is still on {cfg.interface} after removing it")
        note = _others_note(rt, cfg, link.index)
        if note:
            log.warning("%s", note)
    return OCF.SUCCESS


def monitor(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    from ipfailover.aws import ec2, instance

    with Runtime(ctx, cfg.aws) as rt:
        link = rt.netlink.link_by_name(cfg.interface)
        if link is None or not _configured(rt, cfg, link.index):
            note = _others_note(rt, cfg, link.index) if link is not None else None
            if note:
                log.warning("%s", note)
            elif not ctx.is_probe:
                log.info("%s is not configured on %s", cfg.ip, cfg.interface)
            return OCF.NOT_RUNNING
        if not cfg.monitor_api:
            return OCF.SUCCESS
        mac = link.mac

        def look() -> tuple[str, list[RouteTable]]:
            eni_id = instance.eni_id_of_mac(rt.imds, mac)
            api = rt.api()
            if cfg.table_ids and not cfg.table_tag:
                return eni_id, ec2.describe_route_tables(api, table_ids=cfg.table_ids)
            return eni_id, _find_tables(api, cfg, instance.interface_facts(rt.imds, mac).vpc_id)

        checked = aws_check(look, f"the route tables of {cfg.ip}")
        if checked is None:
            return OCF.SUCCESS
        eni_id, tables = checked
    missing = missing_tables(cfg.table_ids, tables)
    if missing:
        raise GenericError(f"route table(s) {', '.join(missing)} no longer exist")
    problems = route_problems(cfg.cidr, eni_id, tables)
    if problems:
        log.warning("%s is not routed to this node (%s): %s", cfg.ip, eni_id, "; ".join(problems))
        return OCF.NOT_RUNNING
    return OCF.SUCCESS


def validate(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    from ipfailover.aws import ec2, instance

    with Runtime(ctx, cfg.aws) as rt:
        link = rt.require_link(cfg.interface)
        facts = instance.interface_facts(rt.imds, link.mac)
        api = rt.api()
        vpc = ec2.describe_vpc(api, facts.vpc_id)
        inside = overlaps_vpc(cfg.ip, vpc.cidrs)
        if inside:
            raise ConfigError(
                f"{cfg.ip} is inside the VPC CIDR {inside}: an overlay IP must be outside"
            )
        tables = _find_tables(api, cfg, facts.vpc_id)
        _check_source_dest(api, cfg, facts.eni_id, dry_run=True)
        for table in tables:
            if table.route_to(cfg.cidr) is not None:
                ec2.replace_route(api, table.id, cfg.cidr, facts.eni_id, dry_run=True)
            elif cfg.create_route:
                ec2.create_route(api, table.id, cfg.cidr, facts.eni_id, dry_run=True)
            else:
                raise ConfigError(
                    f"route table {table.id} has no route for {cfg.cidr} and create_route is false"
                )
    return OCF.SUCCESS
