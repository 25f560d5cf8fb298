"""aws-overlayip's OS side as monitor and stop see it, and the monitor's entry point.

Every monitor starts here. When the AWS check is not due (``monitor_api=deep`` below the deep
check level, or ``false``), the OS side alone decides and nothing else is imported: no plan, no
dataclasses, typing or AWS module, so that the monitor that runs every few seconds costs little
more than starting Python (issue 16). Otherwise :func:`ipfailover.overlayip.actions.monitor`
runs, which begins with the same OS check.
"""

from __future__ import annotations

from ipfailover.overlayip.declaration import Config
from ipfailover.runtime import Runtime, aws_check_due
from ocf_shim import OCF, Context, get_log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

    from ipfailover.host.netlink import Link

log = get_log("ipfailover")


def monitor(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    if aws_check_due(ctx, cfg.monitor_api):
        from ipfailover.overlayip import actions

        return actions.monitor(ctx)
    with Runtime(ctx, cfg.aws) as rt:
        return OCF.NOT_RUNNING if configured_link(ctx, rt, cfg) is None else OCF.SUCCESS


def configured_link(ctx: Context, rt: Runtime, cfg: Config) -> Optional[Link]:
    """The interface, when the address is on it as start adds it; else None (said in the log)."""
    link = rt.netlink.link_by_name(cfg.interface)
    if link is not None and configured(rt, cfg, link.index):
        return link
    note = others_note(rt, cfg, link.index) if link is not None else None
    if note:
        log.warning("%s", note)
    elif not ctx.is_probe:
        log.info("%s is not configured on %s", cfg.ip, cfg.interface)
    return None


def configured(rt: Runtime, cfg: Config, index: int) -> bool:
    """Whether the address is on the interface as start adds it: /32 (IPv4) or /128 (IPv6).

    The same address with another prefix length is not this resource's (start never adds it so):
    e.g. the node's own address, in a misconfiguration. It is neither reported as running nor
    removed.
    """
    wanted = str(cfg.ip)
    return any(
        a.ip == wanted and a.prefixlen == cfg.ip.max_prefixlen for a in rt.netlink.addresses(index)
    )


def others_note(rt: Runtime, cfg: Config, index: int) -> Optional[str]:
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
