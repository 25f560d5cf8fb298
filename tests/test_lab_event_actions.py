"""What the lab does at a scheduled event's NotBefore (lab.power event actions), without a cluster.

A stand-in for a node's OS: a process that is PID 1 of its own PID namespace inside the node's
network namespace (as a cluster node's nodeinit is), which either shuts down on SIGTERM after a
moment or ignores it (an OS that does not halt in time).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lab import Lab, netns, power, wait_until
from lab.imds import scheduled_event
from lab.records import LabError

# PID 1 only gets the signals it has a handler for: without one, SIGTERM is ignored.
INIT = """
import signal, sys, time
marker, mode = sys.argv[1], sys.argv[2]
def on_term(signum, frame):
    with open(marker, "a") as out:
        out.write(f"{time.time()}\\n")
    time.sleep(0.3)  # "stopping the services"
    sys.exit(0)
if mode == "graceful":
    signal.signal(signal.SIGTERM, on_term)
open(marker + ".ready", "w").close()
while True:
    time.sleep(1)
"""


def start_init(lab: Lab, node: str, marker: Path, mode: str) -> subprocess.Popen[bytes]:
    argv = ["ip", "netns", "exec", lab.netns(node), "unshare", "--pid", "--fork"]
    proc = subprocess.Popen([*argv, sys.executable, "-c", INIT, str(marker), mode])
    wait_until(lambda: Path(f"{marker}.ready").exists(), 10.0, what="the node's init")
    assert len(power.init_processes(lab.netns(node))) == 1
    return proc


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10.0)


def done(lab: Lab) -> power.EventAction | None:
    actions = lab.event_actions()
    return actions[0] if actions and actions[0].phase == "done" else None


def test_system_reboot_shuts_the_os_down_then_power_cycles_the_node(
    lab: Lab, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    a = lab.nodes["a"]
    netns.ip("addr", "add", "10.0.1.50/24", "dev", "eth0", netns=lab.netns("a"))
    marker = tmp_path / "term"
    procs.append(start_init(lab, "a", marker, "graceful"))
    at = time.time() + 1.0
    event = scheduled_event("system-reboot", datetime.fromtimestamp(at, timezone.utc))
    lab.set_instance_events("a", scheduled=[event])
    lab.schedule_event_action("a", at, "system-reboot", grace=5.0, event_id=event["EventId"])
    assert lab.event_actions()[0].phase == "scheduled"

    action = wait_until(lambda: done(lab), 15.0, what="the event action")
    term = float(marker.read_text().split()[0])
    assert at <= term < at + 1.0  # SIGTERM at NotBefore (the ticker runs every 20 ms)
    assert procs[0].wait(5.0) == 0  # the OS shut down cleanly
    assert action.graceful is True
    assert action.shutdown is not None and action.halted is not None
    assert 0.3 <= action.halted - action.shutdown < 5.0
    assert action.hard_stop is not None and action.booted is not None
    assert action.halted <= action.hard_stop <= action.booted
    info = lab.power()["a"]
    assert (info.state, info.shutdowns, info.offs, info.boots) == ("running", 1, 1, 1)
    state = lab.ec2().describe_instances(InstanceIds=[a.instance_id])
    assert state["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"
    # booted: a fresh instance's network, the guest's extra address gone
    eth0 = lab.ip_json("a", "addr", "show", "dev", "eth0")[0]
    assert "UP" in eth0["flags"]
    assert [x["local"] for x in eth0["addr_info"] if x["family"] == "inet"] == [a.ip]
    # the event is over: gone from events/maintenance/scheduled
    assert lab.instance_events("a")["scheduled"] == []
    assert lab.power()["b"].shutdowns == 0


def test_instance_stop_hard_stops_an_os_that_does_not_halt_in_the_grace_period(
    lab: Lab, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    a = lab.nodes["a"]
    procs.append(start_init(lab, "a", tmp_path / "term", "stubborn"))
    at = time.time() + 0.5
    lab.schedule_event_action("a", at, "instance-stop", grace=1.0)

    action = wait_until(lambda: done(lab), 15.0, what="the event action")
    assert action.graceful is False and action.halted is None
    assert action.shutdown is not None and action.hard_stop is not None
    assert action.hard_stop - action.shutdown >= 1.0
    assert action.booted is None
    assert procs[0].wait(5.0) != 0  # killed by the power cut
    assert power.processes_in_netns(lab.netns("a")) == []
    info = lab.power()["a"]
    assert (info.state, info.shutdowns, info.offs, info.boots) == ("stopped", 1, 1, 0)
    state = lab.ec2().describe_instances(InstanceIds=[a.instance_id])
    assert state["Reservations"][0]["Instances"][0]["State"]["Name"] == "stopped"
    links = {x["ifname"]: x for x in lab.ip_json("a", "link", "show")}
    assert "UP" not in links["eth0"]["flags"]


def test_event_actions_are_checked_and_reset_cancels_them(lab: Lab) -> None:
    with pytest.raises(LabError, match="unknown event kind"):
        lab.schedule_event_action("a", time.time() + 60, "system-maintenance")
    with pytest.raises(LabError, match="no node"):
        lab.schedule_event_action("z", time.time() + 60, "system-reboot")
    lab.schedule_event_action("b", time.time() + 60, "instance-retirement", grace=1.0)
    assert [(x.node, x.kind, x.phase) for x in lab.event_actions()] == [
        ("b", "instance-retirement", "scheduled")
    ]
    lab.reset()
    assert lab.event_actions() == []
    assert lab.power()["b"].shutdowns == 0
