"""aws-health's actions: read the instance events, decide (events.decide), publish.

The state file (``aws-health-<resource>.json`` in HA_RSCTMP, a tmpfs: gone after a reboot, as
the transient attributes are) says the resource is started and what it last published, with
the time of the last positive metadata read: an unreadable metadata service keeps that, and the
log says how old it is.

Publishing order: the claim (aws-health-event) first, waited for until the cluster sees it; the
hold reason; then ``#health-aws``, waited for as well. After turning red the node reads the
cluster again and backs off if another node turned red with an earlier claim (the settle time
should make that impossible; this is the last line).
"""

from __future__ import annotations

import random
import time
from typing import Any, Optional

from ipfailover.health import cluster
from ipfailover.health.declaration import (
    CLAIM_ATTRIBUTE,
    HEALTH_ATTRIBUTE,
    HOLD_ATTRIBUTE,
    Config,
)
from ipfailover.health.events import (
    GREEN,
    RED,
    Decision,
    EventError,
    Memory,
    Reading,
    Settings,
    conflict,
    decide,
    read_events,
)
from ocf_shim import (
    OCF,
    ConfigError,
    Context,
    GenericError,
    NotInstalledError,
    OCFError,
    get_log,
    parse_bool,
)

log = get_log("ipfailover")

MIN_SETTLE = 5.0
MAX_SETTLE = 10.0
API_JITTER = 0.2
API_BUDGET = 12.0


# ---------------------------------------------------------------------------------- state file


def state_path(ctx: Context) -> str:
    from ipfailover.host import record

    name = "".join(c if c.isalnum() or c in "-_.:" else "_" for c in ctx.resource)[:100]
    return record.path_in(ctx.environ, f"aws-health-{name}.json")


def _number(data: dict[str, Any], key: str) -> Optional[float]:
    value = data.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _word(data: dict[str, Any], key: str) -> Optional[str]:
    value = data.get(key)
    return value if isinstance(value, str) and len(value) < 200 else None


def load(ctx: Context) -> Optional[dict[str, Any]]:
    """The state file (None: not started)."""
    from ipfailover.host import record

    return record.read(state_path(ctx))


def memory_of(state: dict[str, Any]) -> Memory:
    health = _word(state, "health")
    return Memory(
        health=health if health in (RED, GREEN) else None,
        since=_number(state, "since") or 0.0,
        read_at=_number(state, "read_at"),
        claim=_number(state, "claim"),
        claim_since=_number(state, "claim_since"),
        hold=_word(state, "hold"),
    )


def save(ctx: Context, memory: Memory, extra: dict[str, Any]) -> None:
    from ipfailover.host import record

    if not record.write(state_path(ctx), {**memory._asdict(), **extra}):
        raise GenericError(f"cannot write the state file {state_path(ctx)}")


# ---------------------------------------------------------------------------------- reading


def boot_time() -> float:
    """When this node booted (btime of /proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            for line in stat:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def read_imds(ctx: Context, cfg: Config) -> Optional[Reading]:
    """The events, or None (logged) when the metadata service cannot be read or makes no sense."""
    from ipfailover.runtime import Runtime

    with Runtime(ctx, cfg.aws) as rt:
        try:
            scheduled = rt.imds.get("meta-data/events/maintenance/scheduled")
            spot = rt.imds.get_optional("meta-data/spot/instance-action")
            rebalance = rt.imds.get_optional("meta-data/events/recommendations/rebalance")
            return read_events(scheduled, spot, rebalance, boot_time())
        except (OCFError, EventError) as exc:
            log.warning("cannot read the instance events: %s", getattr(exc, "reason", exc))
            return None


def settle_seconds(ctx: Context) -> float:
    """How long a claim must have been visible before red: longer than another node takes from
    reading the cluster to showing its red (one attrd write, waited for: about a second), and at
    least the monitor interval up to MAX_SETTLE, so that a claim is seen by a whole round of the
    other nodes' monitors when they run as often as ours."""
    interval = ctx.interval_ms / 1000 if ctx.interval_ms > 0 else MAX_SETTLE
    return min(MAX_SETTLE, max(MIN_SETTLE, interval))


# ---------------------------------------------------------------------------------- publishing


def publish(ctx: Context, me: str, memory: Memory, decision: Decision, now: float) -> Memory:
    """Make the attributes say ``decision``; what was published, as the next Memory."""
    deadline = ctx.deadline
    claim, claim_since = memory.claim, memory.claim_since
    if decision.claim != memory.claim:
        if decision.claim is None:
            cluster.delete(CLAIM_ATTRIBUTE, deadline, me)
            claim, claim_since = None, None
        else:
            cluster.update(CLAIM_ATTRIBUTE, str(int(decision.claim)), deadline, me)
            claim, claim_since = decision.claim, time.time()
    if decision.hold != memory.hold:
        if decision.hold is None:
            cluster.delete(HOLD_ATTRIBUTE, deadline, me, wait=False)
        else:
            cluster.update(HOLD_ATTRIBUTE, decision.hold, deadline, me, wait=False)
            log.warning("on hold (%s): %s", decision.hold, decision.why)
    health, since = memory.health, memory.since
    if decision.health is not None and decision.health != memory.health:
        cluster.update(HEALTH_ATTRIBUTE, decision.health, deadline, me)
        health, since = decision.health, now
        log.info("%s is now %s: %s", HEALTH_ATTRIBUTE, health, decision.why)
    return Memory(health, since, memory.read_at, claim, claim_since, decision.hold)


def back_off(ctx: Context, me: str, before: Memory, now_red: Memory, winner: str) -> Memory:
    """Another node turned red with an earlier claim at the same time: undo our red."""
    deadline = ctx.deadline
    if before.health is None:
        cluster.delete(HEALTH_ATTRIBUTE, deadline, me)
    else:
        cluster.update(HEALTH_ATTRIBUTE, before.health, deadline, me)
    hold = f"backed-off-{winner}"
    cluster.update(HOLD_ATTRIBUTE, hold, deadline, me, wait=False)
    log.warning("%s turned red with an earlier claim at the same time: backed off", winner)
    return now_red._replace(health=before.health, since=before.since, hold=hold)


def note_ignored(reading: Reading, extra: dict[str, Any]) -> None:
    """Log each ignored event (not active, before the boot, a rebalance recommendation) once,
    not at every monitor."""
    noted = extra.get("noted")
    before = set(noted) if isinstance(noted, list) else set()
    for line in reading.ignored:
        if line not in before:
            log.info("%s", line)
    extra["noted"] = list(reading.ignored)[:20]


def evaluate(ctx: Context, cfg: Config, memory: Memory, extra: dict[str, Any]) -> Memory:
    """One round: read, decide, publish, check."""
    reading = read_imds(ctx, cfg)
    now = time.time()
    if reading is not None:
        memory = memory._replace(read_at=now)
        note_ignored(reading, extra)
    me = cluster.node_name(ctx.environ, ctx.deadline)
    nodes = cluster.peers(ctx.deadline, HEALTH_ATTRIBUTE, CLAIM_ATTRIBUTE, cfg.safe_attribute)
    settings = Settings(cfg.lead_time, cfg.hold_time, settle_seconds(ctx), cfg.safe_value)
    decision = decide(
        me=me, now=now, reading=reading, memory=memory, peers=nodes, settings=settings
    )
    (log.warning if reading is None else log.debug)("decision: %s", decision.why)
    published = publish(ctx, me, memory, decision, now)
    if published.health == RED and memory.health != RED and published.claim is not None:
        again = cluster.peers(ctx.deadline, HEALTH_ATTRIBUTE, CLAIM_ATTRIBUTE, cfg.safe_attribute)
        winner = conflict(me, published.claim, again)
        if winner is not None:
            return back_off(ctx, me, memory, published, winner)
    return published


def api_round(ctx: Context, cfg: Config, extra: dict[str, Any]) -> None:
    """The API check when it is due (api_next in the state): at most every api_interval."""
    now = time.time()
    due = _number(extra, "api_next")
    if not cfg.check_api or (due is not None and now < due):
        return
    budget = min(API_BUDGET, ctx.deadline.remaining() - 2.0)
    if budget < 3.0:
        log.debug("no time left for the API check in this monitor")
        return
    from ipfailover.health import apicheck

    extra["api_next"] = now + cfg.api_interval * random.uniform(1 - API_JITTER, 1 + API_JITTER)  # noqa: S311
    ok, why = apicheck.check(ctx, cluster.primitives(ctx.deadline), budget)
    if ok is None:
        log.debug("API check: %s", why)
        return
    me = cluster.node_name(ctx.environ, ctx.deadline)
    cluster.update(cfg.api_attribute, "1" if ok else "0", ctx.deadline, me, wait=False)
    if ok != extra.get("api_ok"):
        (log.info if ok else log.warning)("API check %s: %s", "passed" if ok else "failed", why)
    extra["api_ok"] = ok


def round_(ctx: Context, cfg: Config, state: dict[str, Any], api: bool = True) -> None:
    """evaluate + api_round, saving the state; cluster trouble is logged, never fatal: a failed
    monitor would restart the clone instance, and its stop would delete a red in the middle of
    an evacuation."""
    memory = memory_of(state)
    extra = {k: v for k, v in state.items() if k not in Memory._fields}
    try:
        memory = evaluate(ctx, cfg, memory, extra)
    except NotInstalledError:
        raise
    except OCFError as exc:
        log.warning("this round could not complete, nothing changed: %s", exc.reason)
    except Exception as exc:  # see above: logged as an error, never a restart
        log.error("this round failed, nothing changed: %s: %s", type(exc).__name__, exc)
        log.debug("traceback", exc_info=True)
    save(ctx, memory, extra)
    if not api:
        return
    try:
        api_round(ctx, cfg, extra)
    except NotInstalledError:
        raise
    except OCFError as exc:
        log.warning("the API check could not complete: %s", exc.reason)
    save(ctx, memory, extra)


# ---------------------------------------------------------------------------------- actions


def start(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    state = load(ctx)
    if state is None:
        state = {}  # no api_next: the first monitor checks the API (nodes start apart anyway)
        save(ctx, Memory(), state)
    round_(ctx, cfg, state, api=False)
    return OCF.SUCCESS


def stop(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    from ipfailover.host import record

    try:
        me = cluster.node_name(ctx.environ, ctx.deadline)
        for name in (HEALTH_ATTRIBUTE, CLAIM_ATTRIBUTE, HOLD_ATTRIBUTE, cfg.api_attribute):
            cluster.delete(name, ctx.deadline, me, wait=False)
    except OCFError as exc:
        # Fencing this node for an attribute would make things worse; a reboot clears them.
        log.warning("could not delete this node's aws-health attributes: %s", exc.reason)
    record.remove(state_path(ctx))
    return OCF.SUCCESS


def monitor(ctx: Context) -> int:
    cfg = ctx.config_as(Config)
    state = load(ctx)
    if state is None:
        return OCF.NOT_RUNNING
    if not ctx.is_probe:
        round_(ctx, cfg, state)
    return OCF.SUCCESS  # red is not a failure


def validate(ctx: Context) -> int:
    """Pacemaker 2.1.3 or later, and (when the CIB can be read) a clone with
    allow-unhealthy-nodes=true around this resource."""
    version = cluster.pacemaker_version(ctx.deadline)
    if version < cluster.MIN_PACEMAKER:
        raise NotInstalledError(
            f"Pacemaker {'.'.join(map(str, version))} is installed; aws-health needs 2.1.3 or "
            "later (allow-unhealthy-nodes)"
        )
    try:
        resources = cluster.primitives(ctx.deadline)
    except GenericError as exc:
        log.info("the configuration cannot be read here, the clone is not checked: %s", exc.reason)
        return OCF.SUCCESS
    me = ctx.resource.split(":", 1)[0]
    health = [r for r in resources if r.type == "aws-health"]
    mine = [r for r in health if r.id == me] or health
    if not mine:
        log.info("no aws-health resource in the configuration yet: the clone is not checked")
    for resource in mine:
        check_clone(resource)
    return OCF.SUCCESS


def check_clone(resource: cluster.Primitive) -> None:
    if resource.clone_meta is None:
        raise ConfigError(
            f"{resource.id} must run as a clone on every node (with allow-unhealthy-nodes=true)"
        )
    value = resource.clone_meta.get("allow-unhealthy-nodes", "false")
    try:
        allowed = parse_bool(value)
    except ValueError:
        allowed = False
    if not allowed:
        raise ConfigError(
            f"the clone of {resource.id} needs the meta attribute allow-unhealthy-nodes=true "
            "(on the clone, not the primitive): without it a red node stops aws-health and never "
            "turns green again"
        )
