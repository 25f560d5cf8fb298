"""The fault matrix of issue 6: cases x agents x actions, what each must give, and how it runs.

Every case starts from a fresh lab world and runs real agent processes in node "a" (and "b").
The pre-state of the action under test is what Pacemaker would have: for start, a failover
(node b runs the resource, node a takes it over); for stop and monitor, node a runs it. After
the scenario, every node stops every resource of the case: each stop must succeed and leave
nothing in the OS, and AWS must end consistent (the resource held by at most one node).

Groups (``Case.group``):

- ``ec2``: throttling at 10/50/90/100 %, 1 s latency on every call, bursts of 500 and 503,
  connection refused (an endpoint on a closed port), a black hole that accepts and never answers
  (the lab's ``blackhole``) and one where connect hangs (an address the lab's VPC drops);
- ``permission``: ``UnauthorizedOperation`` on each EC2 call the action makes, one at a time;
  the calls come from the call log of a clean run of the same scenario (:func:`discover`);
- ``imds``: the node's metadata service down, slow (0.3 s per answer, which must work), hung
  (5 s, longer than the client's timeouts), answering 401 to a stale token, 403, garbage;
- ``kill``: SIGKILL right after each EC2 call of start and stop (again from the call log); the
  next start and the next stop must repair the half-done state and succeed;
- ``race``: both nodes start the resource at the same moment, no fencing: afterwards exactly
  one node's monitor says running and AWS points at that node;
- ``drift``: OS state (address, rule, route, link state) or AWS state (route, assignment,
  attachment) changed behind the agent's back: monitor must notice (7), start must repair,
  stop must clean up;
- ``parallel``: two resources of the same agent on one node, started and stopped in parallel;
- ``fuzz``: hostile values for every parameter (see faults.fuzz);
- ``client``: this node's AWS set-up broken while the client is built (issue 12, classes 1, 2
  and 4): a ``credential_process`` that fails or is missing, a profile with a key id but no
  secret, a profile missing from the configuration, a ``ca_bundle`` missing or without a
  certificate, a damaged trimmed EC2 model (in a copy of the tree).

Expected exit codes and reasons are spelled out in the ``expect_*`` functions, per agent and
action, with the documented behaviour each relies on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab import Lab

from .execute import LIB_DIR, CaseFailure, Expect, Run, Session, SubRow, expect, parallel
from .world import (
    AGENTS,
    DAMAGES,
    NODES,
    SHORT,
    Resource,
    aws_points_at,
    holders,
)

OK = expect(0)
STOPPED = expect(7)
FAST_MS = 20000  # start/stop expected to succeed
MONITOR_MS = 10000
SHORT_MS = 6000  # actions expected to fail: short, so the matrix runs in reasonable time
SLOW_MS = 30000  # 1 s latency on every call
RACE_MS = 12000  # the loser of a race may wait for its deadline

THROTTLED = r"RequestLimitExceeded"
REFUSED = r"(?i)connect|refused"
TIMED_OUT = r"(?i)time ?out|timed out|read timeout|ReadTimeout"
CONNECT_HANGS = r"(?i)connect.*time|timed? ?out|timeout"
METADATA = r"(?i)instance metadata"
DENIED = r"UnauthorizedOperation"
CLOSED_PORT_URL = "http://127.0.0.1:9"  # nothing listens on it in a node namespace
DROPPED_URL = "http://192.0.2.1:80"  # TEST-NET-1: the lab's VPC namespace drops it (no answer)


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    agent: str
    action: str
    scenario: Callable[[Session, Case], list[Run]]
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def id(self) -> str:
        return f"{self.group}:{self.name}:{SHORT[self.agent]}:{self.action}"

    def opt(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


# ----------------------------------------------------------------------------- scenarios


def prepare(s: Session, res: Resource, action: str) -> None:
    """The pre-state: a failover for start (b runs it), a running on a for stop and monitor."""
    node = "b" if action == "start" else "a"
    s.must(s.run(node, res, "start"), OK, what=f"setup: {node} start")


def after_start(s: Session, res: Resource, run: Run, others: Sequence[str] = ("b",)) -> None:
    """A start that returned 0 must be real: monitor 0 there, 7 elsewhere, AWS points here."""
    if run.rc != 0:
        return
    s.check(s.run(run.node, res, "monitor"), OK, what=f"monitor on {run.node} after its start")
    for other in others:
        s.check(s.run(other, res, "monitor"), STOPPED, what=f"monitor on {other}")
    s.require(
        aws_points_at(s.lab, res, run.node),
        f"start returned 0 but AWS sends the resource to {sorted(holders(s.lab, res))}",
    )


def consistent(s: Session, res: Resource, when: str, run: Run | None = None) -> None:
    """AWS holds the resource for at most one node. For aws-overlayip the routes of several
    tables can only change one at a time: after a start that failed half-way they may point at
    two nodes until the next start; so there only a successful action is judged."""
    if res.agent == "aws-overlayip" and run is not None and run.rc != 0:
        return
    found = holders(s.lab, res)
    s.require(len(found) <= 1, f"AWS inconsistent {when}: {res.name} on {sorted(found)}")


def finish(s: Session) -> None:
    """Recovery and clean-up, the faults gone: a start on a must work (whatever the case left)
    and make AWS point at a; then every node stops every resource: rc 0, nothing left."""
    lab = s.lab
    lab.clear_faults()
    for node in NODES:
        lab.set_imds_fault(node, None)
    for res in s.resources:
        start = s.check(s.run("a", res, "start"), OK, what="recovery start on a")
        if start.rc == 0:
            s.require(
                aws_points_at(lab, res, "a"),
                f"after the recovery start AWS sends {res.name} to {sorted(holders(lab, res))}",
            )
        for node in NODES:
            s.check(s.run(node, res, "stop"), OK, res, what=f"final stop on {node}")
        consistent(s, res, "at the end")


def fault_scenario(s: Session, case: Case) -> list[Run]:
    """One fault (EC2 or IMDS) in force during the action under test on node a."""
    res = s.resource(case.agent)
    prepare(s, res, case.action)
    apply: Callable[[], None] = case.opt("apply", lambda: None)
    params = dict(res.params)
    params.update(case.opt("params", {}))
    fault = case.opt("fault")
    if fault is not None:
        s.lab.set_fault(**{"node": "a", **fault})
    imds = case.opt("imds")
    if imds is not None:
        s.lab.set_imds_fault("a", imds[0], imds[1])
    apply()
    want: Expect = case.opt("expect")
    run = s.run("a", res, case.action, timeout_ms=case.opt("timeout_ms"), params=params)
    s.lab.clear_faults()
    s.lab.set_imds_fault("a", None)
    s.check(run, want, res)
    consistent(s, res, f"after {case.action}", run)
    if case.action == "start":
        after_start(s, res, run)
    return [run]


def kill_scenario(s: Session, case: Case) -> list[Run]:
    """SIGKILL after the n-th EC2 call, then the next start and the next stop must succeed."""
    res = s.resource(case.agent)
    prepare(s, res, case.action)
    n, total = case.opt("n"), case.opt("total")
    killed = s.run_killed("a", res, case.action, n, last=n >= total, timeout_ms=FAST_MS)
    s.require(not killed.spawned, f"started a process: {killed.spawned[:1]}")
    s.require("Traceback" not in killed.result.stderr, "a traceback before the kill")
    if killed.killed_after is None and killed.rc != 0:
        s.fail(f"not killed, and failed: {killed.brief()}")
    # Calls made in parallel with the held one (aws-overlayip's route changes) may complete.
    if killed.killed_after is not None and n < total and killed.killed_after < n:
        s.fail(f"killed after {killed.killed_after} calls instead of {n}")
    start = s.must(s.run("a", res, "start"), OK, what="the next start")
    after_start(s, res, start)
    s.check(s.run("a", res, "stop"), OK, res, what="the next stop")
    return [killed, start]


def race_scenario(s: Session, case: Case) -> list[Run]:
    """Both nodes start at the same moment (no fencing)."""
    res = s.resource(case.agent)
    starts = (lambda n=n: s.run(n, res, "start", timeout_ms=RACE_MS) for n in NODES)
    runs: list[Run] = parallel(*starts)
    for run in runs:
        s.check(run, expect(0, 1), what=f"concurrent start on {run.node}")
    monitors = {n: s.run(n, res, "monitor").rc for n in NODES}
    running = [n for n, rc in monitors.items() if rc == 0]
    s.require(
        sorted(monitors.values()) == [0, 7],
        f"monitors after the race: {monitors} (exactly one 0 and one 7 expected)",
    )
    if len(running) == 1:
        s.require(
            aws_points_at(s.lab, res, running[0]),
            f"{running[0]}'s monitor says running, but AWS: {sorted(holders(s.lab, res))}",
        )
    return runs


def drift_scenario(s: Session, case: Case) -> list[Run]:
    """Damage behind the agent's back on node a, then the action under test."""
    res = s.resource(case.agent)
    prepare(s, res, "monitor")
    DAMAGES[(case.agent, case.opt("damage"))](s.lab, res, "a")
    if case.action == "monitor":
        return [s.check(s.run("a", res, "monitor"), STOPPED, what="monitor after the damage")]
    if case.action == "start":
        run = s.check(s.run("a", res, "start"), OK, what="start after the damage")
        after_start(s, res, run, others=())
        return [run]
    return [s.check(s.run("a", res, "stop"), OK, res, what="stop after the damage")]


def parallel_scenario(s: Session, case: Case) -> list[Run]:
    """Two resources of the agent on node a, started (and stopped) at the same moment."""
    pair = [s.resource(case.agent, 0), s.resource(case.agent, 1)]
    if case.action == "stop":
        for res in pair:
            s.must(s.run("a", res, "start"), OK, what=f"setup: start {res.name}")
    runs: list[Run] = parallel(*(lambda r=r: s.run("a", r, case.action) for r in pair))
    for res, run in zip(pair, runs):
        s.check(run, OK, res, what=f"{case.action} {res.name}")
        want = OK if case.action == "start" else STOPPED
        s.check(s.run("a", res, "monitor"), want, what=f"monitor {res.name}")
        if case.action == "start":
            s.require(aws_points_at(s.lab, res, "a"), f"AWS does not send {res.name} to a")
    return runs


# ----------------------------------------------------------------------------- expectations


BURST = {"kind": "error", "count": 4}  # the first 4 calls of node a fail, then all pass
EC2_FAULTS: Mapping[str, Mapping[str, Any]] = {
    "throttle 10%": {"fault": {"kind": "throttle", "rate": 0.1}},
    "throttle 50%": {"fault": {"kind": "throttle", "rate": 0.5}},
    "throttle 90%": {"fault": {"kind": "throttle", "rate": 0.9}},
    "throttle 100%": {"fault": {"kind": "throttle", "rate": 1.0}},
    "latency 1s": {"fault": {"kind": "latency", "delay": 1.0}},
    "burst of 500": {"fault": {**BURST, "code": "InternalError", "status": 500}},
    "burst of 503": {"fault": {**BURST, "code": "Unavailable", "status": 503}},
    "connection refused": {"params": {"endpoint_url": CLOSED_PORT_URL}},
    "black hole (no answer)": {"fault": {"kind": "blackhole", "delay": 60}},
    "black hole (connect hangs)": {"params": {"endpoint_url": DROPPED_URL}},
}
# What the EC2 faults do: pass (the agent rides them out), maybe (90 %: may run out of time),
# fail (nothing gets through). The cause the exit reason (or the warning) must name.
EC2_FATE = {
    "throttle 10%": ("pass", None),
    "throttle 50%": ("pass", None),
    "throttle 90%": ("maybe", THROTTLED),
    "throttle 100%": ("fail", THROTTLED),
    "latency 1s": ("pass", None),
    "burst of 500": ("pass", None),
    "burst of 503": ("pass", None),
    "connection refused": ("fail", REFUSED),
    "black hole (no answer)": ("fail", TIMED_OUT),
    "black hole (connect hangs)": ("fail", CONNECT_HANGS),
}


def expect_ec2(name: str, agent: str, action: str) -> tuple[Expect, int]:
    """The outcome of an EC2 fault, and the timeout to give the action.

    - start fails with 1 and the cause when nothing gets through; 90 % may go either way;
    - monitor of a running resource says 0 and logs a warning with the cause: it cannot tell,
      so it must not say 7 (DESIGN: "Monitor returns 7 only when it knows");
    - stop of aws-overlayip makes no EC2 call; aws-secip's stop succeeds with a warning when it
      cannot unassign (parameter unassign_on_stop: "If the AWS part of stop cannot complete,
      stop logs a warning and still succeeds"); aws-eni's stop fails (1, with the cause) when it
      cannot tell whether the ENI is still attached to this node.
    """
    fate, cause = EC2_FATE[name]
    slow = name == "latency 1s"
    if fate == "pass":
        return OK, SLOW_MS if slow else (MONITOR_MS if action == "monitor" else FAST_MS)
    timeout = FAST_MS if fate == "maybe" else SHORT_MS
    if action == "monitor":
        return expect(0, warn=cause if fate == "fail" else None), timeout
    if action == "stop" and agent == "aws-overlayip":
        return OK, timeout
    if action == "stop" and agent == "aws-secip":
        return expect(0, warn=cause if fate == "fail" else None), timeout
    if fate == "maybe":
        return expect(0, 1, reason=cause), timeout
    return expect(1, reason=cause), timeout


IMDS_MODES: Mapping[str, tuple[str, float | None]] = {
    "IMDS down": ("down", None),
    "IMDS slow (0.3s)": ("slow", 0.3),
    "IMDS hung (5s)": ("slow", 5.0),
    "IMDS 401 stale token": ("stale_token", None),
    "IMDS 403 disabled": ("disabled", None),
    "IMDS garbage": ("garbage", None),
}


def expect_imds(name: str, agent: str, action: str) -> tuple[Expect, int]:
    """The outcome of a metadata service fault on node a.

    A slow service (0.3 s an answer) and a stale token (401 once: fetch a new token) must work.
    Otherwise start fails naming the metadata service: 2 when it is disabled (403, a problem of
    this instance only, DESIGN: "403 means IMDS is disabled (clear error)"), else 1. Monitor of a
    running resource says 0 with a warning (the OS side is fine; it cannot check the rest).
    aws-overlayip's stop needs no metadata; aws-secip's stop removes the address and logs the
    failed unassignment; aws-eni's stop cannot learn its instance, nor get credentials: it removes
    the OS side from its record and fails with 1 naming the metadata service (a stop never
    reports 2, ocf_shim/errors.py).
    """
    mode, delay = IMDS_MODES[name]
    works = mode == "stale_token" or (mode == "slow" and (delay or 0) < 1)
    if works:
        return OK, MONITOR_MS if action == "monitor" else FAST_MS
    if action == "monitor" or (action == "stop" and agent == "aws-secip"):
        return expect(0, warn=METADATA), SHORT_MS
    if action == "stop" and agent == "aws-overlayip":
        return OK, SHORT_MS
    rc = 2 if mode == "disabled" and action != "stop" else 1
    return expect(rc, reason=METADATA), SHORT_MS


def expect_denied(call: str, agent: str, action: str) -> tuple[Expect, int]:
    """UnauthorizedOperation on one call: start and stop fail with 4 naming ec2:<call> (DESIGN:
    "permission errors map to 4"), except aws-secip's stop, which succeeds with a warning (see
    expect_ec2); monitor says 0 with a warning (the OS side is fine, it cannot check the rest)."""
    if action == "monitor" or (action == "stop" and agent == "aws-secip"):
        return expect(0, warn=DENIED), MONITOR_MS
    return expect(4, reason=rf"ec2:{re.escape(call)}\b"), FAST_MS


# ----------------------------------------------------------------------------- client set-up

CLIENT_PROFILE = "ipf-client"


def _config(s: Session, body: str) -> dict[str, str]:
    """An AWS configuration file for the run; its environment."""
    path = s.workdir / "aws-config"
    path.write_text(body)
    return {"AWS_CONFIG_FILE": str(path)}


def _no_certificate(s: Session) -> str:
    path = s.workdir / "ca-without-certificate.pem"
    path.write_text("# this bundle lost its certificates\n")
    return str(path)


def _damaged_tree(s: Session, agent: str) -> Path:
    """A copy of the agents and lib/ whose trimmed EC2 model (for this Python's botocore) is
    cut in the middle, as a full disk or an interrupted copy leaves it; the agent to run."""
    import shutil

    import botocore

    from ipfailover.aws import botomodel

    root = s.workdir / "damaged-tree"
    lib = root / "lib"
    if not root.exists():
        ignore = shutil.ignore_patterns("__pycache__", "_models")
        shutil.copytree(LIB_DIR, lib, ignore=ignore)
        shutil.copytree(LIB_DIR.parent / "agents", root / "agents", ignore=ignore)
        model = Path(botomodel.generate(str(lib / "ipfailover" / "_models")))
        model.write_text(model.read_text()[:4096])
        assert botomodel.model_key(botocore.__version__) in str(model)
    return root / "agents" / agent


# Each fault: what the run gets (params, environment, another agent executable), the program
# botocore runs for credential_process (its start is expected), and the outcome of start: rc and
# the exit reason's pattern (monitor and stop follow from it, see expect_client).
ClientSetup = Callable[[Session, Resource], tuple[dict[str, str], dict[str, str], Path | None]]
CLIENT_FAULTS: Mapping[str, tuple[ClientSetup, str | None, int, str | None]] = {
    "credential_process fails": (
        lambda s, r: (
            {"profile": CLIENT_PROFILE},
            _config(s, f"[profile {CLIENT_PROFILE}]\ncredential_process = /bin/false\n"),
            None,
        ),
        "/bin/false",
        1,
        r"CredentialRetrievalError",
    ),
    "credential_process missing": (
        lambda s, r: (
            {"profile": CLIENT_PROFILE},
            _config(
                s, f"[profile {CLIENT_PROFILE}]\ncredential_process = /nonexistent/ipf-helper\n"
            ),
            None,
        ),
        "/nonexistent/ipf-helper",
        2,
        r"FileNotFoundError",
    ),
    "key id without secret": (
        lambda s, r: (
            {"profile": CLIENT_PROFILE},
            _config(s, f"[profile {CLIENT_PROFILE}]\naws_access_key_id = AKIDIPFAILOVER\n"),
            None,
        ),
        None,
        2,
        r"PartialCredentialsError",
    ),
    "profile missing": (
        lambda s, r: ({"profile": "ipf-nowhere"}, _config(s, "[default]\n"), None),
        None,
        2,
        r"ipf-nowhere.*not in this node",
    ),
    "ca_bundle missing": (
        lambda s, r: ({"ca_bundle": "/nonexistent/ipf-ca.pem"}, {}, None),
        None,
        2,
        r"/nonexistent/ipf-ca\.pem",
    ),
    "ca_bundle without certificate": (
        lambda s, r: ({"ca_bundle": _no_certificate(s)}, {}, None),
        None,
        2,
        r"ca-without-certificate\.pem.*no PEM certificate",
    ),
    "trimmed model damaged": (
        lambda s, r: ({}, {}, _damaged_tree(s, r.agent)),
        None,
        0,
        None,
    ),
}


def expect_client(name: str, agent: str, action: str) -> Expect:
    """The outcome of a broken client set-up (issue 12's exit-code rule).

    start fails at once with the fault's code and reason: 2 for what is wrong on this node (a
    missing program, profile or file), 1 for a credential_process that runs and fails (it may
    work on the next try). Monitor of a running resource says 0 with a warning naming the cause
    (the OS side is fine; the AWS check could not complete). Stop: aws-overlayip makes no AWS
    call; aws-secip's AWS part is best effort (0 and a warning); aws-eni cannot tell whether the
    ENI is still attached here, so it fails with 1 (never 2, 5 or 6) naming the cause. A damaged
    trimmed model changes nothing (botocore's own model is used).
    """
    _, _, rc, cause = CLIENT_FAULTS[name]
    if rc == 0:
        return OK
    if action == "monitor" or (action == "stop" and agent == "aws-secip"):
        return expect(0, warn=cause)
    if action == "stop":
        return OK if agent == "aws-overlayip" else expect(1, reason=cause)
    return expect(rc, reason=cause)


def client_scenario(s: Session, case: Case) -> list[Run]:
    """The action under test on node a with the broken set-up; fast when it fails."""
    res = s.resource(case.agent)
    prepare(s, res, case.action)
    setup, program, _, _ = CLIENT_FAULTS[case.name]
    params, env, agent = setup(s, res)
    run = s.run(
        "a",
        res,
        case.action,
        timeout_ms=FAST_MS,
        params={**res.params, **params},
        extra_env=env,
        agent=agent,
    )
    if program is not None:  # botocore runs the configured credential_process: expected
        run.spawned = [line for line in run.spawned if program not in line]
    s.check(run, case.opt("expect"), res)
    if run.rc not in (0, 7):
        s.require(
            run.result.duration < 3.0, f"failed after {run.result.duration:.1f}s, not at once"
        )
    consistent(s, res, f"after {case.action}", run)
    if case.action == "start":
        after_start(s, res, run)
    # botocore's model was used, and the trimmed one built for next time (aws-overlayip's stop
    # makes no AWS call, so it builds nothing).
    if agent is not None and (case.agent, case.action) != ("aws-overlayip", "stop"):
        built = list((res.rsctmp / "ipfailover-models").glob("*/ec2/*/service-2.json"))
        s.require(bool(built), "no trimmed model was built into HA_RSCTMP")
    return [run]


def client_cases(agents: Iterable[str] = AGENTS) -> list[Case]:
    return [
        Case(
            "client",
            name,
            agent,
            action,
            client_scenario,
            (("expect", expect_client(name, agent, action)),),
        )
        for agent in agents
        for name in CLIENT_FAULTS
        for action in ("stop", "monitor", "start")
    ]


# ----------------------------------------------------------------------------- the matrix


ACTIONS = ("start", "stop", "monitor")


def ec2_cases(agents: Iterable[str] = AGENTS) -> list[Case]:
    cases = []
    for agent in agents:
        for name, spec in EC2_FAULTS.items():
            for action in ACTIONS:
                want, timeout = expect_ec2(name, agent, action)
                options = {**spec, "expect": want, "timeout_ms": timeout}
                cases.append(
                    Case("ec2", name, agent, action, fault_scenario, tuple(options.items()))
                )
    return cases


def imds_cases(agents: Iterable[str] = AGENTS) -> list[Case]:
    cases = []
    for agent in agents:
        for name, mode in IMDS_MODES.items():
            for action in ACTIONS:
                want, timeout = expect_imds(name, agent, action)
                options = {"imds": mode, "expect": want, "timeout_ms": timeout}
                cases.append(
                    Case("imds", name, agent, action, fault_scenario, tuple(options.items()))
                )
    return cases


def permission_cases(calls: Mapping[tuple[str, str], Sequence[str]]) -> list[Case]:
    """``calls``: (agent, action) -> the EC2 calls a clean run of that scenario makes."""
    cases = []
    for (agent, action), names in calls.items():
        for call in dict.fromkeys(names):
            want, timeout = expect_denied(call, agent, action)
            fault = {
                "action": call,
                "kind": "error",
                "code": "UnauthorizedOperation",
                "status": 403,
            }
            options = {"fault": fault, "expect": want, "timeout_ms": timeout}
            cases.append(
                Case(
                    "permission",
                    f"deny {call}",
                    agent,
                    action,
                    fault_scenario,
                    tuple(options.items()),
                )
            )
    return cases


def kill_cases(calls: Mapping[tuple[str, str], Sequence[str]]) -> list[Case]:
    cases = []
    for (agent, action), names in calls.items():
        if action not in ("start", "stop"):
            continue
        total = len(names)
        for n in range(1, total + 1):
            name = f"SIGKILL after call {n}/{total} ({names[n - 1]})"
            options = {"n": n, "total": total}
            cases.append(Case("kill", name, agent, action, kill_scenario, tuple(options.items())))
    return cases


def race_cases(agents: Iterable[str] = AGENTS) -> list[Case]:
    return [Case("race", "both nodes start at once", a, "start", race_scenario) for a in agents]


def drift_cases(agents: Iterable[str] = AGENTS) -> list[Case]:
    return [
        Case("drift", damage, agent, action, drift_scenario, (("damage", damage),))
        for (agent, damage) in DAMAGES
        if agent in agents
        for action in ACTIONS
    ]


def parallel_cases(agents: Iterable[str] = AGENTS) -> list[Case]:
    return [
        Case("parallel", "two resources on one node", agent, action, parallel_scenario)
        for agent in agents
        for action in ("start", "stop")
    ]


def fuzz_scenario(s: Session, case: Case) -> list[Run]:
    """Hostile values of every parameter through every action (see faults.fuzz): one resource
    running on node a for all of them, one row per parameter."""
    from .fuzz import AWS_PARAMS, Fuzzer, agent_specs, metadata_parameters

    fuzzer = Fuzzer(s, case.agent)
    specs = agent_specs(s.lab, fuzzer.res)
    for param in metadata_parameters(case.agent):
        if param not in specs:
            s.fail(f"parameter {param} has no fuzzing strategy")
            continue
        explicit = case.opt("explicit")
        if param in AWS_PARAMS and case.opt("shared_once") and case.agent != AGENTS[0]:
            explicit = "none"  # the same validator as the first agent's (params.py)
        report = fuzzer.fuzz(param, specs[param], case.opt("examples"), explicit)
        rcs = " ".join(f"{rc}:{n}" for rc, n in sorted(report.rcs.items()))
        note = f"{report.examples}x4 runs, rc {rcs}"
        if report.restores:
            note += f", {report.restores} restores"
        worst = report.worst
        s.subrows.append(
            SubRow(
                name=f"fuzz {param}",
                rc=note,
                problems=[str(f) for f in report.findings],
                duration=worst.result.duration if worst else 0.0,
                timeout=worst.timeout if worst else 0.0,
            )
        )
    return []


def fuzz_cases(
    examples: int,
    explicit: str = "all",
    agents: Iterable[str] = AGENTS,
    shared_once: bool = False,
) -> list[Case]:
    """One case per agent; its rows are its parameters (from the meta-data), all four actions.
    ``explicit``: which values run besides the drawn ones (faults.fuzz.Fuzzer.fuzz); with
    ``shared_once`` the parameters every agent shares (region, endpoint_url... one validator
    in params.py) get their explicit values in the first agent only, drawn values in all."""
    options = (("examples", examples), ("explicit", explicit), ("shared_once", shared_once))
    return [Case("fuzz", "fuzz every parameter", a, "all", fuzz_scenario, options) for a in agents]


def discover(lab: Lab, agent: str, workdir: Path) -> dict[tuple[str, str], list[str]]:
    """The EC2 calls of a clean run of each scenario: start as a failover from b, then monitor
    and stop on a (the pre-states of the cases)."""
    s = Session(lab, workdir)
    res = s.resource(agent)
    s.must(s.run("b", res, "start"), OK)
    found: dict[tuple[str, str], list[str]] = {}
    for action in ("start", "monitor", "stop"):
        lab.reset_calls()
        s.must(s.run("a", res, action), OK, res)
        found[(agent, action)] = [call.action for call in lab.calls("a")]
    return found


# ----------------------------------------------------------------------------- running one case


@dataclass
class Row:
    case: Case
    ok: bool
    rc: str
    duration: float
    timeout: float
    problems: list[str] = field(default_factory=list)
    wall: float = 0.0  # seconds the whole scenario took


def execute(lab: Lab, case: Case, workdir: Path) -> list[Row]:
    """Run one case on a fresh lab world (the caller resets the lab) and judge it: one row, or
    the scenario's sub-rows (fuzzing: one per parameter), each also failed by a problem of the
    scenario as a whole."""
    began = time.monotonic()
    s = Session(lab, workdir)
    runs: list[Run] = []
    try:
        runs = case.scenario(s, case)
    except CaseFailure:
        pass  # its problems are recorded
    except Exception as exc:
        s.fail(f"scenario error: {type(exc).__name__}: {exc}")
    try:
        finish(s)
    except Exception as exc:
        s.fail(f"clean-up error: {type(exc).__name__}: {exc}")
    wall = time.monotonic() - began
    if s.subrows:
        return [
            Row(
                case=replace(case, name=sub.name),
                ok=not (sub.problems or s.problems),
                rc=sub.rc,
                duration=sub.duration,
                timeout=sub.timeout,
                problems=sub.problems + s.problems,
                wall=wall / len(s.subrows),
            )
            for sub in s.subrows
        ]
    shown = runs or s.runs[-1:]
    rc = ",".join("KILL" if r.killed_after is not None else str(r.rc) for r in shown) or "-"
    timed = [r for r in shown if r.killed_after is None] or shown
    return [
        Row(
            case=case,
            ok=not s.problems,
            rc=rc,
            duration=max((r.result.duration for r in timed), default=0.0),
            timeout=timed[0].timeout if timed else 0.0,
            problems=list(s.problems),
            wall=wall,
        )
    ]
