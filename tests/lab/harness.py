"""The Lab: what tests, the demo and the benchmark use to get a simulated EC2 world.

    with Lab(tmp_path, nodes=("a", "b")) as lab:
        result = lab.run_agent("a", "aws-secip", "start", {"ip": "10.0.1.50", ...})

Start-up: the harness spawns the lab server (which spends most of its start importing moto) and
meanwhile builds the namespaces; then it sends the topology. `reset()` gives a fresh world
(new namespaces, fresh moto state, default knobs) in a fraction of the start time, so one Lab
can serve many tests (see the `lab` fixture in lab.pytest_plugin).

This module never imports moto; boto3 only when `ec2()` is called.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import netns
from .spec import (
    CLIENT_CIDR,
    CLIENT_GATEWAY,
    CLIENT_IP,
    CLIENT_LINK,
    DATAPLANE_PRIORITY,
    DATAPLANE_TABLE,
    SUBNETS,
    LabSpec,
    Timing,
    bridge_name,
    gateway,
    plan_nodes,
    prefixlen,
)
from .throttle import ENV as THROTTLE_ENV
from .throttle import ThrottleModel

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO = TESTS_DIR.parent
AGENTS_DIR = REPO / "agents"
LIB_DIR = REPO / "lib"
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
EXIT_REASON_PREFIX = "ocf-exit-reason:"
SERVER_READY_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 5.0
_botocore_session: Any = None


class LabError(RuntimeError):
    """The lab could not do what was asked (server answer, namespace or process trouble)."""


@dataclass(frozen=True)
class Subnet:
    name: str
    id: str
    cidr: str
    ipv6_cidr: str
    az: str


@dataclass(frozen=True)
class Node:
    name: str
    netns: str
    instance_id: str
    eni_id: str
    mac: str
    ip: str
    subnet: str
    subnet_id: str
    az: str
    access_key_id: str


@dataclass(frozen=True)
class Eni:
    id: str
    mac: str
    ip: str
    secondary_ips: tuple[str, ...]
    subnet: str
    subnet_id: str
    az: str


@dataclass(frozen=True)
class Client:
    """The data plane's client namespace (Lab(dataplane=True)): its subnet and address."""

    subnet_id: str
    cidr: str
    ip: str
    gateway: str
    route_table: str
    netns: str


@dataclass(frozen=True)
class PowerInfo:
    state: str  # the instance's state: running, stopped...
    offs: int  # power cuts the lab made in the node so far
    boots: int  # boots after a power cut so far
    changed: float  # time.time() of the last transition


@dataclass(frozen=True)
class Call:
    action: str
    node: str
    time: float
    status: int | None
    fault: str | None = None
    error_code: str | None = None
    access_key: str | None = None
    service: str = "ec2"


@dataclass(frozen=True)
class ThrottleCount:
    answered: int
    throttled: int


@dataclass(frozen=True)
class AgentResult:
    rc: int
    stdout: str
    stderr: str
    duration: float
    exit_reason: str | None
    timed_out: bool = False  # killed by the harness after timeout_ms/1000 + 5 s
    killed: bool = False  # killed by the harness on purpose (kill_after)
    cpu_seconds: float = 0.0  # user + system time of the process and its waited-for children
    max_rss_kb: int = 0  # peak resident set size
    argv: tuple[str, ...] = field(default=(), repr=False)


def exit_reason(stderr: str) -> str | None:
    """The text of the last `ocf-exit-reason:` line, as Pacemaker shows it."""
    reason = None
    for line in stderr.splitlines():
        if line.startswith(EXIT_REASON_PREFIX):
            reason = line[len(EXIT_REASON_PREFIX) :]
    return reason


def wait_until(
    predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll predicate until it returns something truthy; return it, or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


class Lab:
    def __init__(
        self,
        workdir: Path,
        nodes: Sequence[str] = ("a", "b"),
        *,
        region: str = "eu-central-1",
        assign_delay: float = 0.3,
        attach_delay: float = 1.0,
        detach_delay: float = 1.0,
        hotplug_delay: float = 0.0,
        node_subnets: Mapping[str, str] | None = None,
        source_dest_check: bool = False,
        dataplane: bool = False,
        throttle: ThrottleModel | None = None,
    ) -> None:
        """`throttle`: EC2's request throttling (lab.throttle); None: from the environment
        variable LAB_THROTTLE, AWS's figures when it is unset; ThrottleModel.off(): none."""
        self.workdir = Path(workdir)
        self.region = region
        self.lab_id = secrets.token_hex(3)
        self.prefix = netns.lab_prefix(os.getpid(), self.lab_id)
        if "vpc" in nodes:
            raise ValueError("'vpc' is reserved for the VPC namespace")
        self._spec = LabSpec(
            region=region,
            prefix=self.prefix,
            nodes=plan_nodes(self.prefix, nodes, node_subnets or {}, secrets.SystemRandom()),
            timing=Timing(
                assign_delay=assign_delay,
                attach_delay=attach_delay,
                detach_delay=detach_delay,
                hotplug_delay=hotplug_delay,
            ),
            source_dest_check=source_dest_check,
            dataplane=dataplane,
            throttle=(throttle or ThrottleModel.from_env(os.environ.get(THROTTLE_ENV))).to_json(),
        )
        self.home = self.workdir / "home"
        # Each node's runtime directory (HA_RSCTMP), emptied with the world like the nodes' OS.
        self.rsctmp = self.workdir / "rsctmp"
        self.port = 0
        self.endpoint_url = ""
        self.account_id = ""
        self.vpc_id = ""
        self.vpc_cidr = ""
        self.vpc_ipv6_cidr = ""
        self.subnets: dict[str, Subnet] = {}
        self.route_tables: list[str] = []
        self.main_route_table = ""
        self.internet_gateway = ""
        self.security_group = ""
        self.role_name = ""
        self.nodes: dict[str, Node] = {}
        self.client: Client | None = None  # with dataplane=True
        self.regional_endpoint = ""  # https://ec2.<region>.amazonaws.com, see lab.tls
        self.start_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._clients: dict[tuple[bool, float], Any] = {}

    @classmethod
    def create(cls, workdir: Path, nodes: Sequence[str] = ("a", "b"), **kwargs: Any) -> Lab:
        return cls(workdir, nodes, **kwargs)

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        netns.sweep()
        try:
            self._spawn_server()
            self._build_namespaces()
            ready = self._wait_ready()
            self.port = int(ready["port"])
            self.endpoint_url = f"http://127.0.0.1:{self.port}"
            self._setup()
        except BaseException:
            self.close()
            raise
        self.start_seconds = time.monotonic() - began

    def reset(self) -> None:
        """A fresh world on the running server: new namespaces, fresh moto state, no faults, an
        empty call log, and the timing this Lab was created with.

        Node names, MACs and IPs stay; AWS ids (instances, ENIs, VPC...) change.
        """
        self._control("POST", "teardown")
        self._delete_namespaces()
        self._build_namespaces()
        self._setup()

    def close(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and delete every namespace of this lab."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(SERVER_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(SERVER_STOP_TIMEOUT)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._clients.clear()
        self._delete_namespaces()

    def _spawn_server(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        self._log = (self.workdir / "server.log").open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "lab.server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=self.workdir,
            start_new_session=True,
        )

    def _wait_ready(self) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + SERVER_READY_TIMEOUT
        line = b""
        fd = proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise LabError(f"lab server did not start: {self._log_tail()}")
            readable, _, _ = select.select([fd], [], [], min(left, 0.5))
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise LabError(f"lab server exited: {self._log_tail()}")
                line += chunk
        ready: dict[str, Any] = json.loads(line)
        return ready

    def _log_tail(self) -> str:
        try:
            return (self.workdir / "server.log").read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def _build_namespaces(self) -> None:
        spec = self._spec
        vpc = spec.vpc_netns
        extra = [spec.client_netns] if spec.dataplane else []
        netns.ip_batch([f"netns add {n}" for n in (vpc, *(n.netns for n in spec.nodes), *extra)])
        commands = ["link set lo up"]
        for name in SUBNETS:
            br = bridge_name(name)
            commands += [
                f"link add {br} type bridge",
                f"link set {br} up",
                f"addr add {gateway(name)}/{prefixlen(name)} dev {br}",
            ]
        for node in spec.nodes:
            commands += [
                f"link add {node.veth} type veth peer name eth0 address {node.mac}"
                f" netns {node.netns}",
                f"link set {node.veth} master {bridge_name(node.subnet)} up",
            ]
        netns.ip_batch(commands, vpc)
        for node in spec.nodes:
            netns.ip_batch(
                [
                    "link set lo up",
                    "addr add 169.254.169.254/32 dev lo",
                    f"addr add {node.ip}/{prefixlen(node.subnet)} dev eth0",
                    "link set eth0 up",
                    f"route add default via {gateway(node.subnet)}",
                ],
                node.netns,
            )
        if spec.dataplane:
            self._build_dataplane()
        for fresh in (self.home, self.rsctmp):
            if fresh.exists():
                shutil.rmtree(fresh)
            fresh.mkdir(parents=True)

    def _build_dataplane(self) -> None:
        """The VPC namespace becomes a router that forwards only what AWS says (lab.dataplane:
        the server fills the table); the client namespace hangs off it in a subnet of its own."""
        spec = self._spec
        vpc, client = spec.vpc_netns, spec.client_netns
        subprocess.run(
            ["ip", "netns", "exec", vpc, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
            check=True,
            capture_output=True,
            env=self.clean_env(),
        )
        table = f"table {DATAPLANE_TABLE}"
        commands = [f"rule add priority {DATAPLANE_PRIORITY} lookup {DATAPLANE_TABLE}"]
        commands += [f"route add blackhole {cidr} {table}" for cidr, _, _ in SUBNETS.values()]
        commands += [
            f"link add {CLIENT_LINK} type veth peer name eth0 netns {client}",
            f"addr add {CLIENT_GATEWAY}/{CLIENT_CIDR.split('/')[1]} dev {CLIENT_LINK}",
            f"link set {CLIENT_LINK} up",
        ]
        netns.ip_batch(commands, vpc)
        netns.ip_batch(
            [
                "link set lo up",
                f"addr add {CLIENT_IP}/{CLIENT_CIDR.split('/')[1]} dev eth0",
                "link set eth0 up",
                f"route add default via {CLIENT_GATEWAY}",
            ],
            client,
        )

    def _delete_namespaces(self) -> None:
        failed = netns.delete_netns(netns.lab_namespaces(self.prefix))
        if failed:
            raise LabError(f"could not delete namespaces {failed}")

    def _setup(self) -> None:
        topo = self._control("POST", "setup", self._spec.to_json())
        self.account_id = topo["account_id"]
        self.vpc_id = topo["vpc_id"]
        self.vpc_cidr = topo["vpc_cidr"]
        self.vpc_ipv6_cidr = topo["vpc_ipv6_cidr"]
        self.subnets = {name: Subnet(**s) for name, s in topo["subnets"].items()}
        self.route_tables = list(topo["route_tables"])
        self.main_route_table = topo["main_route_table"]
        self.internet_gateway = topo["internet_gateway"]
        self.security_group = topo["security_group"]
        self.role_name = topo["role_name"]
        self.regional_endpoint = topo.get("regional_endpoint", "")
        client = topo.get("client")
        self.client = Client(**client) if client else None
        self.nodes = {
            name: Node(
                access_key_id=topo["credentials"][name]["AccessKeyId"],
                **n,
            )
            for name, n in topo["nodes"].items()
        }

    # ---- control API -----------------------------------------------------------------------

    def _control(
        self, method: str, path: str, data: Any = None, query: Mapping[str, Any] | None = None
    ) -> Any:
        url = f"{self.endpoint_url}/_lab/{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(
            url, data=body, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with self._opener.open(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            raise LabError(f"{method} /_lab/{path}: {err.code} {err.read().decode()}") from None
        return json.loads(raw) if raw else None

    def ping(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "ping")
        return result

    def set_fault(
        self,
        action: str = "*",
        kind: str = "throttle",
        *,
        rate: float = 1.0,
        code: str | None = None,
        status: int | None = None,
        delay: float | None = None,
        count: int | None = None,
        node: str | None = None,
    ) -> None:
        """Inject a fault into matching EC2 calls (kinds: throttle, error, latency, late, reset,
        blackhole). Calls from `ec2()` clients skip faults unless made with bypass_faults=False."""
        self._control(
            "POST",
            "faults",
            {
                "action": action,
                "kind": kind,
                "rate": rate,
                "code": code,
                "status": status,
                "delay": delay,
                "count": count,
                "node": node,
            },
        )

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def set_imds_fault(self, node: str, mode: str | None, delay: float | None = None) -> None:
        """mode: down, slow (delay seconds), stale_token, disabled, garbage; None clears."""
        self._control("POST", "imds", {"node": node, "mode": mode, "delay": delay})

    def set_timing(
        self,
        *,
        assign_delay: float | None = None,
        attach_delay: float | None = None,
        detach_delay: float | None = None,
        hotplug_delay: float | None = None,
        force_detach_delay: float | None = None,
    ) -> Timing:
        values = {
            "assign_delay": assign_delay,
            "attach_delay": attach_delay,
            "detach_delay": detach_delay,
            "hotplug_delay": hotplug_delay,
            "force_detach_delay": force_detach_delay,
        }
        return Timing(**self._control("POST", "timing", values))

    def timing(self) -> Timing:
        return Timing(**self._control("GET", "timing"))

    def enforce_policy(self, document: Mapping[str, Any] | None) -> None:
        """Enforce an IAM identity policy on the nodes' instance role (lab.iam), None: stop.

        Evaluated before moto runs a request signed with a node's IMDS credentials (agents),
        DryRun included; `ec2()` clients and other keys are not. A denied request gets 403
        UnauthorizedOperation with EC2's message. reset() and teardown stop enforcing.
        """
        if document is None:
            self._control("DELETE", "iam")
        else:
            self._control("POST", "iam", {"policy": dict(document)})

    def set_throttle(self, model: ThrottleModel) -> None:
        """Throttle with `model` from now on: every bucket starts over, full; the counters stay.
        reset() goes back to the model the Lab was created with."""
        self._control("POST", "throttle", model.to_json())

    def throttle_state(self) -> dict[str, Any]:
        """{"model": ..., "buckets": {bucket: {tokens, capacity, refill, background}},
        "counts": {action: {answered, throttled}}}: the buckets used so far, as of now."""
        state: dict[str, Any] = self._control("GET", "throttle")
        return state

    def throttle_counts(self) -> dict[str, ThrottleCount]:
        """Per EC2 action, the calls that got a token (answered, whatever EC2 then said) and
        those throttled by the buckets, since the lab (or reset_throttle) began."""
        counts = self._control("GET", "throttle")["counts"]
        return {action: ThrottleCount(**count) for action, count in counts.items()}

    def reset_throttle(self) -> None:
        """Full buckets, zero counters."""
        self._control("DELETE", "throttle")

    def hang_detach(self, eni_id: str, hang: bool = True) -> None:
        """While hung, a normal detach of eni_id stays `detaching` until a Force detach."""
        self._control("POST", "hang", {"eni_id": eni_id, "hang": hang})

    def calls(
        self, node: str | None = None, since: float | None = None, service: str = "ec2"
    ) -> list[Call]:
        """Logged calls, oldest first; service "ec2", "imds" or "*"."""
        rows = self._control(
            "GET", "calls", query={"node": node, "since": since, "service": service}
        )
        return [Call(**row) for row in rows]

    def reset_calls(self) -> None:
        self._control("DELETE", "calls")

    def fault_rules(self) -> list[dict[str, Any]]:
        """The fault rules still in force (a rule with `count` is gone once it hit its calls)."""
        rules: list[dict[str, Any]] = self._control("GET", "faults")
        return rules

    def power(self) -> dict[str, PowerInfo]:
        """Node -> the power state of its instance as the lab last acted on it (lab.power)."""
        return {name: PowerInfo(**p) for name, p in self._control("GET", "power").items()}

    def ca_pem(self) -> str:
        """The lab CA's certificate (PEM): it signs the regional endpoint's certificate."""
        pem: str = self._control("GET", "ca")["pem"]
        return pem

    def forwarding(self) -> dict[str, dict[str, str]]:
        """The data plane's current table: destination CIDR -> {node, eni_id, bridge, mac, via}."""
        result: dict[str, dict[str, str]] = self._control("GET", "dataplane")["forwarding"]
        return result

    def forwarded_to(self, address: str) -> str | None:
        """The node the VPC sends `address` to now (its most specific route), or None."""
        import ipaddress

        ip = ipaddress.ip_address(address)
        best: tuple[int, str] | None = None
        for cidr, hop in self.forwarding().items():
            net = ipaddress.ip_network(cidr)
            if ip in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, hop["node"])
        return best[1] if best else None

    def guest_links(self) -> dict[str, Any]:
        """ENI id -> the hotplugged link the server made for it (node, ifname, mac...)."""
        result: dict[str, Any] = self._control("GET", "links")
        return result

    def create_eni(
        self,
        subnet: str = "c",
        description: str = "",
        secondary_ips: int = 0,
        ipv6_count: int = 0,
    ) -> Eni:
        """A new available ENI with the next free addresses from .100 of the subnet."""
        info = self._control(
            "POST",
            "eni",
            {
                "subnet": subnet,
                "description": description,
                "secondary_ips": secondary_ips,
                "ipv6_count": ipv6_count,
            },
        )
        return Eni(
            id=info["id"],
            mac=info["mac"],
            ip=info["ip"],
            secondary_ips=tuple(info["secondary_ips"]),
            subnet=subnet,
            subnet_id=info["subnet_id"],
            az=info["az"],
        )

    def allocate_eip(self) -> str:
        result: str = self._control("POST", "eip")["allocation_id"]
        return result

    # ---- AWS from the test side --------------------------------------------------------------

    def ec2(self, *, bypass_faults: bool = True, read_timeout: float = 60.0) -> Any:
        """A botocore EC2 client on the host listener: dummy credentials, no retries.

        With bypass_faults (the default) injected faults do not apply to its calls.
        """
        key = (bypass_faults, read_timeout)
        client = self._clients.get(key)
        if client is not None:
            return client
        import botocore.session
        from botocore.config import Config

        global _botocore_session  # noqa: PLW0603 - one session: models load once per process
        if _botocore_session is None:
            _botocore_session = botocore.session.Session()
        client = _botocore_session.create_client(
            "ec2",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id="AKIDLABTESTS000000000",
            aws_secret_access_key="lab-tests-dummy-secret",
            config=Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=read_timeout,
                proxies={},
            ),
        )
        if bypass_faults:

            def mark(request: Any, **_: Any) -> None:
                request.headers["X-Lab-Bypass"] = "1"

            client.meta.events.register("before-sign.ec2", mark)
        self._clients[key] = client
        return client

    def describe_route_tables(self) -> list[dict[str, Any]]:
        tables: list[dict[str, Any]] = self.ec2().describe_route_tables(
            RouteTableIds=self.route_tables
        )["RouteTables"]
        return tables

    def eni(self, eni_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.ec2().describe_network_interfaces(
            NetworkInterfaceIds=[eni_id]
        )["NetworkInterfaces"][0]
        return result

    def route_targets(
        self, cidr: str, tables: Sequence[str] | None = None
    ) -> dict[str, str | None]:
        """Per route table (default: the lab's), the ENI its route for ``cidr`` (IPv4 or IPv6)
        points at; None where the table has no such route."""
        answer = self.ec2().describe_route_tables(RouteTableIds=list(tables or self.route_tables))
        found: dict[str, str | None] = {}
        for table in answer["RouteTables"]:
            hit = [
                r
                for r in table["Routes"]
                if cidr in (r.get("DestinationCidrBlock"), r.get("DestinationIpv6CidrBlock"))
            ]
            found[table["RouteTableId"]] = hit[0].get("NetworkInterfaceId") if hit else None
        return found

    def holders(self, ip: str) -> set[str]:
        """The ENIs the simulator lists ``ip`` on, as a private IPv4 or an IPv6 address (read
        without any filter, so whatever the agents' filters do does not matter)."""
        wanted = ipaddress.ip_address(ip)
        found = set()
        for eni in self.ec2().describe_network_interfaces()["NetworkInterfaces"]:
            v4 = [item["PrivateIpAddress"] for item in eni.get("PrivateIpAddresses", [])]
            v6 = [item["Ipv6Address"] for item in eni.get("Ipv6Addresses", [])]
            if any(ipaddress.ip_address(a) == wanted for a in v4 + v6):
                found.add(str(eni["NetworkInterfaceId"]))
        return found

    # ---- node namespaces ---------------------------------------------------------------------

    def netns(self, node: str) -> str:
        if node == "vpc":
            return self._spec.vpc_netns
        if node == "client" and self._spec.dataplane:
            return self._spec.client_netns
        return self.nodes[node].netns if node in self.nodes else self._node_spec(node).netns

    def _node_spec(self, node: str) -> Any:
        for spec in self._spec.nodes:
            if spec.name == node:
                return spec
        raise KeyError(f"no node {node!r} in this lab")

    def clean_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {"PATH": CLEAN_PATH, "HOME": str(self.home), "LC_ALL": "C.UTF-8"}
        env.update(extra or {})
        return env

    def ip_json(self, node: str, *args: str) -> Any:
        """`ip -n <netns of node> -json args...`, parsed ("vpc" names the VPC namespace)."""
        out = netns.ip("-json", *args, netns=self.netns(node))
        return json.loads(out) if out.strip() else []

    def ns_exec(
        self,
        node: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        input: str | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside the node's namespace with a clean environment (unless env is given)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns(node), *argv],
            input=input,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else self.clean_env(),
            timeout=timeout,
            check=check,
        )

    def run_agent(
        self,
        node: str,
        agent: str | Path,
        action: str,
        params: Mapping[str, str],
        *,
        timeout_ms: int = 20000,
        interval_ms: int | None = None,
        python: str = sys.executable,
        extra_env: Mapping[str, str] | None = None,
        kill_after: float | None = None,
        wrapper: Sequence[str] = (),
    ) -> AgentResult:
        """Run an OCF agent action in the node's namespace the way Pacemaker does.

        Clean environment (no AWS_*, HOME an empty lab directory), OCF_RESKEY_* from params,
        OCF_RESKEY_CRM_meta_timeout=timeout_ms, OCF_RESKEY_CRM_meta_interval only when given,
        PYTHONPATH=lib only for the venv's python. The process group is SIGKILLed after
        kill_after seconds, or after timeout_ms/1000 + 5 s (then timed_out is True).
        `wrapper` is put in front of the command inside the namespace (e.g. /usr/bin/time ...,
        see lab.bench); the result's cpu_seconds and max_rss_kb then include the wrapper.
        """
        path = Path(agent)
        if not path.is_absolute() and len(path.parts) == 1:
            path = AGENTS_DIR / path
        env = {
            "PATH": CLEAN_PATH,
            "HOME": str(self.home),
            "OCF_ROOT": "/usr/lib/ocf",
            "OCF_RESOURCE_INSTANCE": f"lab-{path.name}",
            "OCF_RESOURCE_TYPE": path.name,
            "OCF_RA_VERSION_MAJOR": "1",
            "OCF_RA_VERSION_MINOR": "1",
            "OCF_RESKEY_CRM_meta_timeout": str(timeout_ms),
            # Each node's own runtime directory, as Pacemaker's /run/resource-agents is (the
            # agents keep records there); never the host's.
            "HA_RSCTMP": str(self.rsctmp / node),
        }
        if interval_ms is not None:
            env["OCF_RESKEY_CRM_meta_interval"] = str(interval_ms)
        for key, value in params.items():
            env[f"OCF_RESKEY_{key}"] = str(value)
        if _is_venv_python(python):
            env["PYTHONPATH"] = str(LIB_DIR)
        env.update(extra_env or {})
        hard_limit = timeout_ms / 1000 + 5
        limit = hard_limit if kill_after is None else min(kill_after, hard_limit)
        command = (*wrapper, python, str(path), action)
        return self._run(node, command, env, limit, timed_out_at=hard_limit)

    def run_process(
        self,
        node: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> AgentResult:
        """Run any command in the node's namespace (clean environment unless env is given),
        measured like run_agent; killed (timed_out) after `timeout` seconds."""
        return self._run(
            node, tuple(argv), dict(env) if env is not None else self.clean_env(), timeout, timeout
        )

    def _run(
        self,
        node: str,
        command: tuple[str, ...],
        env: dict[str, str],
        limit: float,
        timed_out_at: float,
    ) -> AgentResult:
        """Run command in node's namespace in its own process group; SIGKILL the group after
        `limit` seconds. Reaps with wait4 to report the process's CPU time and peak RSS."""
        argv = ("ip", "netns", "exec", self.netns(node), *command)
        began = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        stopped = threading.Event()

        def kill_group() -> None:
            stopped.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(limit, kill_group)
        timer.start()
        outputs: dict[str, bytes] = {}
        readers = [
            threading.Thread(target=_drain, args=(proc.stdout, outputs, "stdout")),
            threading.Thread(target=_drain, args=(proc.stderr, outputs, "stderr")),
        ]
        for reader in readers:
            reader.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        duration = time.monotonic() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        for reader in readers:
            reader.join(5)
        stdout = outputs.get("stdout", b"").decode(errors="replace")
        stderr = outputs.get("stderr", b"").decode(errors="replace")
        timed_out = stopped.is_set() and limit >= timed_out_at
        return AgentResult(
            rc=proc.returncode,
            stdout=stdout,
            stderr=stderr,
            duration=duration,
            exit_reason=exit_reason(stderr),
            timed_out=timed_out,
            killed=stopped.is_set() and not timed_out,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            max_rss_kb=usage.ru_maxrss,
            argv=argv,
        )


def _drain(pipe: Any, into: dict[str, bytes], key: str) -> None:
    with pipe:
        into[key] = pipe.read()


def _is_venv_python(python: str) -> bool:
    candidate = Path(python).absolute()
    return candidate == Path(sys.executable).absolute() or (REPO / ".venv") in candidate.parents
