"""A real two-node Pacemaker/Corosync cluster in the lab (tests/cluster): it forms, it moves a
Dummy and an aws-overlayip resource on standby and recovers them when the active node crashes,
and it leaves nothing behind.

One Lab and one Cluster serve the whole module; `cluster` restores it (both nodes running and
online, no resources) after each test. Fencing is disabled for now (stonith-enabled=false): when a
node vanishes from the membership, Pacemaker takes it for cleanly down ("Blind faith: not
fencing unseen nodes") and starts its resources on the survivor, which keeps quorum thanks to
corosync's two_node. That is exactly the split-brain risk fencing will remove.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster import Cluster, ClusterError, Status, processes_in
from cluster.health import announce, drop_strategy, health_crm, health_values
from lab import Lab, netns, wait_until

pytestmark = [
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("corosync", "pacemakerd", "crm", "nsenter")),
        reason="needs corosync, pacemaker, crmsh and util-linux",
    ),
]

READY_BOUND = 30.0  # seconds from start to both nodes online with a DC (measured: ~5-6 s)
MOVE_TIMEOUT = 30.0
# token 3 s + consensus 3.6 s + a new transition; measured ~8 s
CRASH_TIMEOUT = 45.0
OVERLAY_IP = "192.168.100.10"
HOST_FILES = (
    "/etc/corosync/corosync.conf",
    "/etc/hosts",
    "/etc/hostname",
)


def digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return "(missing)"


def other(node: str) -> str:
    return "b" if node == "a" else "a"


def runs_on(resource: str, node: str) -> Any:
    def check(status: Status) -> bool:
        state = status.resources.get(resource)
        return state is not None and state.role == "Started" and state.nodes == (node,)

    return check


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Cluster]]:
    host_before = {path: digest(path) for path in HOST_FILES}
    workdir = tmp_path_factory.mktemp("cluster")
    with Lab(workdir / "lab") as lab, Cluster(lab, workdir / "cluster") as cluster:
        try:
            cluster.wait_ready(READY_BOUND)
        except ClusterError:
            print(cluster.logs_tail())
            raise
        yield lab, cluster
    assert cluster.leftovers() == []
    assert netns.lab_namespaces(lab.prefix) == []
    assert {path: digest(path) for path in HOST_FILES} == host_before


@pytest.fixture
def cluster(world: tuple[Lab, Cluster]) -> Iterator[Cluster]:
    cluster = world[1]
    yield cluster
    # shown by pytest only when the test failed
    print(cluster.logs_tail(60))
    cluster.restore()


@pytest.fixture
def lab(world: tuple[Lab, Cluster]) -> Lab:
    return world[0]


# ---- the cluster itself -----------------------------------------------------------------------


def test_cluster_forms_with_both_nodes_and_a_dc(cluster: Cluster) -> None:
    print(f"cluster ready {cluster.start_seconds:.1f}s after start")
    assert cluster.start_seconds < READY_BOUND
    for node in ("a", "b"):
        status = cluster.crm_mon(node)
        assert status.online == ("a", "b")
        assert status.dc in ("a", "b")
        assert status.quorum
        assert status.nodes[status.dc].is_dc
    quorum = cluster.exec("a", ["corosync-quorumtool", "-s"], check=True).stdout
    assert "2Node" in quorum  # votequorum's two_node flag
    properties = cluster.exec(
        "a", ["crm_attribute", "--type", "crm_config", "--name", "stonith-enabled", "--query"]
    ).stdout
    assert "value=false" in properties


def test_each_node_has_its_own_namespaces_and_files(cluster: Cluster, lab: Lab) -> None:
    for node in ("a", "b"):
        assert cluster.exec(node, ["hostname"], check=True).stdout.strip() == node
        addresses = cluster.exec(node, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
        assert f"{lab.nodes[node].ip}/" in addresses
        mounts = cluster.exec(node, ["findmnt", "-rn", "-o", "TARGET,FSTYPE"], check=True).stdout
        targets = dict(line.split(" ", 1) for line in mounts.splitlines())
        assert targets["/run"] == "tmpfs"
        assert targets["/dev/shm"] == "tmpfs"
        for path in ("/etc/corosync", "/var/lib/pacemaker", "/var/log/pacemaker", "/etc/hosts"):
            assert path in targets, path
        agents = cluster.exec(node, ["ls", "/usr/lib/ocf/resource.d/ipfailover"]).stdout.split()
        assert "aws-overlayip" in agents
        dummy = cluster.exec(node, ["ls", "/usr/lib/ocf/resource.d/heartbeat/Dummy"])
        assert dummy.returncode == 0
        # the node's daemons live only in the node's PID namespace
        ps = cluster.exec(node, ["ps", "-eo", "pid,comm"], check=True).stdout
        assert "corosync" in ps and "pacemakerd" in ps and "pacemaker-contr" in ps
    assert not Path("/usr/lib/ocf/resource.d/ipfailover").exists()
    info = cluster.exec("a", ["crm_resource", "--show-metadata", "ocf:ipfailover:aws-overlayip"])
    assert info.returncode == 0 and "<resource-agent" in info.stdout


# ---- Dummy: standby, move, crash ---------------------------------------------------------------


def test_dummy_moves_on_standby_and_recovers_from_a_crash(cluster: Cluster) -> None:
    cluster.configure(
        "primitive dummy ocf:heartbeat:Dummy \\\n"
        "    op monitor interval=5s timeout=20s\n"
        "location dummy-prefers-a dummy 50: a\n"
    )
    cluster.wait_for(runs_on("dummy", "a"), MOVE_TIMEOUT, what="dummy on a")
    # Dummy's state file is in the node's private /run, never on the host
    state = "/run/resource-agents/Dummy-dummy.state"
    assert cluster.exec("a", ["test", "-f", state]).returncode == 0
    assert cluster.exec("b", ["test", "-f", state]).returncode != 0
    assert not Path(state).exists()

    began = time.monotonic()
    cluster.standby("a")
    cluster.wait_for(runs_on("dummy", "b"), MOVE_TIMEOUT, what="dummy on b after standby")
    print(f"standby: dummy moved to b in {time.monotonic() - began:.1f}s")
    assert cluster.crm_mon().nodes["a"].standby
    cluster.online("a")
    cluster.wait_for(runs_on("dummy", "a"), MOVE_TIMEOUT, what="dummy back on a")

    cluster.move("dummy", "b")
    cluster.wait_for(runs_on("dummy", "b"), MOVE_TIMEOUT, what="dummy moved to b")
    cluster.clear("dummy")
    cluster.wait_for(runs_on("dummy", "a"), MOVE_TIMEOUT, what="dummy back on a after clear")

    began = time.monotonic()
    cluster.kill("a")
    status = cluster.wait_for(
        lambda s: runs_on("dummy", "b")(s) and s, CRASH_TIMEOUT, what="dummy recovered on b"
    )
    print(f"crash of a: dummy started on b {time.monotonic() - began:.1f}s after the kill")
    assert status.dc == "b" and status.quorum  # two_node: the survivor keeps quorum
    assert not status.nodes["a"].online
    assert not status.failures
    assert "Blind faith: not fencing unseen nodes" in cluster.log("b")

    # the crashed node comes back and rejoins; its probe finds dummy stopped there, and the
    # location preference (no stickiness) moves dummy back to it
    cluster.start_node("a")
    cluster.wait_ready(READY_BOUND)
    cluster.settle()
    status = cluster.crm_mon()
    assert runs_on("dummy", "a")(status)
    assert not status.failures, status.failures


# ---- aws-overlayip ------------------------------------------------------------------------------


def overlay_routes(lab: Lab) -> dict[str, str | None]:
    """Route table id -> ENI the overlay IP's route points at (None: no such route)."""
    return lab.route_targets(f"{OVERLAY_IP}/32")


def has_overlay_ip(lab: Lab, node: str) -> bool:
    for link in lab.ip_json(node, "addr", "show", "dev", "eth0"):
        if any(a.get("local") == OVERLAY_IP for a in link.get("addr_info", [])):
            return True
    return False


def test_aws_overlayip_follows_the_active_node(cluster: Cluster, lab: Lab) -> None:
    table = lab.route_tables[0]
    cluster.configure(
        "primitive overlay ocf:ipfailover:aws-overlayip \\\n"
        f"    params ip={OVERLAY_IP} routing_table={table} interface=eth0 \\\n"
        f"        endpoint_url={lab.endpoint_url} source_dest_check=disable \\\n"
        "    op start timeout=30s interval=0s \\\n"
        "    op stop timeout=30s interval=0s \\\n"
        "    op monitor timeout=20s interval=10s\n"
        "location overlay-prefers-a overlay 50: a\n"
    )
    status = cluster.wait_for(
        lambda s: runs_on("overlay", "a")(s) and s, MOVE_TIMEOUT, what="overlay on a"
    )
    assert not status.failures, status.failures
    assert overlay_routes(lab)[table] == lab.nodes["a"].eni_id
    assert has_overlay_ip(lab, "a") and not has_overlay_ip(lab, "b")
    assert lab.eni(lab.nodes["a"].eni_id)["SourceDestCheck"] is False

    began = time.monotonic()
    cluster.standby("a")
    status = cluster.wait_for(
        lambda s: runs_on("overlay", "b")(s) and s, MOVE_TIMEOUT, what="overlay on b"
    )
    print(f"standby: overlay moved to b in {time.monotonic() - began:.1f}s")
    assert not status.failures, status.failures
    assert overlay_routes(lab)[table] == lab.nodes["b"].eni_id
    assert has_overlay_ip(lab, "b") and not has_overlay_ip(lab, "a")

    cluster.online("a")
    cluster.wait_for(runs_on("overlay", "a"), MOVE_TIMEOUT, what="overlay back on a")
    assert overlay_routes(lab)[table] == lab.nodes["a"].eni_id

    # crash of the active node: no fencing, so b takes over as soon as a leaves the membership;
    # a's network namespace keeps its (now useless) OS address
    began = time.monotonic()
    cluster.kill("a")
    status = cluster.wait_for(
        lambda s: runs_on("overlay", "b")(s) and s, CRASH_TIMEOUT, what="overlay recovered on b"
    )
    print(f"crash of a: overlay started on b {time.monotonic() - began:.1f}s after the kill")
    assert not status.failures, status.failures
    assert overlay_routes(lab)[table] == lab.nodes["b"].eni_id
    assert has_overlay_ip(lab, "b")
    assert has_overlay_ip(lab, "a")  # nobody cleaned the crashed node: no fencing, no reboot
    # a rejoins with its stale address: the probe must say "not running" (the route points at
    # b), not "running" (which would make Pacemaker see the resource active on both nodes)
    cluster.start_node("a")
    cluster.wait_ready(READY_BOUND)
    cluster.settle()
    status = cluster.crm_mon()
    assert runs_on("overlay", "a")(status)  # failback: the location preference
    assert not status.failures, status.failures
    assert "active on 2 nodes" not in cluster.log("a") + cluster.log("b")
    assert overlay_routes(lab)[table] == lab.nodes["a"].eni_id
    assert has_overlay_ip(lab, "a") and not has_overlay_ip(lab, "b")


# ---- aws-health: AWS's scheduled maintenance ----------------------------------------------------

EVENT_AHEAD = 20.0  # seconds from the announcement to NotBefore (2 s monitors, a loaded machine)


def test_aws_health_moves_everything_before_a_scheduled_reboot(cluster: Cluster, lab: Lab) -> None:
    """aws-health as crm-examples/aws-health.crm configures it (migrate-on-red); AWS schedules
    a system-reboot of a: a turns red and the Dummy moves to b before NotBefore, b stays green;
    at NotBefore the lab shuts a down as EC2 does (a clean stop of its cluster stack), then
    hard-stops and boots it; nothing failed."""
    cluster.configure(health_crm(lab))
    try:
        cluster.wait_for(
            lambda s: health_values(cluster) == dict.fromkeys(cluster.names, "green"),
            60.0,
            what="#health-aws green on both nodes",
        )
        cluster.configure(
            "primitive d ocf:heartbeat:Dummy op monitor interval=5s\nlocation d-prefers-a d 50: a\n"
        )
        cluster.wait_for(runs_on("d", "a"), MOVE_TIMEOUT, what="d on a")

        not_before, _ = announce(lab, "a", "system-reboot", EVENT_AHEAD)
        cluster.wait_for(runs_on("d", "b"), EVENT_AHEAD + MOVE_TIMEOUT, node="b", what="d on b")
        moved = time.time()
        print(f"d moved to b {not_before - moved:.1f}s before NotBefore")
        assert moved < not_before
        assert health_values(cluster, "b") == {"a": "red", "b": "green"}

        def done() -> Any:
            found = [x for x in lab.event_actions() if x.at == not_before and x.phase == "done"]
            return found[0] if found else None

        action = wait_until(done, not_before - time.time() + MOVE_TIMEOUT, what="EC2's reboot")
        assert action.graceful is True and action.booted is not None
        assert not_before <= action.shutdown < not_before + 1.0

        def gone() -> bool:
            cluster.check_running()  # takes a node that EC2 shut down out of `running`
            return "a" not in cluster.running

        wait_until(gone, 10.0, what="a out of the cluster")
        assert [node for node, _ in cluster.shut_down] == ["a"]
        status = cluster.crm_mon("b")
        assert runs_on("d", "b")(status) and not status.failures, status.failures
        assert lab.power()["a"].boots == 1
        assert lab.instance_events("a")["scheduled"] == []  # the event is over
    finally:
        with contextlib.suppress(ClusterError):
            drop_strategy(cluster)


# ---- teardown ----------------------------------------------------------------------------------


def crash_one_node_then_fail(workdir: Path, seen: dict[str, Any]) -> None:
    with Lab(workdir / "lab") as lab, Cluster(lab, workdir / "cluster") as cluster:
        seen["lab"], seen["cluster"] = lab, cluster
        cluster.wait_ready(READY_BOUND)
        cluster.configure("primitive dummy ocf:heartbeat:Dummy op monitor interval=5s\n")
        cluster.wait_for(lambda s: s.where("dummy"), MOVE_TIMEOUT, what="dummy started")
        seen["pid_namespaces"] = [n.pid_ns for n in cluster.running.values()]
        seen["init_pids"] = [n.init_pid for n in cluster.running.values()]
        cluster.kill("b")
        raise RuntimeError("the test body failed")


def test_nothing_is_left_behind_even_when_the_body_fails(tmp_path: Path) -> None:
    """A second, short-lived lab and cluster: a node is crashed, then the body raises."""
    seen: dict[str, Any] = {}
    with pytest.raises(RuntimeError, match="the test body failed"):
        crash_one_node_then_fail(tmp_path, seen)
    lab, cluster = seen["lab"], seen["cluster"]
    assert cluster.running == {}
    assert cluster.leftovers() == []
    assert processes_in(seen["pid_namespaces"], "pid") == []
    for pid in seen["init_pids"]:
        assert not Path(f"/proc/{pid}").exists()
    assert netns.lab_namespaces(lab.prefix) == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(tmp_path) not in mounts
