"""aws-overlayip: an overlay IP address, outside the VPC's CIDR, routed to this instance.

AWS side: in every managed route table, the route for the address (/32 or /128) targets the ENI
of ``interface`` on this instance; the ENI must not check source/destination. OS side: the
address on ``interface``. Stop removes the address only: routes are left for the next owner to
take over (a route that points elsewhere is never touched).

start and validate-all share one :func:`observe` and one pure :func:`plan`: start applies the plan
and verifies it, validate-all applies it in check mode (``DryRun``, no change at all).

Every EC2 call is made with its step's principal (:func:`api_of`): the route table calls with
``routing_table_role`` when it is set (a shared VPC: the tables are the owner account's), all
the others with this node's credentials; there is no falling back from one to the other.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

from ipfailover.overlayip.declaration import Config
from ipfailover.overlayip.watch import configured, configured_link, others_note
from ipfailover.runtime import Runtime, aws_check, aws_check_due, run_parallel, together
from ocf_shim import OCF, ConfigError, Context, GenericError, OCFError, get_log

if TYPE_CHECKING:
    from ipfailover.aws.client import Api
    from ipfailover.aws.ec2 import RouteTable
    from ipfailover.config.params import IPAddress

log = get_log("ipfailover")

REAPPLY_AFTER = 1.0  # seconds; see reapply_patience
# Whose credentials make a step's call: this node's (its instance role, or role_arn), or those
# of routing_table_role (the route tables' owner, in a shared VPC).
NODE = "node"
ROUTING_ROLE = "routing-role"
REAPPLY_JITTER = 0.5

# ----------------------------------------------------------------------------- pure decisions


@dataclass(frozen=True)
class RouteChange:
    """One managed table's route: "create", "replace", or "keep" (already ours: start makes no
    call; check mode proves ReplaceRoute, the call start makes when the route points elsewhere)."""

    table_id: str
    eni_id: str  # the target
    kind: str  # "create" | "replace" | "keep"
    previous: Optional[str]  # what the route pointed at before, for the log
    principal: str = "node"  # whose credentials make the call

    @property
    def operation(self) -> str:
        return "CreateRoute" if self.kind == "create" else "ReplaceRoute"


@dataclass(frozen=True)
class DisableSourceDest:
    """Turn the ENI's source/destination check off (source_dest_check=disable)."""

    eni_id: str
    principal: str = "node"
    operation: str = "ModifyNetworkInterfaceAttribute"


@dataclass(frozen=True)
class AddAddress:
    """The OS change: the address on the interface (no EC2 call; check mode skips it)."""

    index: int
    ip: str
    prefixlen: int
    label: Optional[str]


Step = Union[DisableSourceDest, AddAddress, RouteChange]


@dataclass(frozen=True)
class Observation:
    """What start and validate-all read before deciding (see :func:`observe`)."""

    link_index: int
    eni_id: str
    vpc_id: str
    tables: tuple[RouteTable, ...]
    source_dest_check: Optional[bool]  # None: not read (source_dest_check=ignore)


def missing_tables(requested: Sequence[str], tables: Sequence[RouteTable]) -> list[str]:
    found = {table.id for table in tables}
    return [table_id for table_id in requested if table_id not in found]


def foreign_tables(tables: Sequence[RouteTable], vpc_id: str) -> list[str]:
    return [table.id for table in tables if table.vpc_id and table.vpc_id != vpc_id]


def route_steps(
    cidr: str, eni_id: str, tables: Sequence[RouteTable], create: bool, principal: str = NODE
) -> list[RouteChange]:
    """One step per table so that every table routes ``cidr`` to ``eni_id``, each call made
    with ``principal``'s credentials."""
    steps = []
    for table in tables:
        route = table.route_to(cidr)
        if route is None:
            if not create:
                raise ConfigError(
                    f"route table {table.id} has no route for {cidr} and create_route is false: "
                    "create the route or set create_route=true"
                )
            steps.append(RouteChange(table.id, eni_id, "create", None, principal))
        elif route.eni_id != eni_id or route.state != "active":
            previous = route.eni_id or route.other_target or route.instance_id or "nothing"
            was = f"{previous} ({route.state})"
            steps.append(RouteChange(table.id, eni_id, "replace", was, principal))
        else:
            steps.append(RouteChange(table.id, eni_id, "keep", None, principal))
    return steps


def plan_routes(
    cidr: str, eni_id: str, tables: Sequence[RouteTable], create: bool, principal: str = NODE
) -> list[RouteChange]:
    """What to change so that every table routes ``cidr`` to ``eni_id`` (empty: nothing)."""
    steps = route_steps(cidr, eni_id, tables, create, principal)
    return [step for step in steps if step.kind != "keep"]


def route_principal(cfg: Config) -> str:
    """Whose credentials make the route table calls."""
    return ROUTING_ROLE if cfg.routing_role else NODE


def plan(cfg: Config, seen: Observation) -> tuple[Step, ...]:
    """Everything start does, in order: source/destination check, the address, the routes.

    Raises ConfigError for what no step can fix (the check on with source_dest_check=verify, a
    missing route with create_route=false).
    """
    steps: list[Step] = []
    if seen.source_dest_check:
        if cfg.source_dest_check == "verify":
            raise ConfigError(
                f"source/destination check is on for {seen.eni_id}, so AWS drops traffic for "
                f"{cfg.ip}: turn it off (source_dest_check=disable does it at start)"
            )
        steps.append(DisableSourceDest(seen.eni_id))
    # The address first: packets may arrive the moment the first route changes.
    steps.append(AddAddress(seen.link_index, str(cfg.ip), cfg.ip.max_prefixlen, cfg.label))
    steps.extend(
        route_steps(cfg.cidr, seen.eni_id, seen.tables, cfg.create_route, route_principal(cfg))
    )
    return tuple(steps)


def outside_vpc(ip: IPAddress, vpc_cidrs: Sequence[str]) -> None:
    inside = overlaps_vpc(ip, vpc_cidrs)
    if inside:
        raise ConfigError(f"{ip} is inside the VPC CIDR {inside}: an overlay IP must be outside")


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


def api_of(rt: Runtime, cfg: Config, principal: str) -> Api:
    """The EC2 API that signs as ``principal``: routing_table_role's is assumed once per action
    (with this node's credentials: the instance role's, or role_arn's), and there is no falling
    back to the node's own for the route tables."""
    if principal == ROUTING_ROLE:
        if cfg.routing_role is None:
            raise GenericError("a route table step for the routing role without routing_table_role")
        return rt.assumed_api(cfg.routing_role, cfg.routing_external_id, "the routing role")
    return rt.api()


def routes_api(rt: Runtime, cfg: Config) -> Api:
    return api_of(rt, cfg, route_principal(cfg))


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


def _apply(api: Api, cfg: Config, change: RouteChange) -> None:
    """Make one table route the address to us, tolerating a race with another node."""
    from ipfailover.aws import ec2
    from ipfailover.aws.errors import INVALID_PARAMETER_VALUE, ROUTE_ALREADY_EXISTS, error_code

    kind = change.kind
    for _ in range(2):
        try:
            if kind == "create":
                ec2.create_route(api, change.table_id, cfg.cidr, change.eni_id)
            else:
                ec2.replace_route(api, change.table_id, cfg.cidr, change.eni_id)
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
            change.eni_id,
            change.previous or "absent",
        )
        return
    raise GenericError(f"route for {cfg.cidr} in {change.table_id} keeps changing under us")


def observe(rt: Runtime, cfg: Config, describe_vpc: bool = False) -> Observation:
    """Read this instance's ENI, the VPC's blocks, the managed tables and the ENI's
    source/destination check. ``describe_vpc``: ask EC2 for the VPC's blocks even when IMDS lists
    them (validate-all does, to prove DescribeVpcs, which start needs for IPv6 only)."""
    from ipfailover.aws import ec2, instance

    link = rt.require_link(cfg.interface)
    facts = instance.interface_facts(rt.imds, link.mac)
    blocks = facts.vpc_cidrs
    if describe_vpc or (cfg.ip.version == 6 and not any(":" in block for block in blocks)):
        # IMDS lists the VPC's IPv6 blocks only to an ENI that has an IPv6 address.
        blocks = ec2.describe_vpc(rt.api(), facts.vpc_id).cidrs
    outside_vpc(cfg.ip, blocks)  # before any further call
    tables_api, node_api = routes_api(rt, cfg), rt.api()  # made here, not in the threads

    def source_dest_check() -> Optional[bool]:
        if cfg.source_dest_check == "ignore":
            return None
        return ec2.describe_eni(node_api, facts.eni_id).source_dest_check

    # The two reads at the same time: one round trip to EC2 instead of two. The tables' errors
    # (a configuration EC2 cannot serve) come first, as when they were read first.
    tables, check = together(lambda: _find_tables(tables_api, cfg, facts.vpc_id), source_dest_check)
    return Observation(link.index, facts.eni_id, facts.vpc_id, tuple(tables), check)


def apply(rt: Runtime, cfg: Config, steps: Sequence[Step], check: bool = False) -> None:
    """Perform ``steps`` in order, the route changes at the same time. ``check``: the DryRun call
    of each EC2 step and nothing else (no OS change, no route changed, "keep" proven too)."""
    from ipfailover.aws import ec2

    routes = [step for step in steps if isinstance(step, RouteChange)]
    for step in steps:
        if isinstance(step, DisableSourceDest):
            ec2.set_source_dest_check(
                api_of(rt, cfg, step.principal), step.eni_id, False, dry_run=check
            )
            if not check:
                log.info("turned source/destination check off on %s", step.eni_id)
        elif isinstance(step, AddAddress) and not check:
            rt.netlink.add_address(step.index, step.ip, step.prefixlen, step.label)
    apis = {principal: api_of(rt, cfg, principal) for principal in {r.principal for r in routes}}
    if check:
        for route in routes:
            send = ec2.create_route if route.kind == "create" else ec2.replace_route
            send(apis[route.principal], route.table_id, cfg.cidr, route.eni_id, dry_run=True)
    else:
        changes = [route for route in routes if route.kind != "keep"]
        run_parallel(lambda change: _apply(apis[change.principal], cfg, change), changes)


def start(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    with Runtime(ctx, cfg.aws) as rt:
        seen = observe(rt, cfg)
        steps = plan(cfg, seen)
        apply(rt, cfg, steps)
        api, eni_id, index = routes_api(rt, cfg), seen.eni_id, seen.link_index
        changes = [s for s in steps if isinstance(s, RouteChange) and s.kind != "keep"]
        tables: Sequence[RouteTable] = seen.tables
        applied, patience = ctx.deadline.elapsed(), reapply_patience()
        while changes:
            tables = _find_tables(api, cfg, seen.vpc_id)
            problems = route_problems(cfg.cidr, eni_id, tables)
            if not problems:
                break
            if ctx.deadline.elapsed() - applied >= patience:
                # Longer than EC2's reads lag: another node is changing the same routes (both
                # started at once). Take them again; the first node that reads every table back
                # as its own returns, the other's next look brings them all to one node.
                log.warning("routes changed under us (%s): changing them again", problems[0])
                changes = plan_routes(
                    cfg.cidr, eni_id, tables, cfg.create_route, route_principal(cfg)
                )
                run_parallel(lambda change: _apply(api, cfg, change), changes)
                applied, patience = ctx.deadline.elapsed(), reapply_patience()
                continue
            ctx.deadline.sleep(0.2, f"waiting for the routes to settle ({'; '.join(problems)})")
        if not configured(rt, cfg, index):
            raise GenericError(
                others_note(rt, cfg, index)
                or f"{cfg.ip} did not stay on {cfg.interface} (removed by another program?)"
            )
        log.info(
            "%s routed to %s in %d table(s) (%d changed), %d API calls",
            cfg.ip,
            eni_id,
            len(tables),
            len(changes),
            rt.api_calls(),
        )
    return OCF.SUCCESS


def stop(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    with Runtime(ctx, cfg.aws) as rt:
        link = rt.netlink.link_by_name(cfg.interface)
        if link is None:
            log.info("interface %s is gone, so %s is not configured", cfg.interface, cfg.ip)
            return OCF.SUCCESS
        if rt.netlink.del_address(link.index, str(cfg.ip), cfg.ip.max_prefixlen):
            log.info("removed %s from %s", cfg.ip, cfg.interface)
        if configured(rt, cfg, link.index):
            raise GenericError(f"{cfg.ip} is still on {cfg.interface} after removing it")
        note = others_note(rt, cfg, link.index)
        if note:
            log.warning("%s", note)
    return OCF.SUCCESS


def monitor(ctx: Context) -> int:
    """The OS side (:mod:`.watch`, where every monitor starts), then the AWS side when due."""
    cfg = ctx.config_as(Config)
    with Runtime(ctx, cfg.aws) as rt:
        link = configured_link(ctx, rt, cfg)
        if link is None:
            return OCF.NOT_RUNNING
        if not aws_check_due(ctx, cfg.monitor_api):
            return OCF.SUCCESS
        mac = link.mac

        def look() -> tuple[str, list[RouteTable]]:
            from ipfailover.aws import ec2, instance

            eni_id = instance.eni_id_of_mac(rt.imds, mac)
            api = routes_api(rt, cfg)
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
    """start's plan in check mode: every call it would make, with DryRun, and no change."""
    cfg = ctx.config_as(Config)
    with Runtime(ctx, cfg.aws) as rt:
        seen = observe(rt, cfg, describe_vpc=True)
        apply(rt, cfg, plan(cfg, seen), check=True)
    return OCF.SUCCESS
