"""A real Pacemaker/Corosync cluster whose nodes are the lab's network namespaces.

    with Lab(tmp / "lab") as lab, Cluster(lab, tmp / "cluster") as cluster:
        cluster.wait_ready()
        cluster.configure("primitive d ocf:heartbeat:Dummy op monitor interval=5s")
        cluster.wait_for(lambda s: s.where("d"), 30)

Each node is a process tree that lives in
- the lab node's network namespace (eth0 with the instance's IP; knet runs over the lab's bridge,
  and libqb's abstract unix sockets are per network namespace, so the nodes' IPC never meet);
- a new PID namespace whose PID 1 is `nodeinit.py`: SIGKILL of that one process is a crash of
  the whole node (corosync, the pacemaker daemons, the resource agents), and nothing can outlive
  the node;
- a new mount namespace with private propagation: per-node directories (under the Cluster's
  workdir) bind-mounted over /etc/corosync, /var/lib/corosync, /var/log/corosync,
  /var/lib/pacemaker, /var/log/pacemaker, /var/log/crmsh, /var/lib/heartbeat and /etc/hosts,
  tmpfs on /run and /dev/shm (pid files, libqb shared memory, HA_RSCTMP=/run/resource-agents
  where e.g. Dummy keeps its state), its own /proc, and /usr/lib/ocf/resource.d replaced by a
  per-node directory holding the host's providers plus `ipfailover/` (symlinks to agents/*);
- a new UTS namespace with the node's name as hostname.

Fencing (``Cluster(..., fencing=FenceAws())``, see fencing.py): the real fence_aws reaches the
lab's EC2 through the regional name (the node's /etc/hosts) and the lab CA (the node's CA
bundle, bind-mounted); `wait_ready` loads crm-examples/fence_aws.crm (stonith-enabled=true). A
node whose instance fence_aws powers off is cut off by the lab (lab.power) and leaves `running`
(`fenced`); `start_node` starts its instance first if it is stopped. `spawn` runs background
processes inside a node (they die with it).

Nothing of the host is changed: no file outside the workdir is written, no mount propagates
out, and everything disappears with the node's PID 1. Commands run inside a node with
`nsenter --target <its PID 1> --net --mount --uts --pid` (see `exec`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, TypeVar

from lab.records import wait_until

from .config import Member, corosync_conf, hosts_file
from .fencing import NODE_CA_BUNDLE, FenceAws
from .status import Status, parse_crm_mon

if TYPE_CHECKING:
    from lab import Lab

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO = TESTS_DIR.parent
AGENTS_DIR = REPO / "agents"
NODEINIT = Path(__file__).resolve().parent / "nodeinit.py"
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
HACLUSTER = "hacluster"
HACLIENT = "haclient"
# Host path -> per-node path (relative to the node's root directory).
BINDS: tuple[tuple[str, str], ...] = (
    ("etc/corosync", "/etc/corosync"),
    ("etc/hosts", "/etc/hosts"),
    ("var/lib/corosync", "/var/lib/corosync"),
    ("var/log/corosync", "/var/log/corosync"),
    ("var/lib/pacemaker", "/var/lib/pacemaker"),
    ("var/log/pacemaker", "/var/log/pacemaker"),
    ("var/log/crmsh", "/var/log/crmsh"),
    ("var/lib/heartbeat", "/var/lib/heartbeat"),
)
LOGS = {
    "pacemaker": "var/log/pacemaker/pacemaker.log",
    "corosync": "var/log/corosync/corosync.log",
    "init": "init.log",
    "pacemakerd": "var/log/pacemaker/pacemakerd.out",
    "corosync-stdout": "var/log/corosync/corosync.out",
}
T = TypeVar("T")


class ClusterError(RuntimeError):
    """The cluster could not do what was asked (a command failed, a node did not start...)."""


@dataclass
class NodeProcess:
    """A running node: `proc` is `ip netns exec ... unshare` (the parent of the node's PID 1)."""

    name: str
    proc: subprocess.Popen[bytes]
    init_pid: int  # host PID of nodeinit, PID 1 of the node's PID namespace
    pid_ns: str  # e.g. "pid:[4026532999]"
    lifeline: int  # write end of the pipe whose end of file tells nodeinit its owner is gone
    started: float
    power_offs: int = 0  # the lab's count of power cuts of the instance when the node started
    shutdowns: int = 0  # the lab's count of EC2's graceful shutdowns (event actions) then


@dataclass
class Spawned:
    """A background process inside a node (see Cluster.spawn)."""

    node: str
    proc: subprocess.Popen[bytes]
    init_pid: int  # PID 1 of the node it runs in


def _ns_id(pid: int, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may contain spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def processes_in(namespaces: Sequence[str], kind: str) -> list[int]:
    """Host PIDs of the processes in any of the given namespaces ("pid:[...]", "net:[...]")."""
    wanted = set(namespaces)
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _ns_id(int(entry), kind) in wanted:
            found.append(int(entry))
    return found


class Cluster:
    def __init__(
        self,
        lab: Lab,
        workdir: Path,
        nodes: Sequence[str] = ("a", "b"),
        *,
        cluster_name: str = "ipfailover-lab",
        token_ms: int = 3000,
        dc_deadtime: str = "2s",
        properties: Mapping[str, str] | None = None,
        fencing: Optional[FenceAws] = None,
        agents_dir: Path = AGENTS_DIR,
        stop_timeout: float = 30.0,
    ) -> None:
        self.lab = lab
        # With fencing (cluster.fencing), wait_ready() loads the fencing configuration, which
        # sets stonith-enabled=true; until then the cluster starts as without fencing.
        self.fencing = fencing
        self.fencing_loaded = False
        self.binds: list[tuple[str, str]] = list(BINDS)
        if fencing is not None:
            if not Path(NODE_CA_BUNDLE).is_file():
                # the node's bundle is bind-mounted over the host's: nothing is created there
                raise ClusterError(f"fencing needs {NODE_CA_BUNDLE} (package ca-certificates)")
            self.binds.append(("etc/ssl/ca-certificates.crt", NODE_CA_BUNDLE))
        self.fenced: list[tuple[str, float]] = []  # (node, time.time()) of each power cut seen
        # (node, time.time()) of each node seen gone after EC2 shut it down (lab event actions)
        self.shut_down: list[tuple[str, float]] = []
        self.spawned: list[Spawned] = []
        self.workdir = Path(workdir)
        self.names = tuple(nodes)
        self.cluster_name = cluster_name
        self.token_ms = token_ms
        self.agents_dir = agents_dir
        self.stop_timeout = stop_timeout
        # Without fencing Pacemaker must be told so (it refuses to start resources otherwise).
        # two_node (votequorum) keeps the survivor of a two-node cluster quorate, so the
        # default no-quorum-policy=stop never triggers there; say it explicitly anyway.
        self.properties = {
            "stonith-enabled": "false",
            "no-quorum-policy": "stop",
            "dc-deadtime": dc_deadtime,
            "cluster-recheck-interval": "1min",
            **(properties or {}),
        }
        self.running: dict[str, NodeProcess] = {}
        self.namespaces: dict[str, str] = {}  # every PID namespace a node ever had
        self.start_seconds = 0.0
        self._began = 0.0

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def members(self) -> list[Member]:
        return [
            Member(name=name, nodeid=index + 1, ip=self.lab.nodes[name].ip)
            for index, name in enumerate(self.names)
        ]

    def root(self, node: str) -> Path:
        return self.workdir / node

    def start(self) -> None:
        """Prepare every node's directories and start all nodes (does not wait: wait_ready)."""
        self._began = time.monotonic()
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            authkey = self.workdir / "authkey"
            _run(["corosync-keygen", "-l", "-k", str(authkey)])
            for name in self.names:
                self._prepare(name, authkey)
            for name in self.names:
                self.start_node(name)
        except BaseException:
            self.close()
            raise

    def _prepare(self, name: str, authkey: Path) -> None:
        root = self.root(name)
        if root.exists():
            shutil.rmtree(root)
        dirs = [
            "etc/corosync",
            "var/lib/corosync",
            "var/log/corosync",
            "var/lib/pacemaker",
            "var/log/pacemaker",
            "var/log/crmsh",
            "var/lib/heartbeat/cores",
            "var/lib/heartbeat/trace_ra",
            "ocf/resource.d/ipfailover",
            "home",
        ]
        for sub in dirs:
            (root / sub).mkdir(parents=True)
        members = self.members()
        (root / "etc/corosync/corosync.conf").write_text(
            corosync_conf(self.cluster_name, members, token_ms=self.token_ms)
        )
        shutil.copyfile(authkey, root / "etc/corosync/authkey")
        os.chmod(root / "etc/corosync/authkey", 0o400)
        uidgid = Path("/etc/corosync/uidgid.d")
        (root / "etc/corosync/uidgid.d").mkdir()
        if uidgid.is_dir():
            for entry in uidgid.iterdir():
                shutil.copyfile(entry, root / "etc/corosync/uidgid.d" / entry.name)
        hosts = hosts_file(members)
        if self.fencing is not None:
            hosts += "\n".join(self.fencing.hosts_entries(self.lab)) + "\n"
            (root / "etc/ssl").mkdir(parents=True)
            (root / "etc/ssl/ca-certificates.crt").write_text(self.fencing.ca_bundle(self.lab))
        (root / "etc/hosts").write_text(hosts)
        for sub in ("cib", "pengine", "blackbox", "cores"):
            (root / "var/lib/pacemaker" / sub).mkdir()
        self._seed_cib(root / "var/lib/pacemaker/cib/cib.xml")
        for sub, mode in (
            ("var/lib/pacemaker/cib", 0o750),
            ("var/lib/pacemaker/cib/cib.xml", 0o600),
            ("var/lib/pacemaker/pengine", 0o750),
            ("var/lib/pacemaker/blackbox", 0o750),
            ("var/lib/pacemaker/cores", 0o750),
            ("var/log/pacemaker", 0o770),
            ("var/log/crmsh", 0o775),
        ):
            shutil.chown(root / sub, HACLUSTER, HACLIENT)
            os.chmod(root / sub, mode)
        for agent in sorted(self.agents_dir.iterdir()):
            if agent.is_file() and os.access(agent, os.X_OK):
                (root / "ocf/resource.d/ipfailover" / agent.name).symlink_to(agent.resolve())
        config = {
            "name": name,
            "root": str(root),
            "binds": [list(b) for b in self.binds],
            "env": self._daemon_env(),
            "corosync_stdout": str(root / LOGS["corosync-stdout"]),
            "pacemaker_stdout": str(root / LOGS["pacemakerd"]),
            "stop_timeout": self.stop_timeout,
            "lifeline_fd": -1,
        }
        (root / "node.json").write_text(json.dumps(config, indent=2))

    def _seed_cib(self, path: Path) -> None:
        """The first CIB, with the cluster properties: dc-deadtime must be known at start-up."""
        empty = _run(["cibadmin", "--empty"]).stdout
        path.write_text(empty)
        env = {"PATH": CLEAN_PATH, "CIB_file": str(path), "LC_ALL": "C.UTF-8"}
        for key, value in self.properties.items():
            _run(
                ["crm_attribute", "--type", "crm_config", "--name", key, "--update", value],
                env=env,
            )

    def _daemon_env(self) -> dict[str, str]:
        return {
            "PATH": CLEAN_PATH,
            "LC_ALL": "C.UTF-8",
            "HOME": "/var/lib/pacemaker",
            "PCMK_logfile": "/var/log/pacemaker/pacemaker.log",
            "PCMK_logfacility": "none",
            "PCMK_logpriority": "info",
            "PCMK_debug": "no",
        }

    def start_node(self, name: str) -> None:
        """Start (or restart, after kill/stop) one node: its PID 1, corosync and pacemakerd."""
        if name in self.running:
            raise ClusterError(f"node {name} is already running")
        power_offs = self._power_on(name)
        power = self.lab.power().get(name)
        shutdowns = power.shutdowns if power is not None else 0
        root = self.root(name)
        read_end, write_end = os.pipe()
        config = json.loads((root / "node.json").read_text())
        config["lifeline_fd"] = read_end
        (root / "node.json").write_text(json.dumps(config, indent=2))
        argv = [
            "ip",
            "netns",
            "exec",
            self.lab.nodes[name].netns,
            "unshare",
            "--mount",
            "--uts",
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
            sys.executable,
            "-I",
            str(NODEINIT),
            str(root / "node.json"),
        ]
        with open(root / LOGS["init"], "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={"PATH": CLEAN_PATH, "LC_ALL": "C.UTF-8"},
                cwd="/",
                pass_fds=(read_end,),
                start_new_session=True,
            )
        os.close(read_end)
        try:
            init_pid = _wait_for(lambda: self._init_pid(proc), 10.0, f"PID 1 of node {name}")
        except BaseException:
            os.close(write_end)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        pid_ns = _ns_id(init_pid, "pid") or ""
        self.namespaces[f"{name}#{len(self.namespaces)}"] = pid_ns
        self.running[name] = NodeProcess(
            name=name,
            proc=proc,
            init_pid=init_pid,
            pid_ns=pid_ns,
            lifeline=write_end,
            started=time.monotonic(),
            power_offs=power_offs,
            shutdowns=shutdowns,
        )

    def _power_on(self, name: str) -> int:
        """Start the node's instance if it is stopped (fenced with "off") and wait for its boot;
        return the lab's count of its power cuts."""
        power = self.lab.power().get(name)
        if power is None:
            return 0
        if power.state != "running":
            self.lab.ec2().start_instances(InstanceIds=[self.lab.nodes[name].instance_id])
            _wait_for(
                lambda: self.lab.power()[name].state == "running",
                10.0,
                f"the instance of node {name} to boot",
            )
        return power.offs

    @staticmethod
    def _init_pid(proc: subprocess.Popen[bytes]) -> int | None:
        if proc.poll() is not None:
            raise ClusterError(f"the node's unshare exited with {proc.returncode}")
        own = _ns_id(os.getpid(), "pid")
        for child in _children(proc.pid):
            # the child is in a new PID namespace once unshare forked it
            if _ns_id(child, "pid") not in (None, own):
                return child
        return None

    def _take(self, name: str) -> NodeProcess:
        node = self.running.pop(name, None)
        if node is None:
            raise ClusterError(f"node {name} is not running")
        return node

    def kill(self, name: str) -> None:
        """Crash a node: SIGKILL its PID 1, so the kernel kills everything in the node at once
        (corosync, the pacemaker daemons, running agents: a power cut, not a clean leave).
        The lab's network namespace stays, with whatever the agents configured in it."""
        node = self._take(name)
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.init_pid, signal.SIGKILL)
        self._reap(node, 10.0)

    def stop_node(self, name: str, timeout: float | None = None) -> None:
        """Stop a node cleanly (pacemakerd stops its resources, then corosync), kill if stuck."""
        self._stop([self._take(name)], timeout)

    def _stop(self, nodes: Sequence[NodeProcess], timeout: float | None) -> None:
        limit = (self.stop_timeout if timeout is None else timeout) + 15.0
        for node in nodes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.init_pid, signal.SIGTERM)
        deadline = time.monotonic() + limit
        errors = []
        for node in nodes:
            try:
                self._reap(node, max(0.1, deadline - time.monotonic()))
            except ClusterError as err:
                errors.append(str(err))
        if errors:
            raise ClusterError("; ".join(errors))

    def _reap(self, node: NodeProcess, timeout: float) -> None:
        try:
            node.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.init_pid, signal.SIGKILL)
            try:
                node.proc.wait(10.0)
            except subprocess.TimeoutExpired:
                raise ClusterError(
                    f"node {node.name}: unshare {node.proc.pid} did not exit"
                ) from None
        with contextlib.suppress(OSError):
            os.close(node.lifeline)
        # PID 1 gone means the kernel kills the rest; wait until it has.
        _wait_for(
            lambda: not processes_in([node.pid_ns], "pid"),
            10.0,
            f"the processes of node {node.name} to be gone",
        )

    def close(self) -> None:
        """Stop every running node (cleanly, then by force) and every spawned process."""
        nodes = list(self.running.values())
        self.running.clear()
        try:
            if nodes:
                self._stop(nodes, None)
        finally:
            for spawned in self.spawned:
                self._kill_spawned(spawned)
            self.spawned.clear()

    # ---- background processes in a node -------------------------------------------------------

    def _nsenter(self, node: str, argv: Sequence[str]) -> list[str]:
        """argv inside the running node: its network, mount, UTS and PID namespaces."""
        running = self.running.get(node)
        if running is None:
            raise ClusterError(f"node {node} is not running")
        return [
            "nsenter",
            "--target",
            str(running.init_pid),
            "--net",
            "--mount",
            "--uts",
            "--pid",
            "--",
            *argv,
        ]

    def spawn(self, node: str, argv: Sequence[str], log: Path | None = None) -> Spawned:
        """Start argv in the background inside the node (its network, mount, UTS and PID
        namespaces): it dies with the node (kill, fencing); `unspawn` or close() end it."""
        full = self._nsenter(node, argv)
        init_pid = self.running[node].init_pid
        out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=self.node_env(node),
                cwd="/",
                start_new_session=True,
            )
        finally:
            if log is not None and not isinstance(out, int):
                out.close()
        spawned = Spawned(node=node, proc=proc, init_pid=init_pid)
        self.spawned.append(spawned)
        return spawned

    def unspawn(self, spawned: Spawned) -> None:
        self._kill_spawned(spawned)
        with contextlib.suppress(ValueError):
            self.spawned.remove(spawned)

    @staticmethod
    def _kill_spawned(spawned: Spawned) -> None:
        # nsenter and the process it forked into the node share a process group (its PID)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(spawned.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            spawned.proc.wait(10.0)

    def spawned_alive(self, spawned: Spawned) -> bool:
        """Whether the spawned process still runs (in the node it was started in)."""
        running = self.running.get(spawned.node)
        return (
            spawned.proc.poll() is None
            and running is not None
            and running.init_pid == spawned.init_pid
        )

    def leftovers(self) -> list[int]:
        """Host PIDs of anything still running in a node's PID or network namespace."""
        pids = processes_in(list(self.namespaces.values()), "pid")
        nets = [
            ns
            for ns in (_netns_id(self.lab.nodes[name].netns) for name in self.names)
            if ns is not None
        ]
        return sorted(set(pids) | set(processes_in(nets, "net")))

    # ---- inside a node -----------------------------------------------------------------------

    def node_env(self, node: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": CLEAN_PATH,
            "LC_ALL": "C.UTF-8",
            "HOME": str(self.root(node) / "home"),
            "TERM": "dumb",
        }
        env.update(extra or {})
        return env

    def exec(
        self,
        node: str,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside the node (its network, mount, UTS and PID namespaces)."""
        full = self._nsenter(node, argv)
        try:
            proc = subprocess.run(
                full,
                input=input,
                capture_output=True,
                text=True,
                errors="replace",
                env=self.node_env(node, env),
                cwd="/",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise ClusterError(f"{node}: {' '.join(argv)}: timed out after {timeout}s") from err
        if check and proc.returncode != 0:
            raise ClusterError(
                f"{node}: {' '.join(argv)}: rc={proc.returncode}\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def check_running(self) -> None:
        """Raise if a node that should be running has died on its own (start-up failure).

        A node whose instance the lab powered off since it started (fenced) is taken as
        stopped instead: it leaves `running` and is recorded in `fenced`; so is one that EC2
        shut down (the lab's event action at a scheduled event's NotBefore: lab.power),
        recorded in `shut_down`."""
        for node in list(self.running.values()):
            if node.proc.poll() is None:
                continue
            power = self.lab.power().get(node.name)
            if power is not None and power.shutdowns > node.shutdowns:
                self.running.pop(node.name, None)
                self.shut_down.append((node.name, time.time()))
                self._reap(node, 10.0)
                continue
            if self.fencing is not None and power is not None and power.offs > node.power_offs:
                self.running.pop(node.name, None)
                self.fenced.append((node.name, power.changed))
                self._reap(node, 10.0)
                continue
            raise ClusterError(
                f"node {node.name} exited with {node.proc.returncode}:\n"
                + self.log(node.name, "init")[-3000:]
            )

    def any_node(self) -> str:
        for name in self.names:
            if name in self.running:
                return name
        raise ClusterError("no node is running")

    def crm_mon_xml(self, node: str | None = None) -> str:
        return self.exec(
            node or self.any_node(), ["crm_mon", "-1", "--output-as=xml"], timeout=30, check=True
        ).stdout

    def crm_mon(self, node: str | None = None) -> Status:
        return parse_crm_mon(self.crm_mon_xml(node))

    def try_crm_mon(self, node: str | None = None) -> Status | None:
        """crm_mon, or None while the node cannot answer yet (starting, no CIB connection)."""
        try:
            return self.crm_mon(node)
        except ClusterError:
            return None

    def wait_for(
        self,
        predicate: Callable[[Status], T],
        timeout: float = 60.0,
        *,
        node: str | None = None,
        interval: float = 0.25,
        what: str = "",
    ) -> T:
        """Poll crm_mon until predicate(status) is truthy; return that value."""

        def check() -> T | None:
            self.check_running()
            status = self.try_crm_mon(node)
            return predicate(status) if status is not None else None

        try:
            return _wait_for(check, timeout, what or "the cluster", interval)
        except ClusterError as err:
            last = self.try_crm_mon(node)
            raise ClusterError(f"{err}; last status: {last}") from None

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait until every running node is online and a DC is elected with quorum, as seen
        from every running node; return the seconds since start()."""
        names = sorted(self.running)

        def ready(status: Status) -> bool:
            return (
                status.dc is not None
                and status.quorum
                and all(
                    n in status.nodes and status.nodes[n].online and not status.nodes[n].pending
                    for n in names
                )
            )

        for name in names:
            self.wait_for(ready, timeout, node=name, what=f"the cluster as seen from {name}")
        self.start_seconds = time.monotonic() - self._began
        if self.fencing is not None and not self.fencing_loaded:
            self.load_fencing(timeout)
        return self.start_seconds

    def load_fencing(self, timeout: float = 60.0) -> None:
        """Load the fencing configuration (stonith-enabled=true and the device); wait until
        the device runs."""
        assert self.fencing is not None
        self.configure(self.fencing.crm(self.lab, self.names))
        self.fencing_loaded = True
        resource = self.fencing.resource
        self.wait_for(
            lambda s: (
                s.resources.get(resource) is not None and s.resources[resource].role == "Started"
            ),
            timeout,
            what=f"the fencing device {resource} to start",
        )

    def stonith_resources(self) -> set[str]:
        return {self.fencing.resource} if self.fencing is not None else set()

    def restore(self, timeout: float = 60.0) -> None:
        """Back to a clean two-node cluster: every node running and online, no resources, no
        constraints, no failure history (for reusing one cluster across tests)."""
        for name in self.names:
            if name not in self.running:
                self.start_node(name)
        self.wait_ready(timeout)
        for name in self.names:
            self.online(name)
        self.cibadmin("--replace", "--scope", "constraints", "--xml-text", "<constraints/>")
        self.cibadmin("--replace", "--scope", "resources", "--xml-text", self._kept_resources())
        keep = self.stonith_resources()
        self.wait_for(
            lambda s: not any(r.active for r in s.resources.values() if r.id not in keep),
            timeout,
            what="every resource to be stopped",
        )
        self.cleanup()
        self.wait_for(
            lambda s: (
                set(s.resources) == keep
                and all(s.resources[r].role == "Started" for r in keep)
                and not s.failures
            ),
            timeout,
            what="an empty status",
        )

    def _kept_resources(self) -> str:
        """The resources section with only the fencing devices left in it."""
        if not self.stonith_resources():
            return "<resources/>"
        root = ET.fromstring(self.cibadmin("--query", "--scope", "resources"))  # noqa: S314
        for child in list(root):
            if child.get("class") != "stonith":
                root.remove(child)
        return ET.tostring(root, encoding="unicode")

    def settle(self, timeout: float = 60.0, node: str | None = None) -> None:
        """Wait until the cluster has no actions left to run (`crm_resource --wait`)."""
        self.exec(
            node or self.any_node(),
            ["crm_resource", "--wait", f"--timeout={int(timeout)}s"],
            timeout=timeout + 10,
            check=True,
        )

    def configure(self, crm_text: str, node: str | None = None) -> None:
        """Load crm shell configuration (`crm configure load update -`)."""
        self.exec(
            node or self.any_node(),
            ["crm", "configure", "load", "update", "-"],
            input=crm_text,
            check=True,
        )

    def cibadmin(self, *args: str, input: str | None = None, node: str | None = None) -> str:
        return self.exec(
            node or self.any_node(), ["cibadmin", *args], input=input, check=True
        ).stdout

    def standby(self, node: str, on: bool = True) -> None:
        # crm_attribute, not `crm node standby` (crmsh pings the node name first).
        self.exec(
            self.any_node(),
            [
                "crm_attribute",
                "--node",
                node,
                "--name",
                "standby",
                "--update",
                "on" if on else "off",
                "--lifetime",
                "forever",
            ],
            check=True,
        )

    def online(self, node: str) -> None:
        self.standby(node, on=False)

    def move(self, resource: str, node: str) -> None:
        """Move with a cli-prefer constraint (remove it with clear)."""
        self.exec(
            self.any_node(),
            ["crm_resource", "--resource", resource, "--move", "--node", node],
            check=True,
        )

    def clear(self, resource: str) -> None:
        self.exec(self.any_node(), ["crm_resource", "--resource", resource, "--clear"], check=True)

    def cleanup(self, resource: str | None = None) -> None:
        argv = ["crm_resource", "--cleanup"]
        if resource is not None:
            argv += ["--resource", resource]
        self.exec(self.any_node(), argv, check=True)

    # ---- logs --------------------------------------------------------------------------------

    def log(self, node: str, which: str = "pacemaker") -> str:
        """A node's log: pacemaker, corosync, init (nodeinit), pacemakerd or corosync-stdout."""
        try:
            return (self.root(node) / LOGS[which]).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def logs_tail(self, lines: int = 40) -> str:
        """The end of every node's logs, for failure messages."""
        parts = []
        for name in self.names:
            for which in ("init", "corosync", "pacemaker"):
                text = self.log(name, which).splitlines()[-lines:]
                parts.append(f"--- {name} {which} ---\n" + "\n".join(text))
        return "\n".join(parts)


def _netns_id(name: str) -> str | None:
    try:
        stat = os.stat(f"/run/netns/{name}")
    except OSError:
        return None
    return f"net:[{stat.st_ino}]"


def _run(
    argv: Sequence[str], env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else {"PATH": CLEAN_PATH, "LC_ALL": "C.UTF-8"},
        check=False,
    )
    if proc.returncode != 0:
        raise ClusterError(f"{' '.join(argv)}: rc={proc.returncode} {proc.stderr.strip()}")
    return proc


def _wait_for(
    predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    value: T = wait_until(predicate, timeout, interval, what, error=ClusterError)
    return value
