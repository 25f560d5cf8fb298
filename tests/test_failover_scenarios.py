"""Real failover: each agent in a fenced two-node Pacemaker cluster, traffic through the VPC data
plane, the outage measured by a client (cluster.scenarios).

One FailoverLab (a Lab with the data plane, a Cluster fenced by Debian's fence_aws, the service
in each node) serves the module; each scenario starts from a restored cluster. The tests assert
the final state (Pacemaker, AWS, data plane, OS, client) and that the client saw the outage and
its end; they make no timing assertions: the numbers are printed (pytest -s, or the report of a
failure) and go into the demo's table.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import processes_in
from cluster.scenarios import (
    AGENTS,
    FailoverLab,
    Result,
    format_checks,
    format_table,
    format_timeline,
)
from lab import netns

pytestmark = [
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("corosync", "pacemakerd", "crm", "nsenter")),
        reason="needs corosync, pacemaker, crmsh and util-linux",
    ),
    pytest.mark.skipif(
        not Path("/usr/sbin/fence_aws").exists(), reason="needs fence_aws (fence-agents)"
    ),
]

RESULTS: list[Result] = []


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FailoverLab]:
    workdir = tmp_path_factory.mktemp("failover")
    failover = FailoverLab(workdir, say=print)
    failover.start()
    lab, cluster = failover.world
    try:
        yield failover
    finally:
        failover.close()
        if RESULTS:
            print("\n" + format_table(RESULTS))
    assert cluster.leftovers() == []
    assert processes_in(list(cluster.namespaces.values()), "pid") == []
    assert netns.lab_namespaces(lab.prefix) == []
    assert str(workdir) not in Path("/proc/self/mountinfo").read_text()


def report(result: Result) -> str:
    return "\n".join([format_timeline(result), format_checks(result), format_table([result])])


def test_fence_aws_reaches_the_simulator_like_an_instance(world: FailoverLab) -> None:
    """Debian's fence_aws, unmodified, in node a: region from its option, credentials from the
    instance role (IMDS), EC2 at https://ec2.<region>.amazonaws.com (the lab's TLS endpoint)."""
    lab, cluster = world.world
    since = lab.calls()[-1].time if lab.calls() else 0.0
    target = lab.nodes["b"].instance_id
    status = cluster.exec(
        "a", ["fence_aws", "--action=status", f"--plug={target}", f"--region={lab.region}"]
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Status: ON" in status.stdout
    listed = cluster.exec("a", ["fence_aws", "--action=list", f"--region={lab.region}"])
    assert listed.returncode == 0, listed.stderr
    assert lab.nodes["a"].instance_id in listed.stdout and target in listed.stdout
    calls = [c for c in lab.calls(node="a", since=since) if c.action == "DescribeInstances"]
    assert calls and all(c.status == 200 for c in calls)
    assert {c.access_key for c in calls} == {lab.nodes["a"].access_key_id}  # the instance role


@pytest.mark.parametrize("agent", AGENTS)
def test_crash_of_the_active_node(world: FailoverLab, agent: str) -> None:
    """a crashes (corosync, pacemaker, the service); b fences it with fence_aws and takes over."""
    result = world.run(agent, "crash")
    RESULTS.append(result)
    print(report(result))
    assert result.ok, report(result)
    assert result.first("a fenced (reboot) by b: OK") is not None, report(result)


@pytest.mark.parametrize("agent", AGENTS)
def test_planned_move(world: FailoverLab, agent: str) -> None:
    result = world.run(agent, "move")
    RESULTS.append(result)
    print(report(result))
    assert result.ok, report(result)


@pytest.mark.parametrize("agent", AGENTS)
def test_crash_then_the_agent_killed_in_its_start_on_the_survivor(
    world: FailoverLab, agent: str
) -> None:
    """a crashes; the agent's start on b is SIGKILLed inside the EC2 call that moves the
    address; Pacemaker stops and starts it again on b, and that start repairs what was left."""
    result = world.run(agent, "crash-in-start")
    RESULTS.append(result)
    print(report(result))
    assert result.ok, report(result)
    assert any("SIGKILL" in e.text for e in result.timeline)
    assert result.first("a fenced (reboot) by b: OK") is not None, report(result)
