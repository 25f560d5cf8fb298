"""The lab server: moto's EC2 behind fault injection, IMDS per node, hotplug, and a control API.

One process (``python -m lab.server``), started by the harness. It listens on 127.0.0.1:<port>
in the host namespace (tests, control API under /_lab/) and, once the harness has sent the
topology, on the same 127.0.0.1:<port> inside every node namespace plus 169.254.169.254:80
(IMDS) and 127.0.0.1:443 (HTTPS for ec2.<region>.amazonaws.com, lab.tls) there. The node
sockets are created from this process by entering the namespace with setns(); every listener
knows which node it serves and passes that on in the WSGI environ.

The ticker (every 20 ms, and at once after a call that may change something) completes
transitions, hotplugs ENI links, acts on instance power changes (lab.power), starts the event
actions whose time has come (what EC2 does at a scheduled event's NotBefore, lab.power) and,
with a data plane, makes the VPC namespace forward what AWS says (lab.dataplane).

moto is not thread-safe: every call into it (and into the fidelity World) holds LOCK (in
lab.ec2_api). Injected latency, late answers and black holes wait outside the lock.

The server is put together from parts by concern: lab.listeners (transport), lab.hotplug (ENI
links), lab.ec2_api (the EC2 endpoint), lab.control (the control API); this module has its
life cycle, the ticker, power, and ``main``.

With an IAM policy set (POST /_lab/iam), a request signed with a node's instance role key is
authorized by lab.iam before moto (or the DryRun answer) sees it; a denial is a 403
UnauthorizedOperation like EC2's.

Protocol with the harness: when ready, one JSON line on stdout: {"ready": true, "port": N,
"pid": P}. The server stops on SIGTERM/SIGINT, or when stdin reaches EOF or its parent dies (the
harness is gone): then it also deletes the lab namespaces it was told about.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import signal
import ssl
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from . import iam, netns, power, sts
from .control import Control
from .dataplane import DataPlane, Forwarding, elastic_ips
from .dataplane import plan as plan_forwarding
from .ec2_api import LOCK, LOG
from .faults import (
    CallLog,
    FaultTable,
)
from .hotplug import Hotplug, Plugged
from .listeners import Listener, StartResponse, WSGIApp, never, open_socket, serve
from .power import EventAction, PowerState
from .spec import (
    LabSpec,
    Timing,
    bridge_name,
    gateway,
    prefixlen,
    veth_name,
)
from .throttle import Buckets, ThrottleModel
from .tls import REGIONAL_ADDRESS, REGIONAL_PORT, Certificates, make_certificates, regional_hostname

TICK_SECONDS = 0.02
IMDS_ADDRESS = "169.254.169.254"


class LabServer(Control):
    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import create_backend_app

        from . import fidelity

        self.fidelity = fidelity
        self.moto_app: WSGIApp = create_backend_app("ec2")
        self.world = fidelity.World("123456789012", "eu-central-1", Timing())
        fidelity.install(self.world)
        self.faults = FaultTable()
        # EC2's request throttling (lab.throttle): the account's token buckets, drawn by every
        # request that faults apply to (the nodes' clients), never by the lab's own reads.
        self.throttle = Buckets()
        self.calls = CallLog()
        self.hotplug = Hotplug()
        self.listeners: list[Listener] = []
        self.port = 0
        self.spec: LabSpec | None = None
        self.topology: dict[str, Any] | None = None
        self.imds: dict[str, Any] = {}
        self.instance_node: dict[str, str] = {}
        self.stop = threading.Event()
        self.wake = threading.Event()  # an API call may have changed what the ticker follows
        self.orphaned = False
        self.generation = 0  # bumped by every teardown
        self.certificates: dict[str, Certificates] = {}  # region -> CA and server certificate
        self.dataplane: DataPlane | None = None
        self.power: dict[str, PowerState] = {}
        self.power_lock = threading.Lock()
        # What EC2 does at events' NotBefore (lab.power), in the order scheduled; power_lock.
        self.event_actions: list[EventAction] = []
        # The identity policy of the nodes' instance role, enforced on requests signed with a
        # node's IMDS credentials (lab.iam); None: nothing is enforced. Guarded by LOCK.
        self.policy: tuple[dict[str, Any], iam.Policy] | None = None
        # The roles the lab's STS lets callers assume, and the sessions it issued (lab.sts).
        self.roles: dict[str, sts.LabRole] = {}
        self.sessions: dict[str, sts.Session] = {}

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self, port: int) -> None:
        sock = open_socket("127.0.0.1", port, None)
        self.port = sock.getsockname()[1]
        self.listeners.append(serve("host", "api", sock, self.app_for("host"), never))
        threading.Thread(target=self.ticker, daemon=True, name="ticker").start()

    def shutdown(self) -> None:
        self.teardown()
        for listener in self.listeners:
            listener.stop()
        self.listeners.clear()

    def setup(self, spec: LabSpec) -> dict[str, Any]:
        from . import topology

        if self.spec is not None:
            raise ValueError("the lab is already set up; tear it down first")
        with LOCK:
            self.world.reset(spec.timing)
            self.world.region = spec.region
            self.world.account_id = "123456789012"
            topo = topology.build(self.world.backend, spec)
            self.spec, self.topology = spec, topo
            self.instance_node = {n["instance_id"]: name for name, n in topo["nodes"].items()}
        self.throttle.configure(ThrottleModel.from_json(spec.throttle))
        self.throttle.reset()
        from .imds import Imds

        for node in spec.nodes:
            info = topo["nodes"][node.name]
            imds = Imds(
                node=node.name,
                instance_id=info["instance_id"],
                region=spec.region,
                account_id=topo["account_id"],
                role=topo["role_name"],
                lock=LOCK,
                backend=lambda: self.world.backend,
                guest_enis=self.hotplug.enis_of,
                calls=self.calls,
            )
            self.imds[node.name] = imds
            api = open_socket("127.0.0.1", self.port, node.netns)
            self.listeners.append(serve(node.name, "api", api, self.app_for(node.name), never))
            regional = open_socket(REGIONAL_ADDRESS, REGIONAL_PORT, node.netns)
            self.listeners.append(
                serve(
                    node.name,
                    "api-tls",
                    regional,
                    self.app_for(node.name),
                    never,
                    ssl_context=self.tls_context(spec.region),
                )
            )
            meta = open_socket(IMDS_ADDRESS, 80, node.netns)
            self.listeners.append(serve(node.name, "imds", meta, imds, imds.refuses))
        topo["credentials"] = {
            name: {"AccessKeyId": imds.credentials["AccessKeyId"]}
            for name, imds in self.imds.items()
        }
        with self.power_lock:
            self.power = {node.name: PowerState(changed=time.time()) for node in spec.nodes}
        if spec.dataplane:
            self.dataplane = DataPlane(spec.vpc_netns)
        topo["regional_endpoint"] = f"https://{regional_hostname(spec.region)}"
        return topo

    def tls_context(self, region: str) -> ssl.SSLContext:
        if region not in self.certificates:
            self.certificates[region] = make_certificates([regional_hostname(region)])
        return self.certificates[region].server_context()

    def teardown(self) -> None:
        """Forget the topology: close node listeners, reset moto and every knob."""
        node_listeners = [lst for lst in self.listeners if lst.node != "host"]
        stoppers = [threading.Thread(target=lst.stop) for lst in node_listeners]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        self.listeners = [lst for lst in self.listeners if lst.node == "host"]
        with LOCK:
            self.generation += 1
            self.spec = None
            self.topology = None
            self.imds.clear()
            self.instance_node.clear()
            self.faults.clear()
            self.calls.clear()
            self.throttle.reset()
            self.policy = None
            self.roles, self.sessions = {}, {}
            self.world.reset(Timing())
            self.dataplane = None
        with self.power_lock:
            self.power = {}
            for action in self.event_actions:
                if action.phase == "scheduled":
                    action.phase = "cancelled"
            self.event_actions = []
        self.hotplug.forget()

    def namespaces(self) -> list[str]:
        spec = self.spec
        if spec is None:
            return []
        extra = [spec.client_netns] if spec.dataplane else []
        return [n.netns for n in spec.nodes] + [spec.vpc_netns, *extra]

    # ---- ticker: transitions and hotplug ---------------------------------------------------

    def ticker(self) -> None:
        while not self.stop.is_set():
            self.wake.wait(TICK_SECONDS)
            self.wake.clear()
            if self.stop.is_set():
                return
            try:
                self.tick()
            except Exception:
                LOG.exception("tick failed")

    def tick(self) -> None:
        with LOCK:
            spec = self.spec
            if spec is None:
                return
            generation = self.generation
            self.world.tick()
            links = self.world.guest_links()
            subnet_names = {s["id"]: name for name, s in (self.topology or {})["subnets"].items()}
            nodes = {n.name: n for n in spec.nodes}
            want: dict[str, tuple[Plugged, str | None]] = {}
            for instance_id, enis in links.items():
                node_name = self.instance_node.get(instance_id)
                if node_name is None:
                    continue
                node = nodes[node_name]
                for link in enis:
                    subnet = subnet_names.get(link.subnet_id)
                    plug = Plugged(
                        node=node.name,
                        netns=node.netns,
                        ifname=f"eth{link.device_index}",
                        peer=veth_name(node.index, link.device_index),
                        mac=link.mac,
                        device_index=link.device_index,
                    )
                    want[link.eni_id] = (plug, bridge_name(subnet) if subnet else None)
            forwarding = self.plan_forwarding(spec, subnet_names)
            translations = (
                elastic_ips(self.world.backend, forwarding) if forwarding is not None else None
            )
            dataplane = self.dataplane

        def current() -> bool:
            return self.generation == generation

        self.sync_power()
        self.start_event_actions(generation)
        self.hotplug.reconcile(want, spec.vpc_netns, current)
        if dataplane is not None and forwarding is not None:
            with dataplane.lock:
                if current():
                    dataplane.apply(forwarding, translations)

    def plan_forwarding(self, spec: LabSpec, subnet_names: dict[str, str]) -> Forwarding | None:
        """What the VPC forwards where now (None without a data plane); holds LOCK."""
        if not spec.dataplane or self.topology is None:
            return None
        client = self.topology.get("client") or {}
        return plan_forwarding(
            self.world.backend,
            vpc_id=self.topology["vpc_id"],
            instance_nodes=self.instance_node,
            subnet_bridges={sid: bridge_name(name) for sid, name in subnet_names.items()},
            client_subnet_id=client.get("subnet_id"),
            attachment_status=self.world.attachment_status,
        )

    # ---- power: what stopping and starting an instance does to its node ----------------------

    def sync_power(self) -> None:
        """Act on every node instance whose state changed since the last look (see lab.power)."""
        with self.power_lock:
            with LOCK:
                spec = self.spec
                if spec is None:
                    return
                states = {}
                for instance_id, name in self.instance_node.items():
                    try:
                        states[name] = str(self.world.backend.get_instance(instance_id).state)
                    except Exception:  # terminated and gone from moto
                        states[name] = "terminated"
            for node in spec.nodes:
                known = self.power.get(node.name)
                state = states.get(node.name)
                if known is None or state is None or state == known.state:
                    continue
                was_running = known.state == "running"
                known.state, known.changed = state, time.time()
                if was_running:
                    known.offs += 1
                    power.power_off(node.netns)
                elif state == "running":
                    known.boots += 1
                    power.boot(node.netns, node.ip, prefixlen(node.subnet), gateway(node.subnet))

    # ---- event actions: EC2 at a scheduled event's NotBefore ---------------------------------

    def schedule_event_action(self, data: dict[str, Any]) -> dict[str, Any]:
        spec = self.spec
        if spec is None:
            raise ValueError("the lab is not set up")
        action = EventAction(
            node=str(data["node"]),
            at=float(data["at"]),
            kind=str(data["kind"]),
            grace=float(data.get("grace", power.DEFAULT_GRACE)),
            event_id=data.get("event_id"),
        )
        if action.node not in {n.name for n in spec.nodes}:
            raise ValueError(f"no node {action.node!r}")
        with self.power_lock:
            self.event_actions.append(action)
        self.wake.set()
        return action.to_json()

    def event_action_states(self) -> list[dict[str, Any]]:
        with self.power_lock:
            return [action.to_json() for action in self.event_actions]

    def start_event_actions(self, generation: int) -> None:
        """Start, each in its own thread, the event actions whose time has come."""
        now = time.time()
        with self.power_lock:
            due = [a for a in self.event_actions if a.phase == "scheduled" and a.at <= now]
            for action in due:
                action.phase = "shutting-down"
        for action in due:
            threading.Thread(
                target=self.run_event_action,
                args=(action, generation),
                daemon=True,
                name=f"event-{action.node}",
            ).start()

    def run_event_action(self, action: EventAction, generation: int) -> None:
        try:
            self._run_event_action(action, generation)
        except Exception:
            LOG.exception("event action %s on %s failed", action.kind, action.node)
            action.phase = "failed"

    def _run_event_action(self, action: EventAction, generation: int) -> None:
        spec = self.spec
        node = next((n for n in spec.nodes if n.name == action.node), None) if spec else None
        if node is None or self.generation != generation:
            return
        with self.power_lock:
            known = self.power.get(node.name)
            if known is not None:
                known.shutdowns += 1
        action.shutdown = time.time()
        halted = power.shutdown(node.netns, action.grace, action)
        action.graceful = halted
        action.halted = time.time() if halted else None
        if self.generation != generation:
            return
        if action.effect == "reboot":
            with self.power_lock:
                known = self.power.get(node.name)
                if known is not None and known.state != "running":
                    # stopped meanwhile (fence_aws "off", StopInstances): nothing to reboot
                    action.phase = "done"
                    return
                action.hard_stop = time.time()
                power.power_off(node.netns)
                if known is not None:
                    known.offs += 1
                    known.changed = action.hard_stop
                power.boot(node.netns, node.ip, prefixlen(node.subnet), gateway(node.subnet))
                action.booted = time.time()
                if known is not None:
                    known.boots += 1
                    known.changed = action.booted
        else:
            with LOCK:
                ids = [i for i, name in self.instance_node.items() if name == node.name]
                action.hard_stop = time.time()
                if action.effect == "stop":
                    self.world.backend.stop_instances(ids)
                else:
                    self.world.backend.terminate_instances(ids)
            self.sync_power()
        if action.event_id is not None:
            self._forget_event(node.name, action.event_id)
        action.phase = "done"
        self.wake.set()

    def _forget_event(self, node: str, event_id: str) -> None:
        """The completed event leaves the node's events/maintenance/scheduled."""
        imds = self.imds.get(node)
        if imds is None:
            return
        with LOCK:
            events = imds.events()
        scheduled = [
            e
            for e in (events.get("scheduled") or [])
            if not (isinstance(e, dict) and e.get("EventId") == event_id)
        ]
        imds.set_events(scheduled, events.get("spot"), events.get("rebalance"))

    # ---- WSGI routing ----------------------------------------------------------------------

    def app_for(self, node: str) -> WSGIApp:
        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            environ["lab.node"] = node
            if node == "host" and environ.get("PATH_INFO", "").startswith("/_lab/"):
                return self.control(environ, start_response)
            return self.ec2(environ, start_response)

        return app

    # ---- orphan handling -----------------------------------------------------------------------

    def watch_stdin(self) -> None:
        """EOF on stdin means the harness is gone."""
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        self.orphaned = True
        self.stop.set()


PR_SET_PDEATHSIG = 1


def cache_boto3_regions() -> None:
    """Speed up importing moto's EC2 models (~0.3 s of the lab's start).

    moto.ec2 builds its region list at import time from three fresh boto3 Sessions, and each
    loads botocore's endpoint data anew. The answer never changes within a process: cache it.
    """
    import importlib

    session_class: Any = importlib.import_module("boto3.session").Session  # boto3 is untyped
    original = session_class.get_available_regions
    cache: dict[tuple[str, str, bool], list[str]] = {}

    def get_available_regions(
        self: Any, service_name: str, partition_name: str = "aws", allow_non_regional: bool = False
    ) -> list[str]:
        key = (service_name, partition_name, allow_non_regional)
        if key not in cache:
            cache[key] = original(self, service_name, partition_name, allow_non_regional)
        return list(cache[key])

    session_class.get_available_regions = get_available_regions


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM us when the harness process exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.server", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="host listener port (0: any)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(threadName)s %(levelname)s %(message)s"
    )
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    parent = os.getppid()
    die_with_parent()
    cache_boto3_regions()

    server = LabServer()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.stop.set())
    server.start(args.port)
    threading.Thread(target=server.watch_stdin, daemon=True, name="stdin").start()
    sys.stdout.write(json.dumps({"ready": True, "port": server.port, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()

    server.stop.wait()
    orphaned = server.orphaned or os.getppid() != parent
    namespaces = server.namespaces()
    server.shutdown()
    if orphaned:
        netns.delete_netns(namespaces)
    return 0


if __name__ == "__main__":
    status = main()
    logging.shutdown()
    sys.stdout.flush()
    os._exit(status)  # daemon threads (stdin watcher, request handlers) need no goodbye
