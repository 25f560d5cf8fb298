"""PID 1 of a cluster node: set up the node's private mounts, run corosync and pacemakerd.

Run by the Cluster (never imported by it) as

    ip netns exec <node netns> unshare --mount --uts --pid --fork --mount-proc \
        --propagation private python3 nodeinit.py <node.json>

so that it starts as PID 1 of a new PID namespace, in a new mount and UTS namespace whose mounts
propagate nowhere, inside the node's network namespace. Being PID 1 is what makes a node easy to
crash and impossible to leak: when this process dies (SIGKILL from the host is a crash), the
kernel kills every process of the namespace, the mount namespace goes away with its mounts.

Steps: hostname; bind-mount the node's directories over /etc/corosync, /var/lib/pacemaker, ...;
a per-node /etc/hosts; tmpfs on /run and /dev/shm; the OCF providers (the host's plus
`ipfailover`, a directory of symlinks to the repository's agents); then `corosync -f`, wait for
its IPC, then `pacemakerd`, and reap children until told to stop. SIGTERM (or end of file on the
lifeline pipe, when the process that started the cluster is gone) is a clean shutdown: pacemakerd
first (it stops the resources), then corosync.

Standard library only; it may run under Debian's /usr/bin/python3.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OCF_PROVIDERS = Path("/usr/lib/ocf/resource.d")
COROSYNC_READY_TIMEOUT = 20.0


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    sys.stderr.write(f"{stamp} nodeinit[{os.getpid()}]: {message}\n")
    sys.stderr.flush()


def run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: rc={proc.returncode} {proc.stderr.strip()}")


def bind(source: str, target: str) -> None:
    run("mount", "--bind", source, target)


def set_up_mounts(config: dict[str, Any]) -> None:
    root = Path(config["root"])
    # The OCF providers: the host's directories bind-mounted into a per-node directory that
    # also holds `ipfailover/`, and that directory (recursively) over /usr/lib/ocf/resource.d.
    # Nothing is created on the host's /usr.
    providers = root / "ocf" / "resource.d"
    for entry in sorted(OCF_PROVIDERS.iterdir()):
        if entry.is_dir() and entry.name != "ipfailover":
            (providers / entry.name).mkdir(exist_ok=True)
            bind(str(entry), str(providers / entry.name))
    run("mount", "--rbind", str(providers), str(OCF_PROVIDERS))
    for source, target in config["binds"]:
        bind(str(root / source), target)
    run("mount", "-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs", "/run")
    run("mount", "-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", "/dev/shm")
    for name in ("lock", "resource-agents"):
        Path("/run", name).mkdir(mode=0o755, exist_ok=True)


def corosync_ready() -> bool:
    proc = subprocess.run(
        ["corosync-cmapctl", "-g", "runtime.votequorum.this_node_id"],
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


class Init:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.log_dir = Path(config["root"])
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def spawn(self, name: str, argv: list[str], env: dict[str, str], logfile: str) -> None:
        with open(logfile, "ab") as out:
            self.children[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd="/"
            )
        log(f"started {name} (pid {self.children[name].pid}): {' '.join(argv)}")

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for name, child in self.children.items():
                if child.pid == pid:
                    child.returncode = os.waitstatus_to_exitcode(status)
                    if not self.stopping:
                        log(f"{name} exited with {child.returncode}")

    def alive(self, name: str) -> bool:
        child = self.children.get(name)
        return child is not None and child.returncode is None

    def wait_gone(self, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive(name) and time.monotonic() < deadline:
            time.sleep(0.1)
            self.reap()
        return not self.alive(name)

    def start(self) -> None:
        env = dict(self.config["env"])
        self.spawn("corosync", ["corosync", "-f"], env, self.config["corosync_stdout"])
        deadline = time.monotonic() + COROSYNC_READY_TIMEOUT
        while not corosync_ready():
            self.reap()
            if not self.alive("corosync"):
                raise RuntimeError("corosync exited during start-up (see its log)")
            if time.monotonic() > deadline:
                raise RuntimeError("corosync IPC not ready in time")
            time.sleep(0.1)
        log("corosync is ready")
        pacemakerd = ["pacemakerd"]
        if self.config.get("standby"):
            pacemakerd.append("--standby")
        self.spawn("pacemakerd", pacemakerd, env, self.config["pacemaker_stdout"])

    def stop(self) -> None:
        self.stopping = True
        for name, timeout in (
            ("pacemakerd", self.config["stop_timeout"]),
            ("corosync", 10.0),
        ):
            if self.alive(name):
                log(f"stopping {name}")
                self.children[name].send_signal(signal.SIGTERM)
                if not self.wait_gone(name, timeout):
                    log(f"{name} did not stop in {timeout}s: killing it")
                    self.children[name].kill()
                    self.wait_gone(name, 5.0)
        log("stopped")

    def loop(self) -> None:
        lifeline = int(self.config["lifeline_fd"])
        while not self.stopping:
            readable, _, _ = select.select([lifeline], [], [], 0.2)
            if readable and not os.read(lifeline, 64):
                log("lifeline closed: the cluster's owner is gone")
                break
            self.reap()
        self.stop()


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    init = Init(config)

    def on_signal(signum: int, _frame: object) -> None:
        log(f"signal {signum}: shutting down")
        init.stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    socket.sethostname(config["name"])
    try:
        set_up_mounts(config)
        init.start()
    except Exception as err:
        log(f"start-up failed: {err}")
        init.stop()
        return 1
    log("running")
    init.loop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
