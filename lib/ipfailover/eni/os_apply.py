"""aws-eni's OS side, applied through netlink: observe, configure and release the link's
addresses, policy rules and routes.
"""

from __future__ import annotations

import ipaddress

from ipfailover.eni.declaration import Config
from ipfailover.eni.os_plan import (
    ObservedOs,
    OsPlan,
    WantedOs,
    foreign_rules,
    os_problems,
    own_rules,
    plan_os,
    route_key,
    route_text,
    rule_src,
)
from ocf_shim import Context, GenericError, get_log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Optional

    from ipfailover.host.netlink import Link, Netlink, RouteEntry, Rule

log = get_log("ipfailover")


def observe(nl: Netlink, mac: str, table: int) -> ObservedOs:
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
            ", ".join(route_text(key) for key in plan.set_routes),
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


def configure_os(ctx: Context, nl: Netlink, cfg: Config, wanted: WantedOs) -> Link:
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
    observed = observe(nl, wanted.mac, cfg.table)
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
        observed = observe(nl, wanted.mac, cfg.table)
        left = plan_os(wanted, observed)
        if not left.empty:
            raise GenericError(
                f"the OS configuration of {cfg.eni_id} did not take: "
                + "; ".join(os_problems(left, wanted, link.name))
            )
    return observed.link or link


def release_os(nl: Netlink, cfg: Config, mac: Optional[str], ips: Sequence[str]) -> None:
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
        return [r for r in own_rules(nl.rules(), cfg.table, cfg.priority) if rule_src(r) in sources]

    def routes() -> list[RouteEntry]:
        index = link.index if link is not None else None
        return [r for r in nl.routes(cfg.table) if index is not None and r.oif == index]

    for rule in rules():
        assert rule.src is not None
        nl.del_rule(rule.src, cfg.table, cfg.priority)
        log.info("removed rule from %s lookup %d", rule.src, cfg.table)
    for route in routes():
        nl.del_route(cfg.table, route.dst, route.oif, route.family)
        log.info("removed route %s from table %d", route_text(route_key(route)), cfg.table)
    if link is not None:
        for addr in nl.addresses(link.index):
            if addr.ip in wanted:
                nl.del_address(link.index, addr.ip, addr.prefixlen)
                log.info("removed %s/%d from %s", addr.ip, addr.prefixlen, link.name)
    left = [f"rule from {r.src}" for r in rules()]
    left += [f"route {route_text(route_key(r))}" for r in routes()]
    if link is not None:
        left += [f"address {a.ip}" for a in nl.addresses(link.index) if a.ip in wanted]
    if left:
        raise GenericError(f"could not remove {', '.join(left)} of {cfg.eni_id}")
