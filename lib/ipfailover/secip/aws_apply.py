"""aws-secip's EC2 side, applied: who holds the address, the subnet check, the move (assign, or
unassign then assign for IPv6), the wait for EC2 to show it, and the Elastic IP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ipfailover.runtime import Runtime
from ipfailover.secip.declaration import Config
from ipfailover.secip.plan import (
    Holding,
    Plan,
    aws_problems,
    eip_points_here,
    holding,
    poll_interval,
    subnet_prefixlen,
    subnet_problem,
)
from ocf_shim import ConfigError, Context, OCFError, get_log

if TYPE_CHECKING:
    from ipfailover.aws.client import Api
    from ipfailover.aws.ec2 import Address
    from ipfailover.aws.instance import InterfaceFacts
    from ipfailover.config.params import IPAddress

log = get_log("ipfailover")


def describe_holding(api: Api, ip: IPAddress) -> Holding:
    """One DescribeNetworkInterfaces call filtered by the address."""
    from ipfailover.aws import ec2

    key = "addresses.private-ip-address" if ip.version == 4 else "ipv6-addresses.ipv6-address"
    return holding(ip, ec2.describe_enis(api, filters={key: [str(ip)]}))


def _subnet_blocks(rt: Runtime, cfg: Config, facts: InterfaceFacts) -> list[str]:
    """The CIDR blocks of the ENI's subnet of the address's family: IMDS, else DescribeSubnets."""
    from ipfailover.aws import ec2

    if cfg.version == 4 and facts.subnet_cidr:
        return [facts.subnet_cidr]
    if cfg.version == 6:
        text = rt.imds.get_optional(
            f"meta-data/network/interfaces/macs/{facts.mac}/subnet-ipv6-cidr-blocks"
        )
        blocks = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if blocks:
            return blocks
    subnet = ec2.describe_subnet(rt.api(), facts.subnet_id)
    return [subnet.cidr] if cfg.version == 4 else list(subnet.ipv6_cidrs)


def check_subnet(rt: Runtime, cfg: Config, facts: InterfaceFacts) -> int:
    """Raise ConfigError unless the address belongs to the ENI's subnet; the OS prefix length."""
    blocks = _subnet_blocks(rt, cfg, facts)
    problem = subnet_problem(cfg.ip, facts.subnet_id, blocks, facts.eni_id)
    if problem:
        raise ConfigError(problem)
    if cfg.cidr_netmask is not None:
        return cfg.cidr_netmask
    prefix = subnet_prefixlen(cfg.ip, blocks)
    assert prefix is not None  # subnet_problem found the block
    return prefix


def describe_eip(api: Api, cfg: Config) -> Optional[Address]:
    from ipfailover.aws import ec2

    if cfg.eip_allocation_id is None:
        return None
    return ec2.describe_address(api, cfg.eip_allocation_id)


def describe_both(api: Api, cfg: Config, with_eip: bool) -> tuple[Holding, Optional[Address]]:
    """The holder of the address and (``with_eip``) the Elastic IP, read at the same time."""
    if not with_eip or cfg.eip_allocation_id is None:
        return describe_holding(api, cfg.ip), None
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        later = pool.submit(describe_eip, api, cfg)
        held = describe_holding(api, cfg.ip)
        return held, later.result()


def move(api: Api, cfg: Config, eni_id: str, plan: Plan, ctx: Context) -> None:
    """Move the address to our ENI (IPv4: reassign; IPv6: release from the holders, assign)."""
    from ipfailover.aws import ec2
    from ipfailover.aws.errors import INVALID_PARAMETER_VALUE, error_code

    ip = str(cfg.ip)
    if cfg.version == 4:
        ec2.assign_private_ip(api, eni_id, ip, allow_reassignment=True)
        return
    for holder in plan.take_from:
        ec2.unassign_ipv6(api, holder, ip)
        log.info("unassigned %s from %s (IPv6 cannot be reassigned)", ip, holder)
    if not plan.assign:
        return
    attempt = 0
    while True:
        try:
            ec2.assign_ipv6(api, eni_id, ip)
            return
        except OCFError as exc:
            if error_code(exc) != INVALID_PARAMETER_VALUE:
                raise
            # EC2 may still show the previous holder for a moment after the unassign.
            others = describe_holding(api, cfg.ip).others(eni_id)
            if not others:
                raise
            for holder in others:
                ec2.unassign_ipv6(api, holder, ip)
            ctx.deadline.sleep(
                poll_interval(attempt), f"waiting for {', '.join(others)} to release {ip}"
            )
            attempt += 1


def wait_for_aws(
    api: Api, cfg: Config, eni_id: str, ctx: Context, with_eip: bool
) -> tuple[Holding, Optional[Address]]:
    """Poll at short intervals until EC2 shows the address (and the EIP) on our ENI."""
    attempt = 0
    while True:
        held, eip = describe_both(api, cfg, with_eip)
        problems = aws_problems(cfg.ip, eni_id, held, eip)
        if not problems:
            return held, eip
        ctx.deadline.sleep(
            poll_interval(attempt), f"waiting for EC2 to confirm the move ({'; '.join(problems)})"
        )
        attempt += 1


def ensure_eip(api: Api, cfg: Config, eni_id: str, known: Optional[Address], ctx: Context) -> None:
    """Point the Elastic IP at the address on our ENI, unless ``known`` says it already does."""
    from ipfailover.aws import ec2

    if cfg.eip_allocation_id is None or known is None:
        return
    if eip_points_here(known, eni_id, cfg.ip):
        return
    ec2.associate_address(api, cfg.eip_allocation_id, eni_id, str(cfg.ip))
    log.info("associated Elastic IP %s with %s on %s", known.public_ip, cfg.ip, eni_id)
    wait_for_aws(api, cfg, eni_id, ctx, with_eip=True)
