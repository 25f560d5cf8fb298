"""Lab, part one: the namespaces of the VPC, the nodes and the client, and running commands
and agents in them (``run_agent`` as Pacemaker does, ``run_process``, ``ns_exec``)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import netns
from .records import AGENTS_DIR, CLEAN_PATH, LIB_DIR, REPO, AgentResult, LabError, Node, exit_reason
from .spec import (
    CLIENT_CIDR,
    CLIENT_GATEWAY,
    CLIENT_IP,
    CLIENT_LINK,
    DATAPLANE_PRIORITY,
    DATAPLANE_TABLE,
    SUBNETS,
    LabSpec,
    bridge_name,
    gateway,
    prefixlen,
)


class Nodes:
    """Namespaces and processes in them (a part of Lab, which sets these attributes)."""

    _spec: LabSpec
    prefix: str
    home: Path
    rsctmp: Path
    nodes: dict[str, Node]

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

    def os_owners(self, address: str) -> list[str]:
        """The nodes that have ``address`` on one of their links (as ``ip`` shows it)."""
        owners = []
        for name in self.nodes:
            for link in self.ip_json(name, "addr", "show"):
                if any(a.get("local") == address for a in link.get("addr_info", [])):
                    owners.append(name)
        return owners

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
