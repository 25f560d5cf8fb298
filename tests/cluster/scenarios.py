"""Failover scenarios: each agent in the fenced lab cluster, real traffic through the data plane.

    with FailoverLab(workdir, say=print) as world:
        result = world.run("aws-secip", "crash")
        print(format_result(result))

The world: a Lab with the data plane (lab.dataplane), a two-node cluster fenced by fence_aws
(cluster.fencing), the service (lab/netprobe.py) running *inside* each cluster node (it dies with
the node), and the probe client in the client namespace. Each agent is configured from its
crm-examples/ file with the placeholders replaced (cluster.examples), plus a location
preference for node a so every scenario starts from a.

Scenarios (the service IP is active on a, the client gets answers from a):

- ``move``: planned move, ``standby a``; Pacemaker stops the resource on a, starts it on b.
- ``crash``: a crashes (cluster.kill: corosync, pacemaker, the agents and the service die at
  once; its network and OS addresses stay); b notices, fences a with fence_aws (the lab cuts a
  off, then reboots it), and starts the resource.
- ``crash-in-start``: a crashes as above, and the agent's start on the surviving b is SIGKILLed
  while it waits for the answer of the EC2 call that moves the address in AWS: the lab carries
  the call out at once and holds its answer (fault kind ``late``), so the agent dies with the
  change made in AWS and the OS side not done. With
  ``start-failure-is-fatal=false`` Pacemaker recovers on b (stop, then start again), and that
  start must repair the half-done state. (With the default, true, the failed start bans the
  resource from b, the only node left: it stays stopped until an administrator cleans it up.)

- ``reboot``: aws-health runs as a clone (crm-examples/aws-health.crm, migrate-on-red) and AWS
  schedules a ``system-reboot`` of a, NotBefore EVENT_AHEAD seconds away: a's IMDS lists it,
  aws-health turns a's ``#health-aws`` red, Pacemaker moves everything to b; at NotBefore the
  lab does what EC2 does (lab.power): a graceful shutdown of a (its cluster stack stops), the
  hard stop, the boot. The outage counts from a turning red (what standby is to ``move``).
- ``reboot-baseline``: the same event without aws-health: nothing happens until NotBefore, when
  EC2's shutdown stops a's cluster stack and Pacemaker moves the resource then (here a clean
  stop within the grace period; on EC2 a stop that outlasts it, SAP HANA's for one, ends in a
  hard stop: a crash). The outage counts from NotBefore.

For each: the client-observed outage (lab.traffic.measure), the Pacemaker timeline from the nodes'
logs (cluster.timeline), and checks of the final state in Pacemaker, AWS, the data plane, the
nodes' OS and the client.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from lab import Lab, wait_until
from lab.power import EventAction
from lab.traffic import Outage, Probe, Sample, measure, service_argv

from .cluster import Cluster, Spawned, processes_in
from .examples import instantiate, with_params
from .fencing import FenceAws
from .health import ATTRIBUTE, announce, drop_strategy, health_crm, health_values
from .status import Status
from .timeline import Event, events

AGENTS = ("aws-overlayip", "aws-secip", "aws-eni")
SCENARIOS = ("move", "crash", "crash-in-start")
TITLES = {
    "move": "planned move (standby a)",
    "crash": "crash of a, fenced",
    "crash-in-start": "crash of a, b's start killed",
}
# AWS's scheduled maintenance, with and without aws-health (run_event)
HEALTH_SCENARIOS = ("reboot", "reboot-baseline")
TITLES.update({"reboot": "scheduled reboot of a", "reboot-baseline": "reboot of a, no aws-health"})
# seconds from AWS's announcement to NotBefore (days on EC2): a 2 s monitor, aws-health's
# settling of its claim, and the move, with room for a loaded machine
EVENT_AHEAD = 30.0
HEALTH_TIMEOUT = 60.0  # aws-health started and green on every node
GOAL_MARGIN = 0.5  # the goal: outage with aws-health <= the agent's planned move + this
START_TIMEOUT = 90.0  # first placement on a
RECOVERY_TIMEOUT = 120.0  # from the fault to the resource started on b
ANSWER_TIMEOUT = 60.0
FAULT_DELAY = 3.0  # how long the answer of the call during which the agent is killed is held
START_FAILURE_IS_FATAL = (
    "crm_attribute",
    "--type",
    "crm_config",
    "--name",
    "start-failure-is-fatal",
)
OVERLAY_TABLES = ("rtb-0123456789abcdef0", "rtb-0fedcba9876543210")
Say = Callable[[str], None]


@dataclass(frozen=True)
class Case:
    """One agent as configured in the lab: its resource, the address the client asks, the EC2
    call that moves the address in AWS (held while the agent is killed)."""

    agent: str
    resource: str
    crm: str
    address: str
    fault_action: str
    eni_id: Optional[str] = None  # aws-eni: the ENI that moves
    elastic_ip: Optional[str] = None  # the public address the client asks instead of `address`

    @property
    def target(self) -> str:
        """The address the client asks."""
        return self.elastic_ip or self.address


@dataclass
class Check:
    what: str
    ok: bool
    detail: str = ""


@dataclass
class Result:
    agent: str
    scenario: str
    old: str
    new: str
    fault: float  # time.time() of the fault
    outage: Outage
    timeline: list[Event]
    checks: list[Check] = field(default_factory=list)
    samples: int = 0
    not_before: Optional[float] = None  # reboot scenarios: the event's NotBefore (time.time())

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def first(self, prefix: str, contains: str = "") -> Optional[float]:
        """Seconds from the fault to the first timeline event starting with prefix."""
        for event in self.timeline:
            if event.text.startswith(prefix) and contains in event.text:
                return event.time - self.fault
        return None


def make_case(agent: str, lab: Lab) -> Case:
    """The agent's example from crm-examples/, with the lab's ids and endpoint."""
    extra = {"endpoint_url": lab.endpoint_url}
    if agent == "aws-overlayip":
        replacements = dict(zip(OVERLAY_TABLES, lab.route_tables[:2]))
        crm = instantiate("aws-overlayip.crm", replacements)
        return Case(
            agent, "rsc_ip_HA1_HDB00", with_params(crm, extra), "192.168.100.10", "ReplaceRoute"
        )
    if agent == "aws-secip":
        crm = instantiate("aws-secip.crm", {}, only=["rsc_ip_app"])
        return Case(
            agent, "rsc_ip_app", with_params(crm, extra), "10.0.1.50", "AssignPrivateIpAddresses"
        )
    if agent == "aws-eni":
        eni = lab.create_eni(subnet="c", description="ipfailover lab: the database's ENI")
        crm = instantiate("aws-eni.crm", {"eni-0123456789abcdef0": eni.id})
        return Case(
            agent,
            "rsc_eni_db",
            with_params(crm, extra),
            eni.ip,
            "AttachNetworkInterface",
            eni_id=eni.id,
        )
    raise ValueError(f"unknown agent {agent!r}")


def node_of_eni(lab: Lab, eni_id: Optional[str]) -> Optional[str]:
    return next((n.name for n in lab.nodes.values() if n.eni_id == eni_id), None)


def node_of_instance(lab: Lab, instance_id: Optional[str]) -> Optional[str]:
    return next((n.name for n in lab.nodes.values() if n.instance_id == instance_id), None)


def aws_owner(lab: Lab, case: Case) -> Optional[str]:
    """Where AWS sends the address (for overlay IPs: every managed table must agree)."""
    if case.agent == "aws-overlayip":
        found = set()
        tables = lab.ec2().describe_route_tables(RouteTableIds=lab.route_tables[:2])
        for table in tables["RouteTables"]:
            route = [
                r for r in table["Routes"] if r.get("DestinationCidrBlock") == f"{case.address}/32"
            ]
            found.add(node_of_eni(lab, route[0].get("NetworkInterfaceId")) if route else None)
        if len(found) == 1:
            return found.pop()
        return "split:" + ",".join(sorted(str(f) for f in found))
    if case.agent == "aws-secip":
        enis = lab.ec2().describe_network_interfaces(
            Filters=[{"Name": "addresses.private-ip-address", "Values": [case.address]}]
        )["NetworkInterfaces"]
        return node_of_eni(lab, enis[0]["NetworkInterfaceId"]) if enis else None
    attachment = lab.eni(str(case.eni_id)).get("Attachment") or {}
    if attachment.get("Status") != "attached":
        return None
    return node_of_instance(lab, attachment.get("InstanceId"))


def aws_view(lab: Lab, case: Case) -> str:
    """The owner in AWS, in words (for an ENI with its attachment state)."""
    if case.agent == "aws-eni":
        attachment = lab.eni(str(case.eni_id)).get("Attachment") or {}
        node = node_of_instance(lab, attachment.get("InstanceId"))
        return f"{attachment.get('Status')} to {node}" if node else "not attached"
    return f"sends it to {aws_owner(lab, case) or 'nobody'}"


def elastic_ip_checks(lab: Lab, public: str, private: str, new: str) -> list[Check]:
    """The Elastic IP is associated with `private` on new's ENI, and the VPC translates it."""
    found = lab.ec2().describe_addresses(PublicIps=[public])["Addresses"]
    association = found[0] if found else {}
    where = node_of_eni(lab, association.get("NetworkInterfaceId"))
    at = association.get("PrivateIpAddress")
    translated = lab.elastic_ips().get(public)
    return [
        Check(
            f"AWS: the Elastic IP {public} is associated with {private} on {new}",
            where == new and at == private,
            f"{at} on {where}",
        ),
        Check(
            f"VPC data plane translates {public} to {private}",
            translated == private,
            str(translated),
        ),
    ]


def runs_on(resource: str, node: str) -> Callable[[Status], bool]:
    def check(status: Status) -> bool:
        state = status.resources.get(resource)
        return (
            state is not None
            and state.role == "Started"
            and not state.failed
            and state.nodes == (node,)
        )

    return check


class FailoverLab:
    def __init__(
        self,
        workdir: Path,
        *,
        say: Optional[Say] = None,
        fencing: Optional[FenceAws] = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.say: Say = say or (lambda _: None)
        self.fencing = fencing or FenceAws()
        self.lab: Optional[Lab] = None
        self.cluster: Optional[Cluster] = None
        self.services: dict[str, Spawned] = {}
        self.cases: dict[str, Case] = {}

    # ---- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> FailoverLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        try:
            self.say("starting the lab: simulated EC2 and VPC data plane, IMDS per node ...")
            lab = self.lab = Lab(self.workdir / "lab", dataplane=True)
            lab.start()
            self.say(
                f"lab up in {lab.start_seconds:.1f}s: "
                + ", ".join(f"{n.name}={n.instance_id} ({n.ip})" for n in lab.nodes.values())
                + f"; client {lab.client.ip if lab.client else '?'}"
            )
            self.say("starting the cluster: corosync + pacemaker in each node, fence_aws ...")
            cluster = self.cluster = Cluster(lab, self.workdir / "cluster", fencing=self.fencing)
            cluster.start()
            cluster.wait_ready(90.0)
            self.say(f"cluster up in {cluster.start_seconds:.1f}s, fencing device started")
            self.ensure_services()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        cluster, self.cluster = self.cluster, None
        lab, self.lab = self.lab, None
        try:
            if cluster is not None:
                cluster.close()
        finally:
            if lab is not None:
                lab.close()

    @property
    def world(self) -> tuple[Lab, Cluster]:
        if self.lab is None or self.cluster is None:
            raise RuntimeError("the failover lab is not started")
        return self.lab, self.cluster

    def ensure_services(self) -> None:
        """The service runs in every running node (started again after a node restart)."""
        _, cluster = self.world
        for node in cluster.running:
            spawned = self.services.get(node)
            if spawned is not None and cluster.spawned_alive(spawned):
                continue
            if spawned is not None:
                cluster.unspawn(spawned)
            self.services[node] = cluster.spawn(
                node, service_argv(node), log=self.workdir / f"service-{node}.log"
            )

    def case(self, agent: str) -> Case:
        if agent not in self.cases:
            self.cases[agent] = make_case(agent, self.world[0])
        return self.cases[agent]

    def reset(self) -> None:
        """Both nodes up and online, no resources but fencing, no faults, services running."""
        lab, cluster = self.world
        lab.clear_faults()
        cluster.restore(90.0)
        cluster.exec(
            cluster.any_node(),
            [*START_FAILURE_IS_FATAL, "--delete"],
        )
        self.ensure_services()

    def place(self, case: Case, node: str = "a") -> None:
        """Configure the agent's resource, preferring `node`; wait until it runs there."""
        lab, cluster = self.world
        cluster.configure(case.crm + f"location loc_{case.resource} {case.resource} 50: {node}\n")
        cluster.wait_for(
            runs_on(case.resource, node), START_TIMEOUT, what=f"{case.resource} on {node}"
        )
        wait_until(lambda: aws_owner(lab, case) == node, 10.0, what=f"AWS sends it to {node}")

    # ---- scenarios -------------------------------------------------------------------------------

    def run(self, agent: str, scenario: str, old: str = "a", new: str = "b") -> Result:
        if scenario in HEALTH_SCENARIOS:
            return self.run_event(agent, scenario, old, new)
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}")
        lab, cluster = self.world
        case = self.case(agent)
        self.say(f"== {agent}: {TITLES[scenario]}")
        self.reset()
        self.place(case, old)
        self.say(f"   {case.resource} runs on {old}; the client asks {case.target}:8080")
        marks: list[Event] = []
        probe = Probe(
            lab, case.target, self.workdir / f"probe-{agent}-{scenario}.jsonl", max_seconds=300
        )
        with probe:
            probe.wait_for_answers(old, 5, ANSWER_TIMEOUT)
            if scenario == "crash-in-start":
                cluster.exec(
                    cluster.any_node(), [*START_FAILURE_IS_FATAL, "--update", "false"], check=True
                )
                lab.set_fault(case.fault_action, "late", delay=FAULT_DELAY, count=1, node=new)
            fault = time.time()
            if scenario == "move":
                cluster.standby(old)
                marks.append(Event(fault, "lab", f"standby {old}"))
            else:
                cluster.kill(old)
                marks.append(
                    Event(fault, "lab", f"{old} crashes (corosync, pacemaker, service killed)")
                )
            if scenario == "crash-in-start":
                marks += self._kill_in_start(case, new)
            self.say(f"   {marks[0].text}: waiting for {case.resource} on {new} ...")
            cluster.wait_for(
                runs_on(case.resource, new), RECOVERY_TIMEOUT, what=f"{case.resource} on {new}"
            )
            cluster.settle(RECOVERY_TIMEOUT)  # no recovery action left to run
            with contextlib.suppress(TimeoutError, RuntimeError):
                probe.wait_for_answers(new, 5, ANSWER_TIMEOUT)
            time.sleep(0.3)
        samples = probe.stop()
        outage = measure(samples, fault, new, old)
        timeline = self._timeline(case, fault, samples, outage) + marks
        timeline.sort(key=lambda e: e.time)
        result = Result(agent, scenario, old, new, fault, outage, timeline, samples=len(samples))
        result.checks = self.check(case, scenario, old=old, new=new, samples=samples, outage=outage)
        seconds = f"{outage.seconds:.2f}s" if outage.seconds is not None else "never ended"
        verdict = "all checks passed" if result.ok else "CHECKS FAILED"
        self.say(f"   client outage {seconds} ({outage.failed} failed requests); {verdict}")
        return result

    def run_event(self, agent: str, scenario: str, old: str = "a", new: str = "b") -> Result:
        """A scheduled system-reboot of `old`, with aws-health (``reboot``) or without."""
        lab, cluster = self.world
        case = self.case(agent)
        with_health = scenario == "reboot"
        self.say(f"== {agent}: {TITLES[scenario]}")
        self.reset()
        try:
            if with_health:
                cluster.configure(health_crm(lab))
                cluster.wait_for(
                    lambda s: health_values(cluster) == dict.fromkeys(cluster.names, "green"),
                    HEALTH_TIMEOUT,
                    what=f"{ATTRIBUTE} green on every node",
                )
            self.place(case, old)
            self.say(f"   {case.resource} runs on {old}; the client asks {case.target}:8080")
            probe = Probe(
                lab, case.target, self.workdir / f"probe-{agent}-{scenario}.jsonl", max_seconds=300
            )
            with probe:
                probe.wait_for_answers(old, 5, ANSWER_TIMEOUT)
                announced = time.time()
                not_before, _ = announce(lab, old, "system-reboot", EVENT_AHEAD)
                marks = [
                    Event(
                        announced,
                        "lab",
                        f"AWS schedules a system-reboot of {old}, NotBefore in "
                        f"{not_before - announced:.1f}s",
                    )
                ]
                self.say(f"   {marks[0].text}: waiting for {case.resource} on {new} ...")
                cluster.wait_for(
                    runs_on(case.resource, new),
                    EVENT_AHEAD + RECOVERY_TIMEOUT,
                    what=f"{case.resource} on {new}",
                    node=new,
                )
                action = wait_until(
                    lambda: next(
                        (
                            a
                            for a in lab.event_actions()
                            if a.node == old and a.at == not_before and a.phase == "done"
                        ),
                        None,
                    ),
                    max(0.0, not_before - time.time()) + RECOVERY_TIMEOUT,
                    what=f"EC2's reboot of {old}",
                )
                wait_until(
                    lambda: _gone(cluster, old), RECOVERY_TIMEOUT, what=f"{old} out of the cluster"
                )
                cluster.settle(RECOVERY_TIMEOUT, node=new)
                with contextlib.suppress(TimeoutError, RuntimeError):
                    probe.wait_for_answers(new, 5, ANSWER_TIMEOUT)
                time.sleep(0.3)
            samples = probe.stop()
            marks += _action_marks(action, old)
            found = self._timeline(case, announced, samples, measure(samples, announced, new, old))
            red = next(
                (e.time for e in found if e.text == f"{old}: {ATTRIBUTE} green -> red"), None
            )
            trigger = (red or announced) if with_health else (action.shutdown or not_before)
            outage = measure(samples, trigger, new, old)
            timeline = self._timeline(case, announced, samples, outage) + marks
            timeline.sort(key=lambda e: e.time)
            result = Result(
                agent, scenario, old, new, trigger, outage, timeline, samples=len(samples)
            )
            result.not_before = not_before
            result.checks = self.check(
                case, scenario, old=old, new=new, samples=samples, outage=outage
            )
            result.checks += self._event_checks(result, action, with_health, red)
        finally:
            if with_health:
                drop_strategy(cluster)
        seconds = f"{outage.seconds:.2f}s" if outage.seconds is not None else "never ended"
        verdict = "all checks passed" if result.ok else "CHECKS FAILED"
        self.say(f"   client outage {seconds} ({outage.failed} failed requests); {verdict}")
        return result

    def _event_checks(
        self, result: Result, action: EventAction, with_health: bool, red: Optional[float]
    ) -> list[Check]:
        lab, _ = self.world
        old, at = result.old, result.not_before or 0.0
        checks = []
        power = lab.power()[old]
        checks.append(
            Check(
                f"EC2 shut {old} down at NotBefore, cleanly, and rebooted it",
                action.graceful is True
                and action.shutdown is not None
                and at <= action.shutdown < at + 1.0
                and power.boots >= 1
                and power.state == "running",
                f"graceful={action.graceful}, shutdown at {_rel(action.shutdown, at)} from "
                f"NotBefore, {power.boots} boots, now {power.state}",
            )
        )
        if with_health:
            checks.append(
                Check(f"aws-health turned {old} red", red is not None, "no red in the log")
            )
            steady = result.outage.steady
            checks.append(
                Check(
                    f"the service answered from {result.new} for good before NotBefore",
                    steady is not None and steady < at,
                    f"at {_rel(steady, at)} from NotBefore",
                )
            )
            reds = [
                e for e in result.timeline if e.text == f"{result.new}: {ATTRIBUTE} green -> red"
            ]
            checks.append(Check(f"{result.new} stayed green", not reds, f"{len(reds)} reds"))
        return checks

    def _kill_in_start(self, case: Case, new: str) -> list[Event]:
        """SIGKILL the agent's start on `new` once the lab holds its `case.fault_action` call."""
        lab, _ = self.world
        wait_until(
            lambda: not any(r["action"] == case.fault_action for r in lab.fault_rules()),
            RECOVERY_TIMEOUT,
            interval=0.01,
            what=f"{case.agent} on {new} to call {case.fault_action}",
        )
        held = time.time()
        pids = wait_until(
            lambda: self.agent_pids(new, case.agent, "start"), 5.0, what="the agent's process"
        )
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        text = f"{case.fault_action} from {new} carried out, its answer held"
        marks = [Event(held, "lab", text)]
        marks.append(
            Event(
                time.time(),
                "lab",
                f"SIGKILL {case.agent} start on {new}, inside {case.fault_action}",
            )
        )
        # what the killed start left (a secondary IP moves after assign_delay, an ENI attaches
        # after attach_delay: AWS shows the change a moment later)
        marks.append(
            Event(
                time.time(),
                "lab",
                f"at the kill: AWS: {aws_view(lab, case)}; "
                f"OS: {', '.join(lab.os_owners(case.address)) or 'on no node'}",
            )
        )
        return marks

    def agent_pids(self, node: str, agent: str, action: str) -> list[int]:
        """Host PIDs of the node's processes running `agent action`."""
        _, cluster = self.world
        running = cluster.running.get(node)
        if running is None:
            return []
        found = []
        for pid in processes_in([running.pid_ns], "pid"):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            words = [a.decode(errors="replace") for a in argv]
            if any(w.endswith(f"/ipfailover/{agent}") for w in words) and action in words:
                found.append(pid)
        return found

    def _timeline(
        self, case: Case, fault: float, samples: Sequence[Sample], outage: Outage
    ) -> list[Event]:
        _, cluster = self.world
        logs = [(name, cluster.log(name)) for name in cluster.names]
        found = events(logs, [case.resource], since=fault - 0.01)
        before = [s for s in samples if s.t < fault and s.node is not None]
        if before:
            found.append(
                Event(before[-1].t, "client", f"last answer before the fault: {before[-1].node}")
            )
        if outage.first_new is not None:
            found.append(Event(outage.first_new, "client", f"first answer from {outage.new}"))
        if outage.steady is not None and outage.steady != outage.first_new:
            text = f"answers from {outage.new} for good (after {outage.relapses} relapses)"
            found.append(Event(outage.steady, "client", text))
        return found

    # ---- final state -----------------------------------------------------------------------------

    def check(
        self,
        case: Case,
        scenario: str,
        *,
        old: str,
        new: str,
        samples: Sequence[Sample],
        outage: Outage,
    ) -> list[Check]:
        lab, cluster = self.world
        checks = []
        status = cluster.crm_mon()
        state = status.resources.get(case.resource)
        checks.append(
            Check(
                f"Pacemaker: {case.resource} started on {new} only",
                runs_on(case.resource, new)(status),
                f"{state.role} on {','.join(state.nodes)}" if state else "not in the status",
            )
        )
        failures = [f for f in status.failures if f.resource == case.resource]
        if scenario == "crash-in-start":
            expected = [f for f in failures if f.task == "start" and f.node == new]
            checks.append(
                Check(
                    f"Pacemaker: the killed start on {new} is the only failure",
                    bool(expected) and len(expected) == len(failures),
                    "; ".join(
                        f"{f.task} on {f.node}: {f.exitstatus} {f.exitreason}" for f in failures
                    ),
                )
            )
        else:
            checks.append(
                Check(
                    "Pacemaker: no failed actions",
                    not failures,
                    "; ".join(f"{f.task} on {f.node}: {f.exitreason}" for f in failures),
                )
            )
        owner = aws_owner(lab, case)
        checks.append(Check(f"AWS: {case.address} belongs to {new}", owner == new, str(owner)))
        forwarded = lab.forwarded_to(case.address)
        checks.append(
            Check(
                f"VPC data plane forwards {case.address} to {new}", forwarded == new, str(forwarded)
            )
        )
        owners = lab.os_owners(case.address)
        checks.append(
            Check(f"OS: {case.address} configured on {new} only", owners == [new], str(owners))
        )
        if case.elastic_ip is not None:
            checks += elastic_ip_checks(lab, case.elastic_ip, case.address, new)
        last = [s.node for s in samples[-5:]]
        checks.append(
            Check(f"client: the last answers come from {new}", last == [new] * 5, str(last))
        )
        checks.append(
            Check(
                "client: the outage was observed and ended",
                outage.observed and outage.ended,
                f"{outage.failed} failed requests",
            )
        )
        checks.append(
            Check(
                "client: no answer from a node that did not own the address",
                outage.stray == 0,
                f"{outage.stray} stray answers",
            )
        )
        if scenario in ("crash", "crash-in-start"):
            power = lab.power()[old]
            checks.append(
                Check(
                    f"fence_aws power-cycled {old}'s instance",
                    power.offs >= 1 and power.state == "running",
                    f"{power.offs} power cuts, {power.boots} boots, now {power.state}",
                )
            )
        if case.agent == "aws-eni" and case.eni_id is not None:
            eni = lab.eni(case.eni_id)
            checks.append(
                Check(
                    f"AWS: the ENI is attached to {new} as device 1",
                    (eni.get("Attachment") or {}).get("DeviceIndex") == 1,
                    str((eni.get("Attachment") or {}).get("DeviceIndex")),
                )
            )
        return checks


def _gone(cluster: Cluster, node: str) -> bool:
    """Whether `node` has stopped (check_running takes a node that EC2 shut down out)."""
    cluster.check_running()
    return node not in cluster.running


def _rel(moment: Optional[float], reference: float) -> str:
    return "-" if moment is None else f"{moment - reference:+.2f}s"


def _action_marks(action: EventAction, node: str) -> list[Event]:
    """The lab's (EC2's) steps of an event action, as timeline events."""
    steps = [
        (action.shutdown, f"NotBefore: EC2 shuts {node} down (SIGTERM to its init)"),
        (action.halted, f"{node}'s OS halted (cluster stack stopped)"),
        (action.hard_stop, f"{node}: hard stop (power cut)"),
        (action.booted, f"{node} booted (its cluster stack is not started at boot)"),
    ]
    return [Event(at, "lab", text) for at, text in steps if at is not None]


# ---- presentation ------------------------------------------------------------------------------


def format_seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}s"


def format_timeline(result: Result) -> str:
    lines = [f"timeline of {result.agent}, {TITLES[result.scenario]} (t=0: the fault)"]
    for event in result.timeline:
        lines.append(f"  {event.time - result.fault:+8.2f}s  {event.node:<6} {event.text}")
    return "\n".join(lines)


def format_checks(result: Result) -> str:
    return "\n".join(
        f"  [{'ok' if c.ok else 'FAIL'}] {c.what}" + ("" if c.ok else f": {c.detail}")
        for c in result.checks
    )


def format_table(results: Sequence[Result]) -> str:
    """The outage table: one line per scenario, readable at a glance."""
    head = (
        f"{'agent':<14} {'scenario':<27} {'outage':>8} {'gap':>7} {'failed':>6} "
        f"{'detected':>8} {'fenced':>7} {'started':>8}  final state"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        fenced = r.first(f"{r.old} fenced")
        detected = r.first(f"{r.old} left the membership")
        started = _started(r)
        lines.append(
            f"{r.agent:<14} {TITLES[r.scenario]:<27} {format_seconds(r.outage.seconds):>8} "
            f"{format_seconds(r.outage.gap):>7} {r.outage.failed:>6} "
            f"{format_seconds(detected):>8} {format_seconds(fenced):>7} "
            f"{format_seconds(started):>8}  "
            + ("ok" if r.ok else "FAILED: " + "; ".join(c.what for c in r.checks if not c.ok))
        )
    lines += [
        "outage: from the fault until the new node answers for good (the client's view); gap: "
        "the longest time",
        "without any answer; failed: requests (one every 50 ms, 0.1 s timeout) left unanswered;",
        "detected, fenced, started (after the fault, from the Pacemaker log): the crashed node "
        "left the membership,",
        "fence_aws finished, the agent's (last) start on the new node returned.",
    ]
    return "\n".join(lines)


def format_health_goal(results: Sequence[Result]) -> str:
    """Per agent with a ``reboot`` row: its outage against the goal (the same agent's planned
    move + GOAL_MARGIN) and the baseline; "" without reboot rows."""
    lines = []
    for r in results:
        if r.scenario != "reboot":
            continue
        moves = [m for m in results if m.agent == r.agent and m.scenario == "move"]
        bases = [b for b in results if b.agent == r.agent and b.scenario == "reboot-baseline"]
        text = f"{r.agent:<14} with aws-health {format_seconds(r.outage.seconds)}"
        if r.outage.steady is not None and r.not_before is not None:
            ahead = r.not_before - r.outage.steady
            text += f", {abs(ahead):.1f}s {'before' if ahead > 0 else 'AFTER'} NotBefore"
        if moves and moves[0].outage.seconds is not None and r.outage.seconds is not None:
            goal = moves[0].outage.seconds + GOAL_MARGIN
            verdict = "met" if r.outage.seconds <= goal else "MISSED"
            text += f"; goal <= planned move {moves[0].outage.seconds:.2f}s + {GOAL_MARGIN}s: "
            text += verdict
        if bases:
            text += f"; without aws-health {format_seconds(bases[0].outage.seconds)} at NotBefore"
        lines.append(text)
    if not lines:
        return ""
    head = [
        "scheduled maintenance (system-reboot of a, announced "
        f"{EVENT_AHEAD:.0f}s ahead); outage from the trigger: a's "
        f"{ATTRIBUTE} red (with aws-health) or EC2's shutdown at NotBefore (without):"
    ]
    return "\n".join(head + lines)


def _started(result: Result) -> Optional[float]:
    """Seconds from the fault to the last successful start on the new node."""
    found = None
    for event in result.timeline:
        if event.text.endswith(f": start on {result.new}: ok"):
            found = event.time - result.fault
    return found
