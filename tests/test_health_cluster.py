"""ipfailover.health.cluster against the real tools (attrd_updater, crm_mon, cibadmin,
crm_resource) of a real two-node Pacemaker cluster in the lab: what the agent-process tests
(tests/test_health_agent.py) take from stand-ins is checked here once. Few tests: they are slow.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster import Cluster, ClusterError
from lab import Lab

pytestmark = [
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("corosync", "pacemakerd", "crm", "nsenter")),
        reason="needs corosync, pacemaker, crmsh and util-linux",
    ),
]

LIB = Path(__file__).resolve().parent.parent / "lib"
# One call of the module inside a node: json in argv[1] ({"op": ..., args}), json out.
DRIVER = textwrap.dedent(
    """\
    import json, sys
    from ocf_shim import Deadline
    from ipfailover.health import cluster
    request = json.loads(sys.argv[1])
    deadline = Deadline(30)
    op = request.pop("op")
    me = request.pop("me", None)
    if op == "update":
        cluster.update(request["name"], request["value"], deadline, me)
        out = None
    elif op == "delete":
        cluster.delete(request["name"], deadline, me)
        out = None
    elif op == "peers":
        out = [p._asdict() for p in cluster.peers(deadline, "#health-aws", "aws-health-event",
                                                  "hana_prd_sync_state")]
    elif op == "version":
        out = [list(cluster.pacemaker_version(deadline)), cluster.attrd_can_wait(deadline)]
    elif op == "primitives":
        out = [p._asdict() for p in cluster.primitives(deadline)]
    print(json.dumps(out))
    """
)
HEALTH_CLONE = (
    "primitive rsc_health ocf:ipfailover:aws-health params check_api=false "
    "op monitor interval=10s meta target-role=Stopped\n"
    "clone cln_health rsc_health meta allow-unhealthy-nodes={allow}\n"
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Cluster]]:
    workdir = tmp_path_factory.mktemp("health-cluster")
    with Lab(workdir / "lab") as lab, Cluster(lab, workdir / "cluster") as cluster:
        try:
            cluster.wait_ready(30)
        except ClusterError:
            print(cluster.logs_tail())
            raise
        yield lab, cluster


@pytest.fixture
def cluster(world: tuple[Lab, Cluster]) -> Iterator[Cluster]:
    cluster = world[1]
    yield cluster
    print(cluster.logs_tail(60))
    cluster.restore()


def call(cluster: Cluster, node: str, op: str, **args: Any) -> Any:
    proc = cluster.exec(
        node,
        [sys.executable, "-c", DRIVER, json.dumps({"op": op, "me": node, **args})],
        env={"PYTHONPATH": str(LIB)},
        check=True,
    )
    return json.loads(proc.stdout)


def peers(cluster: Cluster, node: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in call(cluster, node, "peers")}


def test_attributes_written_on_one_node_are_seen_on_the_other_at_once(cluster: Cluster) -> None:
    version, can_wait = call(cluster, "a", "version")
    assert tuple(version) >= (2, 1, 3)
    help_text = cluster.exec("a", ["attrd_updater", "--help-all"], check=True).stdout
    assert can_wait == ("--wait" in help_text and "cluster" in help_text)
    call(cluster, "a", "update", name="#health-aws", value="red")
    call(cluster, "a", "update", name="aws-health-event", value="1900000000")
    call(cluster, "b", "update", name="#health-aws", value="green")
    call(cluster, "b", "update", name="hana_prd_sync_state", value="SOK")
    seen = peers(cluster, "b")  # right after the writes returned: no polling here
    assert seen["a"]["health"] == "red" and seen["a"]["claim"] == 1900000000.0
    assert seen["b"]["health"] == "green" and seen["b"]["safe"] == "SOK"
    assert all(p["online"] and not p["standby"] and not p["maintenance"] for p in seen.values())
    # the real tool agrees (transient, not private: attrd and the CIB both have it)
    query = cluster.exec("b", ["attrd_updater", "-Q", "-A", "-n", "#health-aws"], check=True).stdout
    assert 'host="a" value="red"' in query and 'host="b" value="green"' in query
    status = cluster.cibadmin("-Q", "--scope", "status", node="b")
    assert 'name="#health-aws" value="red"' in status
    call(cluster, "a", "delete", name="#health-aws")
    call(cluster, "a", "delete", name="aws-health-event")
    seen = peers(cluster, "b")
    assert seen["a"]["health"] is None and seen["a"]["claim"] is None


def test_standby_and_maintenance_are_seen(cluster: Cluster) -> None:
    cluster.standby("b")
    cluster.exec(
        "a",
        ["crm_attribute", "--node", "a", "--name", "maintenance", "--update", "true"],
        check=True,
    )
    try:
        seen = cluster.wait_for(
            lambda s: s.nodes["b"].standby and peers(cluster, "a"), 30, what="b in standby"
        )
        assert seen["b"]["standby"] and not seen["b"]["maintenance"]
        assert seen["a"]["maintenance"] and not seen["a"]["standby"]
    finally:
        cluster.exec(
            "a",
            ["crm_attribute", "--node", "a", "--name", "maintenance", "--delete"],
            check=True,
        )


def test_validate_all_reads_the_clone_from_the_real_cib(cluster: Cluster) -> None:
    cluster.configure(HEALTH_CLONE.format(allow="true"))
    found = call(cluster, "a", "primitives")
    assert [(p["id"], p["type"]) for p in found] == [("rsc_health", "aws-health")]
    assert found[0]["clone_meta"]["allow-unhealthy-nodes"] == "true"
    validate = ["crm_resource", "--validate", "--resource", "rsc_health"]
    proc = cluster.exec("a", validate)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cluster.configure(HEALTH_CLONE.format(allow="false"))
    proc = cluster.exec("a", validate)
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert "allow-unhealthy-nodes=true" in proc.stdout + proc.stderr
