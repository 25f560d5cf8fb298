"""aws-eni's monitor entry point and its OS-only check.

Every monitor starts here. When the AWS check is not due (``monitor_api=deep`` below the deep
check level, or ``false``), the OS side alone decides, from this node's record of the ENI: no
metadata request, no AWS module, and not the attach/detach decision table, so that the monitor
that runs every few seconds stays cheap (issue 16). Otherwise
:func:`ipfailover.eni.actions.monitor` runs.
"""

from __future__ import annotations

from ipfailover.eni.declaration import Config
from ipfailover.eni.os_apply import observe as observe_os
from ipfailover.eni.os_plan import monitor_problems, own_rules, wanted_os
from ipfailover.eni.record import any_record, record_names, state_dir
from ipfailover.runtime import Runtime, aws_check_due
from ocf_shim import OCF, Context, GenericError, get_log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

    from ipfailover.eni.os_plan import EniFacts
    from ipfailover.host.netlink import Netlink

log = get_log("ipfailover")


def monitor(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    if aws_check_due(ctx, cfg.monitor_api):
        from ipfailover.eni import actions

        return actions.monitor(ctx)
    with Runtime(ctx, cfg.aws) as rt:
        return os_check(ctx, rt, cfg)


def os_check(ctx: Context, rt: Runtime, cfg: Config) -> int:
    """The OS side alone, from this node's record of the ENI (the runtime directory is the
    node's own, so the record found is this instance's): no metadata service."""
    record = any_record(ctx.environ, cfg.eni_id)
    damaged = record is None and bool(record_names(ctx, cfg.eni_id))
    return record_check(ctx, rt.netlink, cfg, record, damaged)


def record_check(
    ctx: Context, nl: Netlink, cfg: Config, record: Optional[EniFacts], damaged: bool = False
) -> int:
    """The OS-only check, from what start recorded (``damaged``: a record exists but could not
    be used, so a start did run here: "not running" would be a guess)."""
    if record is None:
        if damaged:
            raise GenericError(
                f"cannot tell whether {cfg.eni_id} is running here: its record in "
                f"{state_dir(ctx)} is unusable (see the warning) and EC2 cannot be asked"
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
    problems = monitor_problems(wanted, observe_os(nl, record.mac, cfg.table))
    if problems:
        log.warning("%s is not working on this node: %s", cfg.eni_id, "; ".join(problems))
        return OCF.NOT_RUNNING
    return OCF.SUCCESS
