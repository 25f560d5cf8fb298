"""aws-eni: a whole Elastic Network Interface moved to this instance, with policy routing.

AWS side: the ENI is attached to this instance (detached from its previous holder first, forced
only when ``force_detach`` allows it). OS side: the hot-plugged link with the ENI's MAC is up and
carries the ENI's private addresses, and (``policy_routing``) a rule per ENI address sends
traffic from it to a routing table of this resource that holds the subnet route and a default
route via the subnet's router, so that replies leave through the ENI. Stop removes the OS side and
detaches the ENI when, and only when, it is attached to this instance.

Every wait polls ``DescribeNetworkInterfaces`` at short intervals inside the action's deadline.

start and validate-all share one :func:`observe` and one pure plan (``attachment.plan_start``):
start applies it, validate-all applies it in check mode (:func:`apply` with ``check``: DryRun).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ipfailover.eni.attachment import Attach, Detach, Step, attached_here, holder, plan_start
from ipfailover.eni.aws_apply import (
    EniNotFound,
    bring_here,
    check_zone,
    describe,
    primary_problem,
    release,
)
from ipfailover.eni.declaration import Config
from ipfailover.eni.os_apply import configure_os, release_os
from ipfailover.eni.os_apply import observe as observe_os
from ipfailover.eni.os_plan import (
    eni_facts,
    foreign_rules,
    monitor_problems,
    same_eni,
    wanted_os,
)
from ipfailover.eni.record import (
    any_record,
    load_record,
    record_names,
    record_path,
    remove_record,
    save_record,
)
from ipfailover.eni.watch import os_check, record_check
from ipfailover.runtime import Runtime, aws_check, aws_check_due
from ocf_shim import OCF, ArgsError, ConfigError, Context, GenericError, OCFError, get_log

if TYPE_CHECKING:
    from ipfailover.aws.client import Api
    from ipfailover.aws.ec2 import Eni, Subnet

log = get_log("ipfailover")


@dataclass(frozen=True)
class Observation:
    instance_id: str
    eni: Eni


def observe(rt: Runtime, cfg: Config, check_zone_always: bool = False) -> Observation:
    """This instance and the ENI; refuse a primary ENI, and one of another zone unless it is
    attached here already (``check_zone_always``: validate-all checks the zone anyway)."""
    from ipfailover.aws import instance

    instance_id = instance.instance_id(rt.imds)
    eni = describe(rt.api(), cfg.eni_id)
    problem = primary_problem(eni)
    if problem:
        raise ConfigError(problem)
    if check_zone_always or not attached_here(eni, instance_id):
        check_zone(rt, eni)
    return Observation(instance_id, eni)


def plan(cfg: Config, seen: Observation) -> tuple[Step, ...]:
    return plan_start(
        seen.eni, seen.instance_id, cfg.device_index, cfg.force_detach, cfg.policy_routing
    )


def apply(
    ctx: Context,
    rt: Runtime,
    cfg: Config,
    seen: Observation,
    steps: tuple[Step, ...],
    *,
    check: bool = False,
) -> None:
    """Bring the ENI here and configure the OS; or (``check``) the DryRun call of each EC2 step
    and no change at all."""
    from ipfailover.aws import ec2

    api = rt.api()
    if check:
        for step in steps:
            if isinstance(step, Detach):
                ec2.detach_eni(api, step.attachment_id, force=step.may_force, dry_run=True)
            elif isinstance(step, Attach):
                ec2.attach_eni(api, step.eni_id, step.instance_id, step.device_index, dry_run=True)
        return
    instance_id, eni = seen.instance_id, seen.eni
    subnets: list[Subnet] = []
    subnet_id = eni.subnet_id

    def prepare() -> None:
        """What start needs after the move; done while EC2 detaches or attaches."""
        subnets.append(ec2.describe_subnet(api, subnet_id))
        rt.netlink.prepare_changes()

    if any(isinstance(step, Attach) for step in steps):
        eni = bring_here(ctx, api, cfg, instance_id, eni, while_waiting=prepare)
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
    link = configure_os(ctx, rt.netlink, cfg, wanted)
    log.info(
        "%s is active on %s (%s) after %.1fs, %d API calls",
        cfg.eni_id,
        link.name,
        ", ".join(facts.ips),
        ctx.deadline.elapsed(),
        rt.api_calls(),
    )


def start(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    with Runtime(ctx, cfg.aws) as rt:
        rt.netlink.check_changes_possible()  # before the ENI leaves another node
        seen = observe(rt, cfg)
        apply(ctx, rt, cfg, seen, plan(cfg, seen))
    return OCF.SUCCESS


def stop(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    from ipfailover.aws import instance

    with Runtime(ctx, cfg.aws) as rt:
        try:
            instance_id = instance.instance_id(rt.imds)
        except OCFError as exc:
            # Without the metadata service there are no credentials for EC2 either: remove the
            # OS side from the record, then say that the detach could not be done (1).
            record = any_record(ctx.environ, cfg.eni_id)
            if record is not None:
                release_os(rt.netlink, cfg, record.mac, record.ips)
            raise GenericError(
                f"{'removed' if record else 'without a record, left'} the OS configuration of "
                f"{cfg.eni_id}, but cannot tell whether it is still attached here: this "
                f"instance's id is unknown ({exc.reason})"
            ) from None
        path = record_path(ctx.environ, cfg.eni_id, instance_id)
        record = load_record(path, cfg.eni_id)
        # The OS side first, from what start recorded: it goes whatever EC2 says or does.
        release_os(rt.netlink, cfg, record.mac if record else None, record.ips if record else ())
        try:
            eni: Optional[Eni] = describe(rt.api(), cfg.eni_id)
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
            release_os(rt.netlink, cfg, eni.mac, [*eni.private_ips, *eni.ipv6s])
            who = holder(eni)
            if who == instance_id:
                release(ctx, rt.api(), cfg, instance_id, eni)
            elif who is not None:
                log.info("%s is attached to %s: left alone", cfg.eni_id, who)
        remove_record(path)
    return OCF.SUCCESS


def monitor(ctx: Context) -> int:
    """The AWS check (and the OS side) when due; else the OS side alone (:mod:`.watch`, where
    every monitor starts)."""
    cfg = ctx.config_as(Config)
    with Runtime(ctx, cfg.aws) as rt:
        if not aws_check_due(ctx, cfg.monitor_api):
            return os_check(ctx, rt, cfg)
        from ipfailover.aws import ec2, instance
        from ipfailover.aws.errors import ENI_NOT_FOUND, error_code

        try:
            instance_id = instance.instance_id(rt.imds)
        except OCFError as exc:
            # No metadata service, so no credentials either: like EC2 being unreachable, judge
            # by the OS side (the record names the ENI's MAC and addresses).
            log.warning(
                "cannot learn this instance's id (%s): judging %s by the OS side only",
                exc.reason,
                cfg.eni_id,
            )
            record = any_record(ctx.environ, cfg.eni_id)
            damaged = record is None and bool(record_names(ctx, cfg.eni_id))
            return record_check(ctx, rt.netlink, cfg, record, damaged)
        path = record_path(ctx.environ, cfg.eni_id, instance_id)
        record = load_record(path, cfg.eni_id)
        damaged = record is None and os.path.lexists(path)

        def look() -> tuple[Api, Eni]:
            api = rt.api()
            return api, ec2.describe_eni(api, cfg.eni_id)

        checked = aws_check(look, cfg.eni_id, lambda exc: error_code(exc) == ENI_NOT_FOUND)
        if checked is None:
            return record_check(ctx, rt.netlink, cfg, record, damaged)
        api, eni = checked
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
        problems = monitor_problems(wanted, observe_os(rt.netlink, eni.mac, cfg.table))
    if problems:
        log.warning(
            "%s is attached here but its OS configuration is incomplete (removed by another "
            "program?): %s",
            cfg.eni_id,
            "; ".join(problems),
        )
        return OCF.NOT_RUNNING
    return OCF.SUCCESS


def device_index_user(api: Api, cfg: Config, seen: Observation) -> Optional[str]:
    """Another ENI attached to this instance at ``device_index``, if any."""
    from ipfailover.aws import ec2

    for other in ec2.describe_enis(api, filters={"attachment.instance-id": [seen.instance_id]}):
        att = other.attachment
        if other.id != seen.eni.id and att is not None and att.device_index == cfg.device_index:
            return other.id
    return None


def validate(ctx: Context) -> int:
    """start's plan in check mode, and what start cannot see coming: the device index taken on
    this instance, a rule of another program at this resource's table and priority."""
    cfg = ctx.config_as(Config)
    with Runtime(ctx, cfg.aws) as rt:
        rt.netlink.check_changes_possible()
        seen = observe(rt, cfg, check_zone_always=True)
        taken = device_index_user(rt.api(), cfg, seen)
        if taken:
            raise ArgsError(
                f"device index {cfg.device_index} of this instance is used by {taken}: "
                "choose another device_index"
            )
        apply(ctx, rt, cfg, seen, plan(cfg, seen), check=True)
        foreign = foreign_rules(rt.netlink.rules(), cfg.table, cfg.priority)
        if foreign:
            rule = foreign[0]
            raise ArgsError(
                f"rule 'from {rule.src or 'all'} lookup {rule.table} priority {rule.priority}' "
                f"collides with this resource's table {cfg.table} / priority {cfg.priority}: "
                "choose another route_table_id and rule_priority"
            )
    return OCF.SUCCESS
