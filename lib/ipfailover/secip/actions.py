"""aws-secip: a secondary private IP address of a subnet, assigned to this instance's ENI.

AWS side: the address is a secondary private IP (IPv4) or an IPv6 address of the ENI of
``interface``, moved here with ``AssignPrivateIpAddresses(AllowReassignment=true)`` (IPv6 cannot
be reassigned: it is unassigned from the holder first); optionally an Elastic IP associated with
it. OS side: the address on ``interface``. One ``DescribeNetworkInterfaces`` call filtered by the
address tells both who holds it and whether that is us. Stop removes the address from the OS and
unassigns it from this node's ENI only while this ENI still holds it: an address another node took
over is never touched.

start and validate-all share one :func:`observe` and one pure plan (``secip.plan.plan``): start
applies it and verifies, validate-all applies it in check mode (:func:`apply` with ``check``).
"""

from __future__ import annotations

from typing import Optional

from ipfailover.runtime import Runtime, aws_check, aws_check_due
from ipfailover.secip.aws_apply import (
    check_subnet,
    describe_both,
    describe_eip,
    describe_holding,
    ensure_eip,
    move,
    wait_for_aws,
)
from ipfailover.secip.declaration import Config
from ipfailover.secip.os_apply import link_entries, link_verdict, save_record
from ipfailover.secip.plan import (
    NOT_PRIMARY,
    PRIMARY,
    UNSURE,
    AwsStep,
    Holding,
    Observation,
    Plan,
    aws_problems,
    plan,
    primary_problem,
)
from ipfailover.secip.watch import record_path
from ocf_shim import OCF, ConfigError, Context, GenericError, OCFError, get_log

log = get_log("ipfailover")


def observe(rt: Runtime, ctx: Context, cfg: Config, check_eni: bool = False) -> Observation:
    """Read the ENI behind the interface, the subnet, who holds the address, the Elastic IP and
    the address on the interface; refuse what is the node's own (the primary-address guard).
    ``check_eni``: also that EC2 puts the ENI in the subnet the metadata names (validate-all)."""
    from ipfailover.aws import ec2, instance

    link = rt.require_link(cfg.interface)
    facts = instance.interface_facts(rt.imds, link.mac)
    prefix = check_subnet(rt, cfg, facts)
    eni_id = facts.eni_id
    api = rt.api()
    if check_eni:
        eni = ec2.describe_eni(api, eni_id)  # the ENI exists and we may describe it
        if eni.subnet_id and eni.subnet_id != facts.subnet_id:
            raise ConfigError(
                f"{eni_id} is in {eni.subnet_id} according to EC2, but in {facts.subnet_id} "
                "according to the instance metadata"
            )
    held, eip = describe_both(api, cfg, with_eip=True)
    entries = link_entries(rt, cfg, link)
    present = entries[0] if entries else None
    if present is not None:
        # Start may change its prefix and stop will remove it: only when it is not a primary.
        verdict = link_verdict(rt, ctx, cfg, link, entries, held=held, eni_id=eni_id)
        if verdict.state == PRIMARY:
            raise ConfigError(verdict.why)
        if verdict.state == UNSURE:
            raise GenericError(verdict.why)
    return Observation(link, eni_id, prefix, held, eip, present.prefixlen if present else None)


def apply(
    rt: Runtime, ctx: Context, cfg: Config, seen: Observation, todo: Plan, *, check: bool = False
) -> None:
    """Make the plan's changes, or (``check``) the DryRun call of each EC2 step that has one and
    no change at all: the others are named in the log with the reason."""
    api = rt.api()
    if check:
        from ipfailover.aws import ec2

        for step in todo.steps:
            if not isinstance(step, AwsStep):
                continue
            if step.unchecked:
                log.info("not checked: %s on %s: %s", step.operation, step.eni_id, step.unchecked)
            elif step.operation == "AssociateAddress" and cfg.eip_allocation_id is not None:
                ec2.associate_address(
                    api, cfg.eip_allocation_id, step.eni_id, str(cfg.ip), dry_run=True
                )
        return
    link, eni_id, prefix, held, eip = seen.link, seen.eni_id, seen.prefix, seen.held, seen.eip
    moved = todo.assign or bool(todo.take_from)
    if moved:
        move(api, cfg, eni_id, todo, ctx)
        log.info(
            "assigned %s to %s (was on %s)",
            cfg.ip,
            eni_id,
            ", ".join(held.holders) or "no network interface",
        )
    # The OS side while EC2 completes the move: harmless before AWS delivers the packets.
    if todo.os_remove_prefix is not None:
        rt.netlink.del_address(link.index, str(cfg.ip), todo.os_remove_prefix)
    if todo.os_add:
        # Recorded first: a start killed right after the add still leaves its own address
        # recognisable to stop.
        save_record(ctx, link, cfg.ip, prefix)
        rt.netlink.add_address(link.index, str(cfg.ip), prefix)
        log.info("configured %s/%d on %s", cfg.ip, prefix, link.name)
    if moved:
        wait_for_aws(api, cfg, eni_id, ctx, with_eip=False)
        if todo.assign:
            # An Elastic IP follows a reassigned IPv4 address: look where it points now.
            eip = describe_eip(api, cfg)
    ensure_eip(api, cfg, eni_id, eip, ctx)


def start(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    with Runtime(ctx, cfg.aws) as rt:
        seen = observe(rt, ctx, cfg)
        todo = plan(seen, cfg.ip)
        link, eni_id, prefix = seen.link, seen.eni_id, seen.prefix
        if todo.empty:
            save_record(ctx, link, cfg.ip, prefix)
            log.info("%s is already assigned to %s and configured on %s", cfg.ip, eni_id, link.name)
            return OCF.SUCCESS
        apply(rt, ctx, cfg, seen, todo)
        if not any(a.prefixlen == prefix for a in link_entries(rt, cfg, link)):
            raise GenericError(
                f"{cfg.ip}/{prefix} did not stay on {cfg.interface} (removed by another program?)"
            )
        save_record(ctx, link, cfg.ip, prefix)
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
    from ipfailover.aws import ec2, instance
    from ipfailover.host import record

    with Runtime(ctx, cfg.aws) as rt:
        link = rt.netlink.link_by_name(cfg.interface)
        if link is None:
            log.info("interface %s is gone, so %s is not configured", cfg.interface, cfg.ip)
            return OCF.SUCCESS
        entries = link_entries(rt, cfg, link)
        if entries:
            verdict = link_verdict(rt, ctx, cfg, link, entries)
            if verdict.state != NOT_PRIMARY:
                # Never started by us (start refuses a primary address), or no fact tells: leave
                # the node reachable. Failing the stop would get the node fenced for it.
                log.warning("%s: not removing it", verdict.why)
                return OCF.SUCCESS
            for entry in entries:
                rt.netlink.del_address(link.index, entry.ip, entry.prefixlen)
                log.info("removed %s/%d from %s", entry.ip, entry.prefixlen, cfg.interface)
            if link_entries(rt, cfg, link):
                raise GenericError(f"{cfg.ip} is still on {cfg.interface} after removing it")
        record.remove(record_path(ctx, link.mac, cfg.ip))
        if not cfg.unassign_on_stop:
            return OCF.SUCCESS
        try:
            eni_id = instance.eni_id_of_mac(rt.imds, link.mac)
            api = rt.api()
            held = describe_holding(api, cfg.ip)
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
    with Runtime(ctx, cfg.aws) as rt:
        link = rt.netlink.link_by_name(cfg.interface)
        entries = link_entries(rt, cfg, link) if link is not None else []
        if link is None or not entries:
            if not ctx.is_probe:
                log.info("%s is not configured on %s", cfg.ip, cfg.interface)
            return OCF.NOT_RUNNING
        held: Optional[Holding] = None
        eni_id: Optional[str] = None
        due = aws_check_due(ctx, cfg.monitor_api)
        if due:
            mac = link.mac

            def look() -> tuple[str, Holding]:
                from ipfailover.aws import instance

                return instance.eni_id_of_mac(rt.imds, mac), describe_holding(rt.api(), cfg.ip)

            checked = aws_check(look, f"the assignment of {cfg.ip}")
            if checked is not None:
                eni_id, held = checked
        verdict = link_verdict(
            rt, ctx, cfg, link, entries, held=held, eni_id=eni_id, os_only=not due
        )
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
    """start's plan in check mode. EC2 has no DryRun for (Un)AssignPrivateIpAddresses and
    (Un)AssignIpv6Addresses, so those steps are named, not checked; AssociateAddress has."""
    cfg = ctx.config_as(Config)
    with Runtime(ctx, cfg.aws) as rt:
        seen = observe(rt, ctx, cfg, check_eni=True)
        apply(rt, ctx, cfg, seen, plan(seen, cfg.ip), check=True)
    return OCF.SUCCESS
