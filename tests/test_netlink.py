"""The netlink layer in a throwaway network namespace, checked with ``ip -json``.

The layer runs inside the namespace (``ip netns exec``) under both interpreters: the venv's
pyroute2 and Debian's python3-pyroute2 0.7.2, the oldest version we support.
"""

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
    name = f"ipft{os.getpid() % 100000}{uuid.uuid4().hex[:4]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (
            ["link", "set", "lo", "up"],
            ["link", "add", "eth0", "address", "02:00:0a:00:01:0a", "type", "veth", "peer", "p0"],
            ["link", "set", "p0", "up"],
            ["link", "set", "eth0", "up"],
            ["addr", "add", "10.0.1.10/24", "dev", "eth0"],
            ["link", "add", "eth1", "address", "02:00:0a:00:03:0b", "type", "veth", "peer", "p1"],
            ["link", "set", "p1", "up"],
        ):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def run_in(ns: str, python: str, body: str) -> Any:
    """Run ``body`` (which sets ``result``) with a Netlink handle ``nl`` inside ``ns``."""
    script = "import json\nfrom ipfailover.netlink import Netlink\nnl = Netlink()\n"
    script += textwrap.dedent(body) + "\nprint(json.dumps(result))\n"
    out = subprocess.run(
        ["ip", "netns", "exec", ns, python, "-c", script],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT / "lib")},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return json.loads(out.stdout)


def ip_json(ns: str, *args: str) -> Any:
    out = subprocess.run(
        ["ip", "-n", ns, "-json", *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout or "[]")


def addresses(ns: str, dev: str) -> set[str]:
    return {
        f"{a['local']}/{a['prefixlen']}"
        for link in ip_json(ns, "addr", "show", "dev", dev)
        for a in link.get("addr_info", [])
    }


@pytest.mark.parametrize("python", PYTHONS)
def test_links_by_name_and_mac(netns: str, python: str) -> None:
    result = run_in(
        netns,
        python,
        """
        eth0 = nl.link_by_name("eth0")
        eth1 = nl.link_by_mac("02:00:0A:00:03:0B")
        nl.set_up(eth1.index)
        missing = [nl.link_by_name("nope"), nl.link_by_mac("02:00:00:00:00:99")]
        result = [eth0.mac, eth0.up, eth1.name, *missing]
        """,
    )
    assert result == ["02:00:0a:00:01:0a", True, "eth1", None, None]
    assert "UP" in ip_json(netns, "link", "show", "eth1")[0]["flags"]


@pytest.mark.parametrize("python", PYTHONS)
def test_addresses_are_idempotent(netns: str, python: str) -> None:
    result = run_in(
        netns,
        python,
        """
        i = nl.link_by_name("eth0").index
        result = [
            nl.add_address(i, "192.168.10.1", 32, "eth0:ovl"),
            nl.add_address(i, "192.168.10.1", 32, "eth0:ovl"),
            nl.add_address(i, "2001:db8::7", 128),
            nl.add_address(i, "2001:db8::7", 128),
            nl.find_address("2001:db8:0::7", i).prefixlen,
        ]
        """,
    )
    assert result == [True, False, True, False, 128]
    got = ip_json(netns, "addr", "show", "dev", "eth0")[0]["addr_info"]
    v4 = [a for a in got if a["local"] == "192.168.10.1"]
    v6 = [a for a in got if a["local"] == "2001:db8::7"]
    assert v4 and v4[0]["prefixlen"] == 32 and v4[0]["label"] == "eth0:ovl"
    assert v6 and not v6[0].get("tentative")  # no duplicate address detection delay
    result = run_in(
        netns,
        python,
        """
        i = nl.link_by_name("eth0").index
        result = [
            nl.del_address(i, "192.168.10.1", 32),
            nl.del_address(i, "192.168.10.1", 32),
            nl.del_address(i, "2001:db8::7", 128),
            nl.find_address("192.168.10.1"),
        ]
        """,
    )
    assert result == [True, False, True, None]
    assert addresses(netns, "eth0") == {"10.0.1.10/24"} | {
        a for a in addresses(netns, "eth0") if a.startswith("fe80")
    }


@pytest.mark.parametrize("python", PYTHONS)
def test_rules_and_routes_in_a_table(netns: str, python: str) -> None:
    result = run_in(
        netns,
        python,
        """
        i = nl.link_by_name("eth1").index
        nl.set_up(i)
        nl.add_address(i, "10.0.3.7", 24)
        added = [nl.add_rule("10.0.3.7/32", 6001, 6001), nl.add_rule("10.0.3.7/32", 6001, 6001)]
        nl.replace_route(6001, "10.0.3.0/24", i)
        nl.replace_route(6001, None, i, "10.0.3.1")
        nl.replace_route(6001, None, i, "10.0.3.1")
        rules = [(r.priority, r.src) for r in nl.rules(6001)]
        routes = sorted((r.dst or "default", r.gateway or "") for r in nl.routes(6001))
        result = [added, rules, routes]
        """,
    )
    assert result == [
        [True, False],
        [[6001, "10.0.3.7/32"]],
        [["10.0.3.0/24", ""], ["default", "10.0.3.1"]],
    ]
    rules = [r for r in ip_json(netns, "rule", "show") if r.get("table") == "6001"]
    assert [(r["priority"], r["src"]) for r in rules] == [(6001, "10.0.3.7")]
    routes = ip_json(netns, "route", "show", "table", "6001")
    assert {r["dst"] for r in routes} == {"10.0.3.0/24", "default"}
    got = ip_json(netns, "route", "get", "192.0.2.1", "from", "10.0.3.7")
    assert got[0]["dev"] == "eth1" and got[0]["gateway"] == "10.0.3.1"
    result = run_in(
        netns,
        python,
        """
        i = nl.link_by_name("eth1").index
        result = [
            nl.del_rule("10.0.3.7/32", 6001, 6001),
            nl.del_rule("10.0.3.7/32", 6001, 6001),
            nl.del_route(6001, None),
            nl.del_route(6001, "10.0.3.0/24"),
            nl.del_route(6001, "10.0.3.0/24"),
            [str(r) for r in nl.rules(6001)],
            [str(r) for r in nl.routes(6001)],
        ]
        """,
    )
    assert result == [True, False, True, True, False, [], []]
