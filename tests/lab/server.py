"""The lab server: moto's EC2 behind fault injection, IMDS per node, hotplug, and a control API.

One process (``python -m lab.server``), started by the harness. It listens on 127.0.0.1:<port>
in the host namespace (tests, control API under /_lab/) and, once the harness has sent the
topology, on the same 127.0.0.1:<port> inside every node namespace plus 169.254.169.254:80
(IMDS) and 127.0.0.1:443 (HTTPS for ec2.<region>.amazonaws.com, lab.tls) there. The node
sockets are created from this process by entering the namespace with setns(); every listener
knows which node it serves and passes that on in the WSGI environ.

The ticker (every 20 ms, and at once after a call that may change something) completes
transitions, hotplugs ENI links, acts on instance power changes (lab.power) and, with a data
plane, makes the VPC namespace forward what AWS says (lab.dataplane).

moto is not thread-safe: every call into it (and into the fidelity World) holds LOCK. Injected
latency, late answers and black holes wait outside the lock.

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
import io
import json
import logging
import os
import re
import select
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from . import iam, netns, power
from .dataplane import DataPlane, Forwarding
from .dataplane import plan as plan_forwarding
from .faults import (
    DEFAULT_BLACKHOLE_SECONDS,
    CallLog,
    CallRecord,
    FaultRule,
    FaultTable,
    ec2_error_body,
    error_message,
)
from .power import PowerState
from .spec import (
    ENI_HOST_BASE,
    LabSpec,
    Timing,
    bridge_name,
    gateway,
    prefixlen,
    random_mac,
    veth_name,
)
from .throttle import Buckets, ThrottleModel
from .tls import REGIONAL_ADDRESS, REGIONAL_PORT, Certificates, make_certificates, regional_hostname

LOG = logging.getLogger("lab.server")
LOCK = threading.RLock()
TICK_SECONDS = 0.02
IMDS_ADDRESS = "169.254.169.254"
# Calls after which the instances' power states are synchronised before the answer goes out
# (so that "stopped" in DescribeInstances means the node is already cut off).
POWER_ACTIONS = frozenset({"StopInstances", "StartInstances", "TerminateInstances"})
READ_ONLY_PREFIXES = ("Describe", "Get")
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
_CODE_RE = re.compile(rb"<Code>([^<]+)</Code>")
_CRED_RE = re.compile(r"Credential=([^/,\s]+)/")


class DropConnection(ConnectionError):
    """Raised by an app to end the connection without an answer (werkzeug treats it as dropped)."""


class Handler(WSGIRequestHandler):
    timeout = 120  # bound for clients that connect and never send a request

    def make_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().make_environ()
        environ["lab.handler"] = self
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LabHTTPServer(ThreadedWSGIServer):
    """A threaded werkzeug server on a socket we created, able to reset connections."""

    def __init__(
        self,
        sock: socket.socket,
        app: WSGIApp,
        refuses: Callable[[], bool],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(
            host, port, app, handler=Handler, fd=sock.fileno(), ssl_context=ssl_context
        )
        sock.close()  # werkzeug keeps its own duplicate of the descriptor
        self.refuses = refuses
        self._reset: set[socket.socket] = set()
        self._reset_lock = threading.Lock()

    def mark_reset(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._reset_lock:
            self._reset.add(conn)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self.refuses():
            self.mark_reset(request)
            return False
        return True

    def shutdown_request(self, request: Any) -> None:
        with self._reset_lock:
            reset = request in self._reset
            self._reset.discard(request)
        if reset:
            self.close_request(request)  # SO_LINGER 0: the close sends RST
        else:
            super().shutdown_request(request)


@dataclass
class Listener:
    node: str
    kind: str
    server: LabHTTPServer
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def open_socket(host: str, port: int, ns: str | None) -> socket.socket:
    """A listening TCP socket on host:port, created inside ns when given."""
    ctx = netns.entered(ns) if ns else contextlib.nullcontext()
    with ctx:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
    return sock


def serve(
    node: str,
    kind: str,
    sock: socket.socket,
    app: WSGIApp,
    refuses: Callable[[], bool],
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> Listener:
    server = LabHTTPServer(sock, app, refuses, ssl_context)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        daemon=True,
        name=f"{kind}-{node}",
    )
    thread.start()
    return Listener(node, kind, server, thread)


def never() -> bool:
    return False


@dataclass
class Plugged:
    node: str
    netns: str
    ifname: str
    peer: str
    mac: str
    device_index: int


class Hotplug:
    """Shows each attached ENI in its node as a NIC: a veth end named eth<N>, DOWN."""

    def __init__(self) -> None:
        self.plugged: dict[str, Plugged] = {}
        self.lock = threading.Lock()

    def enis_of(self, node: str) -> list[str]:
        """The ENIs plugged into node, by device index (what the guest, and so IMDS, sees)."""
        items = sorted(self.plugged.items(), key=lambda item: item[1].device_index)
        return [eni_id for eni_id, plug in items if plug.node == node]

    def reconcile(
        self,
        want: dict[str, tuple[Plugged, str | None]],
        vpc_ns: str,
        current: Callable[[], bool],
    ) -> None:
        """Plug and unplug links so the nodes show exactly `want` (ENI id -> link, bridge).

        `current` tells whether the world `want` was computed from still exists (a teardown
        may have happened in between): if not, nothing is done.
        """
        with self.lock:
            if not current():
                return
            for eni_id, have in list(self.plugged.items()):
                wanted = want.get(eni_id)
                if wanted is None or wanted[0] != have:
                    self._unplug(eni_id, vpc_ns)
            for eni_id, (plug, bridge) in want.items():
                if eni_id not in self.plugged:
                    self._plug(eni_id, plug, bridge, vpc_ns)

    def _plug(self, eni_id: str, p: Plugged, bridge: str | None, vpc_ns: str) -> None:
        add = f"link add {p.peer} type veth peer name {p.ifname} address {p.mac} netns {p.netns}"
        up = f"link set {p.peer} master {bridge} up" if bridge else f"link set {p.peer} up"
        try:
            netns.ip_batch([add, up], vpc_ns)
        except netns.IpError:
            # a stale link of the same name (ours or the guest's): clear both ends and retry once
            for name, ns in ((p.ifname, p.netns), (p.peer, vpc_ns)):
                with contextlib.suppress(netns.IpError):
                    netns.ip("link", "del", name, netns=ns)
            try:
                netns.ip_batch([add, up], vpc_ns)
            except netns.IpError as err:
                LOG.error("hotplug of %s into %s failed: %s", eni_id, p.node, err)
                return
        self.plugged[eni_id] = p

    def _unplug(self, eni_id: str, vpc_ns: str) -> None:
        p = self.plugged.pop(eni_id)
        try:
            netns.ip("link", "del", p.peer, netns=vpc_ns)
        except netns.IpError:
            with contextlib.suppress(netns.IpError):
                netns.ip("link", "del", p.ifname, netns=p.netns)

    def forget(self) -> None:
        with self.lock:
            self.plugged.clear()


class LabServer:
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
        # The identity policy of the nodes' instance role, enforced on requests signed with a
        # node's IMDS credentials (lab.iam); None: nothing is enforced. Guarded by LOCK.
        self.policy: tuple[dict[str, Any], iam.Policy] | None = None

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
            self.world.reset(Timing())
            self.dataplane = None
        with self.power_lock:
            self.power = {}
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
            dataplane = self.dataplane

        def current() -> bool:
            return self.generation == generation

        self.sync_power()
        self.hotplug.reconcile(want, spec.vpc_netns, current)
        if dataplane is not None and forwarding is not None:
            with dataplane.lock:
                if current():
                    dataplane.apply(forwarding)

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

    # ---- WSGI routing ----------------------------------------------------------------------

    def app_for(self, node: str) -> WSGIApp:
        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            environ["lab.node"] = node
            if node == "host" and environ.get("PATH_INFO", "").startswith("/_lab/"):
                return self.control(environ, start_response)
            return self.ec2(environ, start_response)

        return app

    # ---- EC2: faults, call log, DryRun, moto -------------------------------------------------

    def ec2(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        node: str = environ["lab.node"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        if "form-urlencoded" in environ.get("CONTENT_TYPE", ""):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = params.get("Action", "?")
        cred = _CRED_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
        record = CallRecord(
            time=time.time(),
            node=node,
            service="ec2",
            action=action,
            access_key=cred.group(1) if cred else None,
        )
        bypass = node == "host" and environ.get("HTTP_X_LAB_BYPASS") == "1"
        decision = self.faults.decide(action, node) if not bypass else None
        if decision is not None and decision.latency:
            record.fault = "latency"
            time.sleep(decision.latency)
        fault = decision.fault if decision is not None else None
        if fault is not None:
            record.fault = fault.kind
            self.calls.add(record)
            if fault.kind in ("throttle", "error"):
                code = fault.code or "InternalError"
                record.status, record.error_code = fault.status, code
                return self.xml_error(
                    start_response, fault.status or 500, code, error_message(code)
                )
            if fault.kind == "blackhole":
                self.hold(environ, fault.delay or DEFAULT_BLACKHOLE_SECONDS)
            self.drop(environ)
        if not bypass and not self.throttle.take(action, params):
            # EC2's own throttling (lab.throttle): 503 RequestLimitExceeded, no token taken.
            record.fault, record.status, record.error_code = "bucket", 503, "RequestLimitExceeded"
            self.calls.add(record)
            return self.xml_error(
                start_response, 503, "RequestLimitExceeded", error_message("RequestLimitExceeded")
            )
        status, headers, chunks = self.call_moto(action, params, environ, record.access_key)
        if status < 300 and action in POWER_ACTIONS:
            self.sync_power()
        if not action.startswith(READ_ONLY_PREFIXES):
            self.wake.set()  # the ticker follows the change now, not at its next beat
        if decision is not None and decision.late:
            record.fault = "late"  # carried out; the answer waits (outside the lock)
            time.sleep(decision.late)
        record.status = status
        if status >= 400:
            match = _CODE_RE.search(b"".join(chunks))
            record.error_code = match.group(1).decode() if match else None
        self.calls.add(record)
        start_response(f"{status} {_reason(status)}", headers)
        return chunks

    def call_moto(
        self,
        action: str,
        params: dict[str, str],
        environ: dict[str, Any],
        access_key: str | None = None,
    ) -> tuple[int, list[tuple[str, str]], list[bytes]]:
        captured: dict[str, Any] = {}
        chunks: list[bytes] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return chunks.append

        with LOCK:
            try:
                # IAM first: a denied DryRun gets UnauthorizedOperation, as on EC2.
                denied = self.authorize(action, params, access_key)
                if denied is not None:
                    return 403, _xml_headers(), [ec2_error_body("UnauthorizedOperation", denied)]
                if params.get("DryRun", "").lower() == "true":
                    err = self.world.dry_run(action, params)
                    code = 412 if err.code == "DryRunOperation" else 400
                    return code, _xml_headers(), [ec2_error_body(err.code, err.message)]
                result = self.moto_app(environ, capture)
                try:
                    chunks.extend(result)
                finally:
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
            except Exception as err:
                LOG.error("moto failed on %s: %s", action, traceback.format_exc())
                return 500, _xml_headers(), [ec2_error_body("InternalError", f"lab: {err}")]
        status = int(str(captured.get("status", "500")).split()[0])
        headers = [(k, v) for k, v in captured.get("headers", []) if k.lower() != "content-length"]
        headers.append(("Content-Length", str(sum(len(c) for c in chunks))))
        return status, headers, chunks

    def authorize(self, action: str, params: dict[str, str], access_key: str | None) -> str | None:
        """The UnauthorizedOperation message for a denied request, None to go on (holds LOCK).

        Only requests signed with a node's instance role credentials are evaluated; the test
        client (`lab.ec2()`), fence_aws and anything else with other keys are not.
        """
        enforced = self.policy
        if enforced is None or access_key is None:
            return None
        caller = next(
            (m for m in self.imds.values() if m.credentials["AccessKeyId"] == access_key), None
        )
        if caller is None:
            return None
        principal = iam.assumed_role_arn(caller.account_id, caller.role, caller.instance_id)
        try:
            resources = iam.request_resources(
                action,
                params,
                self.world.backend,
                region=self.world.region,
                account=self.world.account_id,
            )
        except iam.Unresolvable:
            return None  # EC2 answers with its NotFound error (moto / World.dry_run do)
        except iam.UnknownAction as err:
            LOG.error("%s", err)
            return f"You are not authorized to perform this operation. {err}"
        decision = iam.evaluate(enforced[1], f"ec2:{action}", resources)
        return None if decision.allowed else iam.denial_message(decision, principal)

    def set_policy(self, data: dict[str, Any]) -> dict[str, Any]:
        document = data.get("policy")
        policy = iam.Policy.parse(document)  # a PolicyError is a ValueError: 400
        assert isinstance(document, dict)
        with LOCK:
            self.policy = (document, policy)
        return {"enforced": True, "statements": len(policy.statements)}

    def clear_policy(self) -> dict[str, Any]:
        with LOCK:
            self.policy = None
        return {"enforced": False}

    def get_policy(self) -> dict[str, Any]:
        with LOCK:
            enforced = self.policy
        return {"enforced": enforced is not None, "policy": enforced[0] if enforced else None}

    @staticmethod
    def xml_error(
        start_response: StartResponse, status: int, code: str, message: str
    ) -> list[bytes]:
        body = ec2_error_body(code, message)
        start_response(f"{status} {_reason(status)}", _xml_headers(len(body)))
        return [body]

    @staticmethod
    def drop(environ: dict[str, Any]) -> None:
        handler: Handler = environ["lab.handler"]
        handler.close_connection = True
        server: LabHTTPServer = handler.server  # type: ignore[assignment]
        server.mark_reset(environ["werkzeug.socket"])
        raise DropConnection("lab fault: connection reset")

    @staticmethod
    def hold(environ: dict[str, Any], seconds: float) -> None:
        """Keep the request unanswered until the client gives up or `seconds` have passed."""
        conn: socket.socket = environ["werkzeug.socket"]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            readable, _, _ = select.select([conn], [], [], 0.05)
            if not readable:
                continue
            try:
                if not conn.recv(1, socket.MSG_PEEK):
                    return
            except OSError:
                return
            time.sleep(0.05)

    # ---- control API -------------------------------------------------------------------------

    def control(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")[len("/_lab/") :].strip("/")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        try:
            data = json.loads(raw) if raw else {}
            result = self.dispatch(method, path, data, query)
            status = 200
        except (ValueError, KeyError, TypeError) as err:
            status, result = 400, {"error": f"{type(err).__name__}: {err}"}
        except Exception as err:
            LOG.error("control %s %s failed: %s", method, path, traceback.format_exc())
            status, result = 500, {"error": f"{type(err).__name__}: {err}"}
        body = json.dumps(result).encode()
        start_response(
            f"{status} {_reason(status)}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def dispatch(self, method: str, path: str, data: dict[str, Any], query: dict[str, str]) -> Any:
        routes: dict[tuple[str, str], Callable[[dict[str, Any], dict[str, str]], Any]] = {
            ("GET", "ping"): lambda d, q: {"ok": True, "pid": os.getpid(), "port": self.port},
            ("POST", "setup"): lambda d, q: self.setup(LabSpec.from_json(d)),
            ("POST", "teardown"): lambda d, q: self.teardown(),
            ("GET", "faults"): lambda d, q: self.faults.rules(),
            ("POST", "faults"): lambda d, q: self.faults.add(FaultRule(**d)),
            ("DELETE", "faults"): lambda d, q: self.faults.clear(),
            ("GET", "calls"): self.get_calls,
            ("DELETE", "calls"): lambda d, q: self.calls.clear(),
            ("POST", "imds"): lambda d, q: self.imds[d["node"]].set_mode(
                d.get("mode"), d.get("delay")
            ),
            ("GET", "timing"): self.timing,
            ("POST", "timing"): self.timing,
            ("POST", "hang"): self.hang,
            ("POST", "eni"): lambda d, q: self.create_eni(d),
            ("POST", "eip"): lambda d, q: self.allocate_eip(),
            ("GET", "links"): lambda d, q: {e: asdict(p) for e, p in self.hotplug.plugged.items()},
            ("POST", "tick"): lambda d, q: self.tick(),
            ("GET", "power"): lambda d, q: self.power_states(),
            ("GET", "ca"): lambda d, q: {"pem": self.ca_pem()},
            ("GET", "dataplane"): lambda d, q: self.dataplane_state(),
            ("GET", "iam"): lambda d, q: self.get_policy(),
            ("POST", "iam"): lambda d, q: self.set_policy(d),
            ("DELETE", "iam"): lambda d, q: self.clear_policy(),
            ("GET", "throttle"): lambda d, q: self.throttle_state(),
            ("POST", "throttle"): lambda d, q: self.set_throttle(d),
            ("DELETE", "throttle"): lambda d, q: self.throttle.reset(),
        }
        handler = routes.get((method, path))
        if handler is None:
            raise KeyError(f"no control endpoint {method} /_lab/{path}")
        return handler(data, query)

    def throttle_state(self) -> dict[str, Any]:
        return {**self.throttle.state(), "counts": self.throttle.counts()}

    def set_throttle(self, data: dict[str, Any]) -> dict[str, Any]:
        self.throttle.configure(ThrottleModel.from_json(data))  # a ValueError is a 400
        return self.throttle_state()

    def power_states(self) -> dict[str, Any]:
        with self.power_lock:
            return {name: state.to_json() for name, state in self.power.items()}

    def ca_pem(self) -> str:
        spec = self.spec
        if spec is None:
            raise ValueError("the lab is not set up")
        self.tls_context(spec.region)
        return self.certificates[spec.region].ca_pem

    def dataplane_state(self) -> dict[str, Any]:
        dataplane = self.dataplane
        if dataplane is None:
            return {"enabled": False, "changes": 0, "forwarding": {}}
        with dataplane.lock:
            return {"enabled": True, **dataplane.describe()}

    def get_calls(self, data: dict[str, Any], query: dict[str, str]) -> list[dict[str, Any]]:
        since = float(query["since"]) if "since" in query else None
        service = query.get("service", "ec2")
        return self.calls.select(query.get("node"), since, None if service == "*" else service)

    def timing(self, data: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        with LOCK:
            self.world.timing.update(data)
            return asdict(self.world.timing)

    def hang(self, data: dict[str, Any], query: dict[str, str]) -> None:
        with LOCK:
            self.world.set_hang(data["eni_id"], bool(data.get("hang", True)))

    def allocate_eip(self) -> dict[str, Any]:
        with LOCK:
            eip = self.world.backend.allocate_address(domain="vpc")
        return {"allocation_id": eip.allocation_id, "public_ip": eip.public_ip}

    def create_eni(self, data: dict[str, Any]) -> dict[str, Any]:
        with LOCK:
            return self._create_eni(data)

    def _create_eni(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.topology is None:
            raise ValueError("the lab is not set up")
        info = self.topology["subnets"][data.get("subnet", "c")]
        backend = self.world.backend
        subnet = backend.get_subnet(info["id"])
        ips = self.world.free_ipv4(
            subnet.cidr_block, ENI_HOST_BASE, 1 + int(data.get("secondary_ips", 0))
        )
        eni = backend.create_network_interface(
            subnet,
            ips[0],
            private_ip_addresses=[
                {"Primary": n == 0, "PrivateIpAddress": ip} for n, ip in enumerate(ips)
            ],
            group_ids=[self.topology["security_group"]],
            description=data.get("description") or "",
            ipv6_address_count=int(data.get("ipv6_count", 0)),
        )
        eni.mac_address = random_mac(self.world.rng)
        return {
            "id": eni.id,
            "mac": eni.mac_address,
            "ip": ips[0],
            "secondary_ips": ips[1:],
            "subnet_id": subnet.id,
            "az": subnet.availability_zone,
        }

    # ---- orphan handling -----------------------------------------------------------------------

    def watch_stdin(self) -> None:
        """EOF on stdin means the harness is gone."""
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        self.orphaned = True
        self.stop.set()


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _xml_headers(length: int | None = None) -> list[tuple[str, str]]:
    headers = [("Content-Type", "text/xml")]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    return headers


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
