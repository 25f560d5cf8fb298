"""aws-secip's monitor entry point, and this agent's record of what start added (HA_RSCTMP).

Every monitor starts here. When the AWS check is not due (``monitor_api=deep`` below the deep
check level, or ``false``) and the address is on the interface as this agent's start recorded
adding it, it is running: nothing else is imported (no plan, dataclasses, typing or AWS module),
so that the monitor that runs every few seconds costs little more than starting Python (issue
16). A record means the address is not a primary one: start refuses those, and an ENI's primary
address never changes. Every other case goes to :func:`ipfailover.secip.actions.monitor`.
"""

from __future__ import annotations

from ipfailover.runtime import Runtime, aws_check_due
from ipfailover.secip.declaration import NAME, Config, same_ip
from ocf_shim import OCF, Context, get_log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipfailover.config.params import IPAddress

log = get_log("ipfailover")


def monitor(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    if not aws_check_due(ctx, cfg.monitor_api):
        with Runtime(ctx, cfg.aws) as rt:
            link = rt.netlink.link_by_name(cfg.interface)
            wanted = str(cfg.ip)
            if (
                link is not None
                and is_recorded(ctx, link.mac, cfg.ip)
                and any(a.ip == wanted for a in rt.netlink.addresses(link.index))
            ):
                return OCF.SUCCESS
    from ipfailover.secip import actions

    return actions.monitor(ctx)


def record_path(ctx: Context, mac: str, ip: IPAddress) -> str:
    from ipfailover.host import record

    return record.path_in(ctx.environ, f"{NAME}-{mac.replace(':', '')}-{ip}.json".replace(":", "_"))


def is_recorded(ctx: Context, mac: str, ip: IPAddress) -> bool:
    """Whether this agent's start recorded adding ``ip`` on the interface with ``mac``."""
    from ipfailover.host import record

    path = record_path(ctx, mac, ip)
    data = record.read(path)
    if data is None:
        return False
    try:
        ok = same_ip(ip, record.text(data, "ip")) and record.text(data, "mac") == mac
    except ValueError as exc:
        record.ignored(path, str(exc))
        return False
    if not ok:
        record.ignored(path, "it is about another address or interface")
    return ok
