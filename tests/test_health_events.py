"""aws-health's pure part (ipfailover.health.events): parsing what IMDS says, and every state and
safety rule of the decision, the race of two nodes with events included."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ipfailover.health.events import (
    GREEN,
    RED,
    Decision,
    Event,
    EventError,
    Memory,
    Peer,
    Reading,
    Settings,
    conflict,
    decide,
    parse_rebalance,
    parse_scheduled,
    parse_spot,
    parse_time,
    read_events,
)

T0 = 1_900_000_000.0  # 2030-03-17T17:46:40Z
BOOT = T0 - 86400
SETTINGS = Settings(lead_time=600, hold_time=300, settle=10)
GREEN_PEER = Peer("b", online=True, health=GREEN)


def scheduled(
    code: str = "system-reboot", not_before: str = "21 Jan 2031 09:00:43 GMT", **kw: str
) -> dict[str, str]:
    event = {
        "Code": code,
        "Description": "scheduled reboot",
        "EventId": "instance-event-0d59937288b749b32",
        "NotAfter": "21 Jan 2031 09:17:23 GMT",
        "NotBefore": not_before,
        "State": "active",
    }
    event.update(kw)
    return event


def event_at(not_before: float, source: str = "scheduled") -> Event:
    return Event(source, "system-reboot", "instance-event-1", not_before)


# ---- parsing -----------------------------------------------------------------------------------


def test_parse_time_formats() -> None:
    assert parse_time("21 Jan 2019 09:00:43 GMT") == 1548061243.0
    assert parse_time("2017-09-18T08:22:00Z") == 1505722920.0
    assert parse_time("29 Feb 2024 23:59:59 GMT") == 1709251199.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "21 Jan 2019",
        "21 Foo 2019 09:00:43 GMT",
        "21 Jan 2019 09:00:43 CET",
        "30 Feb 2019 09:00:43 GMT",
        "21 Jan 2019 25:00:43 GMT",
        "21 Mär 2019 09:00:43 GMT",
        "2017-09-18 08:22:00",
        "2017-13-18T08:22:00Z",
        "9" * 100,
        None,
        1548061243,
    ],
)
def test_parse_time_refuses(text: object) -> None:
    with pytest.raises(EventError):
        parse_time(text)


@pytest.fixture(scope="module")
def german(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a process in de_DE.UTF-8: the installed locale, or one compiled with
    localedef into a private LOCPATH (nothing of the host is changed)."""
    env = {"LC_ALL": "de_DE.UTF-8", "PYTHONPATH": ":".join(sys.path)}
    probe = [sys.executable, "-c", "import locale; locale.setlocale(locale.LC_ALL, '')"]
    if subprocess.run(probe, env=env, capture_output=True, check=False).returncode == 0:
        return env
    localedef = shutil.which("localedef")
    if localedef is None or not Path("/usr/share/i18n/locales/de_DE").exists():
        pytest.skip("no de_DE.UTF-8 locale and no localedef sources: locale-independence untested")
    directory = tmp_path_factory.mktemp("locale")
    subprocess.run(
        [localedef, "-i", "de_DE", "-f", "UTF-8", str(directory / "de_DE.UTF-8")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return {**env, "LOCPATH": str(directory)}


def test_parse_time_in_a_german_locale(german: dict[str, str]) -> None:
    """An SAP host often runs a German locale, where strftime's %b is "Mär": the parse must not
    care. The process proves the locale is in effect before it parses."""
    code = (
        "import locale, time; locale.setlocale(locale.LC_ALL, '');"
        "from ipfailover.health.events import parse_time, read_events;"
        f"print(time.strftime('%b', time.gmtime({T0})), parse_time('17 Mar 2030 17:46:40 GMT'),"
        " parse_time('2030-03-17T17:46:40Z'),"
        " read_events(sys.argv[1], None, None, 0).events[0].not_before)"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys;" + code,
            json.dumps([scheduled(not_before="17 Mar 2030 17:46:40 GMT")]),
        ],
        capture_output=True,
        text=True,
        env=german,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["Mär", str(T0), str(T0), str(T0)]


def test_scheduled_events_only_active_ones_count() -> None:
    text = json.dumps(
        [
            scheduled(),
            scheduled("instance-stop", State="completed"),
            scheduled("instance-retirement", State="canceled"),
        ]
    )
    reading = parse_scheduled(text, BOOT)
    assert [e.code for e in reading.events] == ["system-reboot"]
    assert reading.events[0].not_before == parse_time("21 Jan 2031 09:00:43 GMT")
    assert len(reading.ignored) == 2
    assert "completed" in reading.ignored[0] and "canceled" in reading.ignored[1]


def test_an_event_that_began_before_the_boot_is_done() -> None:
    text = json.dumps([scheduled(not_before="21 Jan 2019 09:00:43 GMT")])
    reading = parse_scheduled(text, boot_time=parse_time("21 Jan 2019 09:10:00 GMT"))
    assert reading.events == ()
    assert "booted" in reading.ignored[0]


@pytest.mark.parametrize(
    "text",
    ["", "{", "{}", '"x"', "[1]", json.dumps([scheduled(NotBefore="soon")]), "[" * 5000],
)
def test_malformed_scheduled_is_unknown(text: str) -> None:
    with pytest.raises((EventError, RecursionError)):
        parse_scheduled(text, BOOT)


def test_no_event_is_an_empty_list() -> None:
    assert parse_scheduled("[]", BOOT) == Reading((), ())


def test_spot_and_rebalance() -> None:
    assert parse_spot(None) is None
    notice = parse_spot('{"action": "terminate", "time": "2017-09-18T08:22:00Z"}')
    assert notice == Event("spot", "spot-terminate", "", 1505722920.0)
    for bad in ('{"action": "reboot", "time": "2017-09-18T08:22:00Z"}', "[]", "x"):
        with pytest.raises(EventError):
            parse_spot(bad)
    assert parse_rebalance(None) is None
    assert parse_rebalance('{"noticeTime": "2020-10-27T08:22:00Z"}') is not None
    with pytest.raises(EventError):
        parse_rebalance('{"noticeTime": "tomorrow"}')


def test_a_rebalance_recommendation_is_logged_not_acted_on() -> None:
    reading = read_events("[]", None, '{"noticeTime": "2030-03-17T17:40:00Z"}', BOOT)
    assert reading.events == ()
    assert "rebalance" in reading.ignored[0]
    d = decide(
        me="a", now=T0, reading=reading, memory=Memory(), peers=(GREEN_PEER,), settings=SETTINGS
    )
    assert d.health == GREEN


# ---- decision: the states ----------------------------------------------------------------------


def run(
    memory: Memory,
    reading: Reading | None,
    peers: tuple[Peer, ...] = (GREEN_PEER,),
    now: float = T0,
    settings: Settings = SETTINGS,
) -> Decision:
    return decide(me="a", now=now, reading=reading, memory=memory, peers=peers, settings=settings)


def test_green_only_on_a_positive_read() -> None:
    assert run(Memory(), Reading(())).health == GREEN
    assert run(Memory(), None).health is None  # start sets nothing until the first read


@pytest.mark.parametrize("before", [None, GREEN, RED])
def test_an_unreadable_imds_keeps_the_last_state(before: str | None) -> None:
    memory = Memory(health=before, since=T0 - 5000, read_at=T0 - 42, claim=None)
    d = run(memory, None)
    assert d.health == before
    assert "42s ago" in d.why


def test_an_event_not_yet_due_is_green() -> None:
    reading = Reading((event_at(T0 + SETTINGS.lead_time + 1),))
    d = run(Memory(health=GREEN), reading)
    assert (d.health, d.claim, d.hold) == (GREEN, None, None)
    assert "later" in d.why


def test_a_due_event_first_claims_and_settles_then_turns_red() -> None:
    nb = T0 + SETTINGS.lead_time - 1
    reading = Reading((event_at(nb),))
    d = run(Memory(health=GREEN), reading)
    assert (d.health, d.claim, d.hold) == (GREEN, nb, "settling")
    settling = Memory(health=GREEN, claim=nb, claim_since=T0 - SETTINGS.settle + 1)
    assert run(settling, reading).hold == "settling"
    settled = settling._replace(claim_since=T0 - SETTINGS.settle)
    d = run(settled, reading)
    assert (d.health, d.claim, d.hold) == (RED, nb, None)


def test_red_stays_red_while_the_event_is_due_and_for_hold_time() -> None:
    nb = T0 - 10  # the window has begun
    red = Memory(health=RED, since=T0 - 1000, claim=nb, claim_since=T0 - 1010)
    # red, even when the other node is no longer a safe target: the move has happened
    assert run(red, Reading((event_at(nb),)), peers=()).health == RED
    fresh = red._replace(since=T0 - SETTINGS.hold_time + 1)
    d = run(fresh, Reading(()))
    assert d.health == RED and "held" in d.why
    d = run(red._replace(since=T0 - SETTINGS.hold_time), Reading(()))
    assert (d.health, d.claim, d.hold) == (GREEN, None, None)


def test_a_spot_notice_is_due_at_once() -> None:
    notice = Event("spot", "spot-terminate", "", T0 + 120)
    settled = Memory(health=GREEN, claim=T0 + 120, claim_since=T0 - 60)
    settings = SETTINGS._replace(lead_time=0)
    assert run(settled, Reading((notice,)), settings=settings).health == RED
    not_spot = notice._replace(source="scheduled")
    assert run(settled, Reading((not_spot,)), settings=settings).health == GREEN


# ---- decision: the safety rules ----------------------------------------------------------------

DUE = Reading((event_at(T0 + 60),))
SETTLED = Memory(health=GREEN, since=T0 - 999, claim=T0 + 60, claim_since=T0 - 100)


@pytest.mark.parametrize(
    ("peer", "problem"),
    [
        (Peer("b", online=False, health=GREEN), "no other node"),
        (Peer("b", online=True, standby=True, health=GREEN), "in standby"),
        (Peer("b", online=True, maintenance=True, health=GREEN), "in maintenance"),
        (Peer("b", online=True, health=None), "#health-aws is unset"),
        (Peer("b", online=True, health="yellow"), "#health-aws is yellow"),
    ],
)
def test_no_safe_target_holds_and_stays_green(peer: Peer, problem: str) -> None:
    d = run(SETTLED, DUE, peers=(peer,))
    assert (d.health, d.hold) == (GREEN, "no-safe-target")
    assert problem in d.why
    # never yellow, and nothing set when nothing was
    assert run(SETTLED._replace(health=None), DUE, peers=(peer,)).health is None


def test_a_single_node_cluster_never_turns_red() -> None:
    d = run(SETTLED, DUE, peers=(Peer("a", online=True, health=GREEN),))
    assert (d.health, d.hold) == (GREEN, "no-safe-target")


def test_the_safe_condition_of_the_target() -> None:
    settings = SETTINGS._replace(safe_value="SOK")
    not_in_sync = Peer("b", online=True, health=GREEN, safe="SFAIL")
    d = run(SETTLED, DUE, peers=(not_in_sync,), settings=settings)
    assert (d.health, d.hold) == (GREEN, "no-safe-target") and "SFAIL" in d.why
    in_sync = not_in_sync._replace(safe="SOK")
    assert run(SETTLED, DUE, peers=(in_sync,), settings=settings).health == RED
    # one safe target among several is enough
    peers = (not_in_sync, Peer("c", online=True, health=GREEN, safe="SOK"))
    assert run(SETTLED, DUE, peers=peers, settings=settings).health == RED


def test_wait_while_another_node_is_red() -> None:
    peers = (Peer("b", online=True, health=RED), Peer("c", online=True, health=GREEN))
    d = run(SETTLED, DUE, peers=peers)
    assert (d.health, d.hold) == (GREEN, "waiting-for-b")


def test_tie_break_earliest_not_before_then_name() -> None:
    mine = T0 + 60
    for claim, name, wins in [
        (mine - 1, "z", False),  # earlier NotBefore wins whatever the name
        (mine + 1, "0", True),
        (mine, "0", False),  # same NotBefore: the smaller name ("0" < "a")
        (mine, "b", True),
    ]:
        peers = (Peer(name, online=True, health=GREEN, claim=claim), Peer("c", True, health=GREEN))
        d = run(SETTLED, DUE, peers=peers)
        assert (d.health == RED) == wins, (claim, name)
        if not wins:
            assert d.hold == f"after-{name}"


def test_a_node_with_a_later_event_is_still_a_target() -> None:
    later = Peer("b", online=True, health=GREEN, claim=T0 + 999)
    assert run(SETTLED, DUE, peers=(later,)).health == RED
    # and it waits for us, visibly
    d = decide(
        me="b",
        now=T0,
        reading=Reading((event_at(T0 + 90),)),
        memory=SETTLED._replace(claim=T0 + 90),
        peers=(Peer("a", online=True, health=RED, claim=T0 + 60),),
        settings=SETTINGS,
    )
    assert (d.health, d.hold) == (GREEN, "waiting-for-a")


def test_conflict_backs_off_the_later_claim() -> None:
    assert conflict("a", T0, (Peer("b", True, health=RED, claim=T0 - 1),)) == "b"
    assert conflict("a", T0, (Peer("b", True, health=RED, claim=T0 + 1),)) is None
    assert conflict("b", T0, (Peer("a", True, health=RED, claim=T0),)) == "a"
    assert conflict("a", T0, (Peer("b", False, health=RED, claim=T0 - 1),)) is None
    assert conflict("a", T0, (Peer("b", True, health=GREEN, claim=T0 - 1),)) is None


# ---- the race: two nodes with events in the same window -----------------------------------------


class World:
    """Attributes as the cluster shows them, each write visible after a random delay."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pending: list[tuple[float, str, str, object]] = []
        self.visible: dict[str, dict[str, object]] = {"a": {}, "b": {}, "c": {}}

    def write(self, now: float, node: str, name: str, value: object) -> float:
        seen = now + self.rng.uniform(0.0, 2.0)
        self.pending.append((seen, node, name, value))
        return seen

    def advance(self, now: float) -> None:
        for item in sorted(p for p in self.pending if p[0] <= now):
            self.visible[item[1]][item[2]] = item[3]
        self.pending = [p for p in self.pending if p[0] > now]

    def peers(self) -> tuple[Peer, ...]:
        return tuple(
            Peer(n, True, health=v.get("health"), claim=v.get("claim"))  # type: ignore[arg-type]
            for n, v in self.visible.items()
        )


@pytest.mark.parametrize("seed", range(200))
def test_two_nodes_with_events_never_both_turn_red(seed: int) -> None:
    """Nodes a and b get events in the same window and run their monitors at random times (as
    two real nodes do); c is the third, healthy node. A write becomes visible after a random
    delay up to 2 s (attrd), a node waits for its own writes as the agent does. At no time may
    two nodes be red, and the first to turn red is the one the tie-break names. (With settle=0
    this test fails for about one seed in ten: it does exercise the race.)"""
    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    world = World(rng)
    world.visible["c"]["health"] = GREEN
    nb = {"a": T0 + rng.choice([0, 0, 5, -5]), "b": T0 + rng.choice([0, 0, 5, -5])}
    memory = {"a": Memory(health=GREEN), "b": Memory(health=GREEN)}
    next_run = {"a": T0 - 700 + rng.uniform(0, 10), "b": T0 - 700 + rng.uniform(0, 10)}
    first_red: list[str] = []
    now = T0 - 700
    while now < T0 + 200:
        node = min(next_run, key=next_run.__getitem__)
        now = next_run[node]
        world.advance(now)
        d = decide(
            me=node,
            now=now,
            reading=Reading((event_at(nb[node]),)),
            memory=memory[node],
            peers=world.peers(),
            settings=SETTINGS,
        )
        m = memory[node]
        claim_since = m.claim_since
        if d.claim != m.claim:
            seen = world.write(now, node, "claim", d.claim)
            now = seen  # the agent waits until the cluster shows it
            claim_since = seen
        health, since = m.health, m.since
        if d.health != m.health:
            seen = world.write(now, node, "health", d.health)
            world.advance(seen)
            health, since = d.health, seen
            if d.health == RED:
                first_red.append(node)
        memory[node] = Memory(health, since, now, d.claim, claim_since, d.hold)
        reds = [n for n in ("a", "b") if memory[n].health == RED]
        assert len(reds) <= 1, (seed, now, memory)
        # a monitor every 10 s, but a start, a re-probe or a restart may come at any time
        next_run[node] = now + rng.choice([0.2, 1.0, 3.0, 10.0]) + rng.uniform(0, 0.5)
    expected = min(("a", "b"), key=lambda n: (nb[n], n))
    assert first_red[:1] == [expected], (seed, nb, first_red)
