"""aws-eni's EC2 side, applied: describe the ENI, detach and attach it, and the waits that bring it
here or release it, inside the action's deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional

from ipfailover.eni.attachment import (
    DESCRIBE_ALLOWANCE,
    Action,
    Move,
    Progress,
    force_after,
    holder,
    next_move,
    next_release_move,
    poll_interval,
    stuck_reason,
)
from ipfailover.eni.declaration import Config
from ipfailover.runtime import Runtime
from ocf_shim import ArgsError, ConfigError, Context, Deadline, GenericError, OCFError, get_log

if TYPE_CHECKING:
    from ipfailover.aws.client import Api
    from ipfailover.aws.ec2 import Eni

log = get_log("ipfailover")


class EniNotFound(ConfigError):
    """The configured ENI does not exist (exit 6)."""


def describe(api: Api, eni_id: str) -> Eni:
    """The ENI; its absence is a configuration error (exit 6)."""
    from ipfailover.aws import ec2
    from ipfailover.aws.errors import (
        ENI_NOT_FOUND,
        error_code,
    )

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


def check_zone(rt: Runtime, eni: Eni) -> None:
    zone = _availability_zone(rt)
    if eni.az and zone and eni.az != zone:
        raise ArgsError(
            f"{eni.id} is in availability zone {eni.az} but this instance is in {zone}: an ENI "
            "can only be attached to instances of its own zone"
        )


def _detach(api: Api, attachment_id: str, force: bool) -> None:
    from ipfailover.aws import ec2
    from ipfailover.aws.errors import (
        IGNORED_DETACH_ERRORS,
        error_code,
    )

    try:
        ec2.detach_eni(api, attachment_id, force=force)
    except OCFError as exc:
        if error_code(exc) in IGNORED_DETACH_ERRORS:
            log.debug("detach of %s: %s (looking again)", attachment_id, exc.reason)
            return
        raise


def _attach(api: Api, cfg: Config, instance_id: str) -> None:
    from ipfailover.aws import ec2
    from ipfailover.aws.errors import (
        RACE_ATTACH_ERRORS,
        error_code,
    )

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


def bring_here(
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
    from ipfailover.aws import ec2

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


def release(ctx: Context, api: Api, cfg: Config, instance_id: str, eni: Eni) -> Eni:
    """Detach from this instance (if attached here) and wait until it is off this instance."""
    from ipfailover.aws import ec2

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
