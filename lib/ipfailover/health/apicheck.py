"""aws-health's API check: could this node do its failover job now?

For every ocf:ipfailover IP resource of the configuration, its own agent's validate-all runs
here in check mode (its declaration parses the resource's parameters; its observe, plan and
``apply(check=True)`` ask EC2): EC2 reachable, credentials valid, and the DryRun of each change
the resource would make on this node. A DryRun is made once per (EC2 action, principal) per
check, as the calls draw from the same throttling buckets as a failover. Nothing is changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import import_module
from typing import Any, Optional

from ipfailover.health.cluster import Primitive
from ocf_shim import Context, Deadline, OCFError, get_log

log = get_log("ipfailover")

DECLARATIONS = {
    "aws-secip": "ipfailover.secip.declaration",
    "aws-overlayip": "ipfailover.overlayip.declaration",
    "aws-eni": "ipfailover.eni.declaration",
}


@contextlib.contextmanager
def dry_runs_once(principal: list[Any], done: set[tuple[str, Any]]) -> Iterator[None]:
    """While inside: a DryRun already made for the same (operation, ``principal[0]``) passes
    without a call. The one place every agent's DryRun goes through is ``Api.dry_run``."""
    from ipfailover.aws.client import Api

    original = Api.dry_run

    def dry_run(self: Api, operation: str, **kwargs: Any) -> None:
        key = (operation, principal[0])
        if key in done:
            log.debug("DryRun %s for this principal already checked", operation)
            return
        original(self, operation, **kwargs)
        done.add(key)

    setattr(Api, "dry_run", dry_run)  # noqa: B010 - swapped back below
    try:
        yield
    finally:
        setattr(Api, "dry_run", original)  # noqa: B010


def check(ctx: Context, resources: list[Primitive], budget: float) -> tuple[Optional[bool], str]:
    """(True, summary) when every IP resource's check passed, (False, why) at the first that did
    not, (None, why) when there is nothing to check."""
    ips = [r for r in resources if r.type in DECLARATIONS]
    if not ips:
        return None, "no ocf:ipfailover IP resource in the configuration"
    deadline = Deadline(budget, margin_s=0.0)
    principal: list[Any] = [None]
    done: set[tuple[str, Any]] = set()
    with dry_runs_once(principal, done):
        for resource in ips:
            agent = import_module(DECLARATIONS[resource.type]).AGENT
            env = {f"OCF_RESKEY_{name}": value for name, value in resource.params.items()}
            try:
                params = agent.read_params(env)  # the agent's own parsing and checks
                cfg = agent.config(params)
                aws = cfg.aws
                principal[0] = (aws.profile, aws.role_arn, aws.region, aws.endpoint_url)
                sub = Context(
                    agent=agent.name,
                    action="validate-all",
                    params=params,
                    config=cfg,
                    deadline=deadline,
                    log=ctx.log,
                    interval_ms=0,
                    is_probe=False,
                    resource=resource.id,
                    environ=ctx.environ,
                )
                agent.handlers["validate-all"](sub)
            except OCFError as exc:
                return False, f"{resource.id} ({resource.type}): {exc.reason}"
            except Exception as exc:  # noqa: BLE001 - a check never fails the monitor
                return False, f"{resource.id} ({resource.type}): {type(exc).__name__}: {exc}"
    return True, f"{len(ips)} IP resource(s), {len(done)} DryRun call(s)"
