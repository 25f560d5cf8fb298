"""aws-health's parameters and their checks (``parse_config``), and its ``AGENT``; the actions
are in :mod:`ipfailover.health.actions`, the decisions in :mod:`ipfailover.health.events`."""

from __future__ import annotations

from ipfailover.config.params import AWS_PARAMETERS, declare, flag, integer, parse_aws_settings
from ipfailover.config.syntax import quote
from ocf_shim import ConfigError, Parameter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional

    from ipfailover.config.params import AwsSettings, Value

NAME = "aws-health"
HEALTH_ATTRIBUTE = "#health-aws"
CLAIM_ATTRIBUTE = "aws-health-event"
HOLD_ATTRIBUTE = "aws-health-hold"
DEFAULT_LEAD_TIME = 3600
DEFAULT_HOLD_TIME = 600
DEFAULT_API_INTERVAL = 300
MIN_API_INTERVAL = 60

PARAMETERS = (
    Parameter(
        "lead_time",
        "Seconds before an event to turn red",
        "How long before the NotBefore time of an active scheduled event (reboot, stop, "
        "retirement, maintenance) this node's #health-aws turns red, so that the cluster moves "
        "its resources while the node is still fine. The default, one hour, leaves time for a "
        "slow move (an SAP HANA takeover takes minutes) to fail once and be retried, and for an "
        "administrator to act on a node that is on hold; AWS announces these events days "
        "ahead, so a longer lead costs nothing but an earlier move. A spot interruption notice "
        "(two minutes) turns the node red at once.",
        type="integer",
        default=DEFAULT_LEAD_TIME,
    ),
    Parameter(
        "hold_time",
        "Minimum seconds red",
        "Once red, the node stays red at least this long even if the event disappears from "
        "the instance metadata (cancelled, or rescheduled), so that resources do not move back "
        "and forth. After that it turns green once no event is due.",
        type="integer",
        default=DEFAULT_HOLD_TIME,
    ),
    Parameter(
        "check_api",
        "Check the EC2 API from this node",
        "When true, every api_interval seconds (with jitter) the agent checks that this node "
        "could do its failover job now: EC2 reachable, credentials valid, and one DryRun per "
        "EC2 action and principal that the ocf:ipfailover IP resources of the cluster "
        "configuration would make here (their own validate-all, in check mode). The result is "
        "the transient node attribute api_attribute (1 or 0), meant for a location rule of "
        "finite score below the IP resources' stickiness: it steers the choice of a new node "
        "and never moves or stops anything.",
        type="boolean",
        default=True,
    ),
    Parameter(
        "api_interval",
        "Seconds between API checks",
        f"How often the API check runs (at least {MIN_API_INTERVAL}; each run waits this long "
        "plus or minus 20 % at random, so the nodes do not ask at the same time). DryRun calls "
        "draw from the same EC2 throttling buckets as a failover: keep it rare.",
        type="integer",
        default=DEFAULT_API_INTERVAL,
    ),
    Parameter(
        "api_attribute",
        "Node attribute for the API check",
        "Name of the transient node attribute that gets 1 (the API check passed) or 0.",
        default="aws-api-ok",
    ),
    Parameter(
        "safe_attribute",
        "Node attribute a takeover node must have",
        "Optional: a transient node attribute that another node must have with the value "
        "safe_value before this node turns red, e.g. hana_prd_sync_state (SAPHanaSR) with "
        "safe_value SOK: the secondary must be in sync before a takeover is forced. Set both or "
        "neither.",
    ),
    Parameter(
        "safe_value",
        "Value of safe_attribute",
        "The value safe_attribute must have on the node that would take over (e.g. SOK).",
    ),
    *AWS_PARAMETERS,
)

LONGDESC = (
    "Turns AWS's announcements for this instance into the node health attribute #health-aws: red "
    "from lead_time seconds before the NotBefore time of an active scheduled event "
    "(system-reboot, instance-reboot, system-maintenance, instance-retirement, instance-stop) and"
    " at once for a spot interruption notice, so that the cluster moves the node's resources "
    "before AWS takes the node away; green when the instance metadata shows no event due. Events "
    "not in State active, and a rebalance recommendation (a risk, not a notice), are logged, not "
    "acted on. An unreadable metadata service changes nothing. A node turns red only when another"
    " node is online, not in standby or maintenance, green, and (safe_attribute) ready; of "
    "several nodes with events one at a time, the earliest NotBefore first, then by node name. A "
    "node with an event that cannot turn red yet publishes the reason in the transient attribute "
    "aws-health-hold (and its claim, the event's NotBefore, in aws-health-event). Run it as a "
    "clone on every node with the clone meta attribute allow-unhealthy-nodes=true (Pacemaker "
    "2.1.3 or later), and a node-health-strategy (migrate-on-red, or custom with location rules):"
    " validate-all refuses a clone without it. Optionally (check_api) it checks with DryRun calls"
    " that this node could do the IP resources' failover, as the attribute aws-api-ok. It needs "
    "the permissions of the IP agents' DryRun calls, no more."
)


class Config:
    """The parameters, checked."""

    __slots__ = (
        "api_attribute",
        "api_interval",
        "aws",
        "check_api",
        "hold_time",
        "lead_time",
        "safe_attribute",
        "safe_value",
    )

    def __init__(
        self,
        *,
        lead_time: int,
        hold_time: int,
        check_api: bool,
        api_interval: int,
        api_attribute: str,
        safe_attribute: Optional[str],
        safe_value: Optional[str],
        aws: AwsSettings,
    ) -> None:
        self.lead_time = lead_time
        self.hold_time = hold_time
        self.check_api = check_api
        self.api_interval = api_interval
        self.api_attribute = api_attribute
        self.safe_attribute = safe_attribute
        self.safe_value = safe_value
        self.aws = aws


def parse_seconds(params: Mapping[str, Value], name: str, default: int, least: int = 0) -> int:
    value = integer(params, name)
    if value is None:
        return default
    if not least <= value <= 30 * 86400:
        raise ConfigError(f"parameter {name!r}: {value} is outside {least}..{30 * 86400} seconds")
    return value


def parse_attribute_name(params: Mapping[str, Value], name: str) -> Optional[str]:
    """A node attribute name: printable, no blanks or quotes (it goes into attrd_updater -n)."""
    value = params.get(name)
    if value is None or value == "":
        return None
    text = str(value)
    if (
        len(text) > 128
        or not text.isprintable()
        or any(c in text for c in " \t\"'<>&=")
        or text.startswith("-")
    ):
        raise ConfigError(f"parameter {name!r}: {quote(text)} is not a node attribute name")
    return text


def parse_config(params: Mapping[str, Value]) -> Config:
    """Check the parameters (syntax only: nothing here asks AWS or the cluster)."""
    safe_attribute = parse_attribute_name(params, "safe_attribute")
    safe = params.get("safe_value")
    safe_value = str(safe) if safe is not None and safe != "" else None
    if (safe_attribute is None) != (safe_value is None):
        raise ConfigError("parameters 'safe_attribute' and 'safe_value': set both or neither")
    api_attribute = parse_attribute_name(params, "api_attribute") or "aws-api-ok"
    if api_attribute.startswith("#health"):
        raise ConfigError(
            f"parameter 'api_attribute': {quote(api_attribute)} would be a health attribute; "
            "the API check is a preference, never an eviction"
        )
    return Config(
        lead_time=parse_seconds(params, "lead_time", DEFAULT_LEAD_TIME),
        hold_time=parse_seconds(params, "hold_time", DEFAULT_HOLD_TIME),
        check_api=flag(params, "check_api", True),
        api_interval=parse_seconds(params, "api_interval", DEFAULT_API_INTERVAL, MIN_API_INTERVAL),
        api_attribute=api_attribute,
        safe_attribute=safe_attribute,
        safe_value=safe_value,
        aws=parse_aws_settings(params),
    )


AGENT = declare(
    __name__,
    name=NAME,
    shortdesc="AWS instance events as the node health attribute #health-aws",
    longdesc=LONGDESC,
    parameters=PARAMETERS,
    parse=parse_config,
    start=30,
    stop=30,
    deep_monitor=False,  # its monitor reads IMDS at every interval; there is no deeper check
)
