"""The proxy's password as a CIB secret, in a real two-node cluster (tests/cluster): the CIB
holds ``lrm://``, each node keeps the value in its own /var/lib/pacemaker/lrm/secrets
(``cibsecret -C set`` on each node, as ``cibsecret sync`` leaves them), pacemaker-execd gives
the agent the real value, and the resource starts and moves through the lab's authenticating
proxy. Neither the CIB nor Pacemaker's logs (which hold the agents' stderr) hold the password.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from cluster import Cluster, ClusterError, Status
from lab import Lab

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(
            shutil.which(tool)
            for tool in ("corosync", "pacemakerd", "crm", "nsenter", "cibsecret", "ssh")
        ),
        reason="needs corosync, pacemaker (with cibsecret), crmsh, ssh and util-linux",
    ),
]

READY_BOUND = 30.0
MOVE_TIMEOUT = 45.0
IP = "10.0.1.50"
USER, PASSWORD = "svc-ha", "Cl0ster-S3cret/pw%9e1"
RESOURCE = "vip-proxied"


def runs_on(node: str) -> Any:
    def check(status: Status) -> Any:
        state = status.resources.get(RESOURCE)
        ok = state is not None and state.role == "Started" and state.nodes == (node,)
        return status if ok else None

    return check


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Cluster, Path]]:
    workdir = tmp_path_factory.mktemp("proxy-cluster")
    with Lab(workdir / "lab") as lab, Cluster(lab, workdir / "cluster") as cluster:
        try:
            cluster.wait_ready(READY_BOUND)
        except ClusterError:
            print(cluster.logs_tail())
            raise
        ca = workdir / "lab-ca.pem"
        ca.write_text(lab.ca_pem())
        yield lab, cluster, ca


@pytest.fixture
def cluster(world: tuple[Lab, Cluster, Path]) -> Iterator[Cluster]:
    yield world[1]
    print(world[1].logs_tail(60))
    world[1].restore()


def test_the_proxy_password_as_a_cib_secret(
    world: tuple[Lab, Cluster, Path], cluster: Cluster
) -> None:
    lab, _, ca = world
    with lab.proxy({USER: PASSWORD}) as proxy:
        host = lab.proxy_address("a")  # both nodes are in subnet a
        value = f"http://{USER}:{quote(PASSWORD, safe='')}@{host}:3128"
        for node in ("a", "b"):
            # Stored on this node, then copied to the others over ssh, which the lab's nodes do
            # not run: each node stores its own copy, as "cibsecret sync" would leave them.
            cluster.exec(node, ["cibsecret", "-C", "set", RESOURCE, "proxy", value])
            stored = cluster.exec(node, ["cibsecret", "-C", "get", RESOURCE, "proxy"], check=True)
            assert stored.stdout.strip() == value
        cluster.configure(
            f"primitive {RESOURCE} ocf:ipfailover:aws-secip \\\n"
            f"    params ip={IP} proxy=lrm:// ca_bundle={ca} \\\n"
            "    op start timeout=30s interval=0s \\\n"
            "    op stop timeout=30s interval=0s \\\n"
            "    op monitor timeout=20s interval=10s\n"
            f"location {RESOURCE}-prefers-a {RESOURCE} 50: a\n"
        )
        status = cluster.wait_for(runs_on("a"), MOVE_TIMEOUT, what=f"{RESOURCE} on a")
        assert not status.failures, status.failures
        assert lab.holders(IP) == {lab.nodes["a"].eni_id}
        cluster.standby("a")
        status = cluster.wait_for(runs_on("b"), MOVE_TIMEOUT, what=f"{RESOURCE} on b")
        assert not status.failures, status.failures
        assert lab.holders(IP) == {lab.nodes["b"].eni_id}
        assert proxy.tunnels("a") and proxy.tunnels("b")
        assert proxy.denied() == 0
        assert {r.user for r in proxy.records} == {USER}
        cib = cluster.cibadmin("--query")
        assert 'value="lrm://"' in cib
        logs = cluster.log("a") + cluster.log("b")
        for text in (cib, logs):
            assert PASSWORD not in text and quote(PASSWORD, safe="") not in text
