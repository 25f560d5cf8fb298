"""The Lab: what tests, the demo and the benchmark use to get a simulated EC2 world.

    with Lab(tmp_path, nodes=("a", "b")) as lab:
        result = lab.run_agent("a", "aws-secip", "start", {"ip": "10.0.1.50", ...})

Start-up: the harness spawns the lab server (which spends most of its start importing moto) and
meanwhile builds the namespaces; then it sends the topology. `reset()` gives a fresh world
(new namespaces, fresh moto state, default knobs) in a fraction of the start time, so one Lab
can serve many tests (see the `lab` fixture in lab.pytest_plugin).

The Lab is put together from parts by concern: lab.nodes (namespaces, running agents and
processes in them), lab.knobs (the server's control API), lab.aws_state (EC2 from the test side);
what it hands back is in lab.records. This module never imports moto; boto3 only when `ec2()`
is called.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import netns
from .aws_state import AwsState
from .knobs import Knobs
from .nodes import Nodes
from .records import (
    AGENTS_DIR,
    CLEAN_PATH,
    EXIT_REASON_PREFIX,
    LIB_DIR,
    REPO,
    TESTS_DIR,
    AgentResult,
    Call,
    Client,
    Eni,
    LabError,
    Node,
    PowerInfo,
    Subnet,
    ThrottleCount,
    exit_reason,
    wait_until,
)
from .spec import LabSpec, Timing, gateway, plan_nodes
from .throttle import ENV as THROTTLE_ENV
from .throttle import ThrottleModel

if TYPE_CHECKING:
    from .proxy import Proxy

SERVER_READY_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 5.0

__all__ = [
    "AGENTS_DIR",
    "CLEAN_PATH",
    "EXIT_REASON_PREFIX",
    "LIB_DIR",
    "REPO",
    "TESTS_DIR",
    "AgentResult",
    "Call",
    "Client",
    "Eni",
    "Lab",
    "LabError",
    "Node",
    "PowerInfo",
    "Subnet",
    "ThrottleCount",
    "exit_reason",
    "wait_until",
]


class Lab(Nodes, Knobs, AwsState):
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

    def proxy(self, users: Mapping[str, str]) -> Proxy:
        """An authenticating HTTP proxy in the VPC namespace (lab.proxy) for every node, at
        ``proxy_address(node)``:3128, running in this process until closed (a context manager).
        ``users``: user name -> password."""
        from .proxy import Proxy

        return Proxy(
            self.netns("vpc"),
            {node.ip: (node.name, node.netns) for node in self.nodes.values()},
            users,
            api_port=self.port,
            region=self.region,
        )

    def proxy_address(self, node: str) -> str:
        """Where ``node`` reaches the proxy: its subnet's gateway, an address of the VPC
        namespace."""
        return gateway(self.nodes[node].subnet)

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
