"""aws-secip's OS side, observed and recorded: the address on the interface, the record of what
start added (HA_RSCTMP), and the verdict on whether the address is this node's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional

from ipfailover.runtime import Runtime
from ipfailover.secip.declaration import Config
from ipfailover.secip.plan import (
    UNSURE,
    Holding,
    Verdict,
    primary_verdict,
)
from ipfailover.secip.watch import is_recorded, record_path
from ocf_shim import Context, OCFError

if TYPE_CHECKING:
    from ipfailover.config.params import IPAddress
    from ipfailover.host.netlink import Addr, Link


def save_record(ctx: Context, link: Link, ip: IPAddress, prefix: int) -> None:
    from ipfailover.host import record

    data = {"ip": str(ip), "prefixlen": prefix, "mac": link.mac, "interface": link.name}
    record.write(record_path(ctx, link.mac, ip), data)


def link_entries(rt: Runtime, cfg: Config, link: Link) -> list[Addr]:
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


def link_verdict(
    rt: Runtime,
    ctx: Context,
    cfg: Config,
    link: Link,
    entries: Sequence[Addr],
    *,
    held: Optional[Holding] = None,
    eni_id: Optional[str] = None,
    os_only: bool = False,
) -> Verdict:
    """Whether the address found on the interface is a primary address, from the kernel, this
    agent's record, IMDS and (when given) EC2; an UNSURE verdict's ``why`` tells what to do.

    ``os_only`` (the monitor without the AWS check): when this agent's start recorded adding the
    address, IMDS is not asked; start refused a primary address, and an ENI's primary address
    never changes. The monitor then needs no HTTP client (its CPU cost, issue 16)."""
    from ipfailover.host import record

    recorded = is_recorded(ctx, link.mac, cfg.ip)
    ips, imds_trouble = None, ""
    if not recorded or (cfg.version == 4 and not os_only):
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
