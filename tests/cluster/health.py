"""aws-health in the lab cluster: its example configuration, its attribute, AWS's events.

- `health_crm`: the clone and the node-health strategy of crm-examples/aws-health.crm (or
  aws-health-custom.crm), with the lab's endpoint and a shorter monitor interval;
- `health_values`: `#health-aws` of every node, read with attrd_updater inside a node;
- `announce`: what AWS does for a scheduled event: the node's IMDS lists it from now on, and at
  its NotBefore the lab shuts the node down as EC2 would (lab.power's event actions).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from lab.imds import scheduled_event

from .examples import instantiate

if TYPE_CHECKING:
    from lab import Lab

    from .cluster import Cluster

ATTRIBUTE = "#health-aws"
RESOURCE = "rsc_aws_health"
CLONE = "cln_aws_health"
EXAMPLES = {"migrate-on-red": "aws-health.crm", "custom": "aws-health-custom.crm"}
# The lab's monitor interval: the examples' 10 s only delays the start of the move after AWS
# announces an event (announced days ahead on EC2); 2 s keeps the scenarios short.
LAB_INTERVAL = "2s"
# The lab's grace period from EC2's shutdown signal to the hard stop: long enough for the lab
# cluster's clean stop (a few seconds); EC2's own is minutes (lab.power.DEFAULT_GRACE).
LAB_GRACE = 60.0
ATTRD_LINE = re.compile(r'name="([^"]*)" host="([^"]*)" value="([^"]*)"')


def health_crm(
    lab: Lab,
    strategy: str = "migrate-on-red",
    *,
    interval: str = LAB_INTERVAL,
    params: Mapping[str, str] | None = None,
) -> str:
    """The aws-health clone and the strategy property of the example, for the lab."""
    crm = instantiate(EXAMPLES[strategy], {}, only=[RESOURCE, CLONE, "property"])
    added = " ".join(
        f"{k}={v}" for k, v in {"endpoint_url": lab.endpoint_url, **(params or {})}.items()
    )
    return "\n".join(_for_lab(line, added, interval) for line in crm.splitlines()) + "\n"


def _for_lab(statement: str, added: str, interval: str) -> str:
    if not statement.startswith(f"primitive {RESOURCE} "):
        return statement
    if " params " in statement:
        statement = statement.replace(" params ", f" params {added} ", 1)
    else:
        agent = "ocf:ipfailover:aws-health"
        statement = statement.replace(agent, f"{agent} params {added}", 1)
    # its monitor every `interval`
    head, *ops = statement.split(" op ")
    ops = [
        re.sub(r"\binterval=\S+", f"interval={interval}", op) if op.startswith("monitor ") else op
        for op in ops
    ]
    return " op ".join([head, *ops])


def health_values(cluster: Cluster, node: str | None = None) -> dict[str, str]:
    """Node -> its `#health-aws` value, for the nodes that have one."""
    proc = cluster.exec(
        node or cluster.any_node(), ["attrd_updater", "--query", "--all", "--name", ATTRIBUTE]
    )
    return {m.group(2): m.group(3) for m in ATTRD_LINE.finditer(proc.stdout)}


def drop_strategy(cluster: Cluster) -> None:
    """Back to Pacemaker's default node-health-strategy (none)."""
    cluster.exec(
        cluster.any_node(),
        ["crm_attribute", "--type", "crm_config", "--name", "node-health-strategy", "--delete"],
    )


def announce(
    lab: Lab, node: str, code: str, ahead: float, grace: float = LAB_GRACE
) -> tuple[float, dict[str, str]]:
    """AWS schedules an event of `code` for `node`'s instance, NotBefore `ahead` seconds from
    now (on a whole second, as IMDS gives it); the lab carries it out then. Returns
    (NotBefore as time.time(), the event as IMDS lists it)."""
    at = float(int(time.time() + ahead) + 1)
    event = scheduled_event(code, datetime.fromtimestamp(at, timezone.utc))
    lab.set_instance_events(node, scheduled=[event])
    lab.schedule_event_action(node, at, code, grace=grace, event_id=event["EventId"])
    return at, event
