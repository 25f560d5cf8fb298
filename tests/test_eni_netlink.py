"""``Netlink.flush_table`` (added for aws-eni) in a throwaway network namespace, under the venv's
pyroute2 and Debian's python3-pyroute2 0.7.2, checked with ``ip -json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = [sys.executable] + (["/usr/bin/python3"] if Path("/usr/bin/python3").exists() else [])

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture
def netns() -> Iterator[str]:
    # The lab's naming scheme, so its sweeper removes the namespace if this process dies.
    name = f"ipf-{os.getpid()}-{uuid.uuid4().hex[:6]}-eninl"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (
            ["link", "set", "lo", "up"],
            ["link", "add", "eth1", "address", "02:00:0a:00:03:64", "type", "veth", "peer", "p1"],
            ["link", "set", "p1", "up"],
            ["link", "set", "eth1", "up"],
            ["addr", "add", "10.0.3.100/24", "dev", "eth1"],
            ["addr", "add", "2001:db8:0:3::100/64", "dev", "eth1", "nodad"],
        ):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def routes(ns: str, family: str, table: int) -> list[dict[str, Any]]:
    done = subprocess.run(
        ["ip", "-n", ns, "-json", family, "route", "show", "table", str(table)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        assert "table does not exist" in done.stderr
        return []
    result: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    return result


@pytest.mark.parametrize("python", PYTHONS)
def test_flush_table_removes_both_families_and_only_that_table(netns: str, python: str) -> None:
    body = """
        index = nl.link_by_name("eth1").index
        nl.replace_route(5001, "10.0.3.0/24", index)
        nl.replace_route(5001, None, index, "10.0.3.1")
        nl.replace_route(5001, "2001:db8:0:3::/64", index)
        nl.replace_route(5001, None, index, "fe80::1")
        nl.replace_route(5002, None, index, "10.0.3.1")
        before = len(nl.routes(5001))
        result = [before, nl.flush_table(5001), nl.flush_table(5001), len(nl.routes(5001))]
    """
    script = "import json\nfrom ipfailover.netlink import Netlink\nnl = Netlink()\n"
    script += textwrap.dedent(body) + "\nprint(json.dumps(result))\n"
    out = subprocess.run(
        ["ip", "netns", "exec", netns, python, "-c", script],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT / "lib")},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert json.loads(out.stdout) == [4, 4, 0, 0]
    assert routes(netns, "-4", 5001) == []
    assert routes(netns, "-6", 5001) == []
    assert [(r["dst"], r["gateway"]) for r in routes(netns, "-4", 5002)] == [
        ("default", "10.0.3.1")
    ]
