"""The netlink layer in a throwaway network namespace, checked with ``ip -json``.

The layer runs inside the namespace (``ip netns exec``) under both interpreters: the venv's
pyroute2 and Debian's python3-pyroute2 0.7.2, the oldest version we support.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = [sys.executable] + (["/usr/bin/python3"] if Path("/usr/bin/python3").exists() else [])


@pytest.fixture
def netns(netns_factory: Callable[..., str]) -> str:
    return netns_factory(
        "netlink",
        [
            "link add eth0 address 02:00:0a:00:01:0a type veth peer p0",
            "link set p0 up",
            "link set eth0 up",
            "addr add 10.0.1.10/24 dev eth0",
            "link add eth1 address 02:00:0a:00:03:0b type veth peer p1",
            "link set p1 up",
        ],
    )


def run_in(ns: str, python: str, body: str) -> Any:
    """Run ``body`` (which sets ``result``) with a Netlink handle ``nl`` inside ``ns``."""
    script = "import json\nfrom ipfailover.host.netlink import Netlink\nnl = Netlink()\n"
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


# Each kind of address our agents add, made three ways: by our netlink, by pyroute2 (how they
# were made before) and by iproute2. Kind: (ours, pyroute2's, ip's address, prefix, label).
KINDS = {
    "ipv4 with a label": ("192.168.10.1", "192.168.10.2", "192.168.10.3", 32, "eth0:ovl"),
    "ipv4 in the subnet": ("10.0.1.51", "10.0.1.52", "10.0.1.53", 24, None),
    "ipv6": ("2001:db8::a", "2001:db8::b", "2001:db8::c", 128, None),
}


@pytest.mark.parametrize("python", PYTHONS)
def test_addresses_are_made_as_pyroute2_and_ip_make_them_without_importing_pyroute2(
    netns: str, python: str
) -> None:
    """``ip -json`` shows the three alike (scope, label, flags, lifetimes, no broadcast), and
    adding and removing addresses loads no pyroute2 (aws-overlayip and aws-secip need none)."""
    kinds = list(KINDS.values())
    result = run_in(
        netns,
        python,
        f"""
        import sys
        i = nl.link_by_name("eth0").index
        for ours, _, _, prefix, label in {kinds!r}:
            nl.add_address(i, ours, prefix, label)
        nl.add_address(i, "10.0.1.60", 32)
        nl.del_address(i, "10.0.1.60", 32)
        result = "pyroute2" in sys.modules
        """,
    )
    assert result is False
    run_in(
        netns,
        python,
        f"""
        from pyroute2 import IPRoute
        i = nl.link_by_name("eth0").index
        with IPRoute() as ipr:
            for _, theirs, _, prefix, label in {kinds!r}:
                extra = {{"label": label}} if label else {{}}
                extra = {{"flags": 0x02}} if ":" in theirs else extra
                ipr.addr("add", index=i, address=theirs, prefixlen=prefix, **extra)
        result = None
        """,
    )
    for _, _, by_ip, prefix, label in kinds:
        more = ["nodad"] if ":" in by_ip else ["label", label] if label else []
        subprocess.run(
            ["ip", "-n", netns, "addr", "add", f"{by_ip}/{prefix}", "dev", "eth0", *more],
            check=True,
        )
    shown = {a["local"]: a for a in ip_json(netns, "addr", "show", "dev", "eth0")[0]["addr_info"]}
    assert "10.0.1.60" not in shown
    for kind, addresses in KINDS.items():
        entries = [{k: v for k, v in shown[ip].items() if k != "local"} for ip in addresses[:3]]
        assert entries[0] == entries[1] == entries[2], kind


@pytest.mark.parametrize("python", PYTHONS)
def test_an_address_change_the_kernel_refuses_is_a_generic_error(netns: str, python: str) -> None:
    result = run_in(
        netns,
        python,
        """
        from ocf_shim import OCFError
        result = []
        for index, ip, prefix in [(999, "10.0.1.50", 24), (1, "10.0.1.50", 33)]:
            try:
                nl.add_address(index, ip, prefix)
                result.append(None)
            except OCFError as exc:
                result.append(exc.rc)
        result.append(nl.del_address(999, "10.0.1.50", 24))
        """,
    )
    assert result == [1, 1, False]  # no such link; no 33-bit prefix; nothing to remove


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


@pytest.mark.parametrize("python", PYTHONS)
def test_on_link_default_routes_take_their_family_from_the_caller(netns: str, python: str) -> None:
    """A default route without a gateway has no address to tell its family: the caller says."""
    result = run_in(
        netns,
        python,
        """
        import socket
        i = nl.link_by_name("eth0").index
        nl.replace_route(6002, None, i)
        nl.replace_route(6002, None, i, family=socket.AF_INET6)
        before = sorted((r.family, r.dst, r.gateway) for r in nl.routes(6002))
        removed = nl.del_route(6002, None, family=socket.AF_INET6)
        after = [(r.family, r.dst) for r in nl.routes(6002)]
        result = [before, removed, after]
        """,
    )
    v4, v6 = 2, 10
    assert result == [[[v4, None, None], [v6, None, None]], True, [[v4, None]]]
    assert [r["dst"] for r in ip_json(netns, "-4", "route", "show", "table", "6002")] == ["default"]
    assert ip_json(netns, "-6", "route", "show", "table", "6002") == []


# A changer moves a window of N addresses and N rules along (in step k: remove the k-th, add the
# (N+k)-th) in bursts, while the reader reads. Every read must be a state the changer passed
# through: after k steps [k, N+k), or in step k after the removal [k+1, N+k). N is large enough
# that a dump spans several datagrams, so a change between two of them can make a reader that
# trusts the dump miss an entry (both were seen here before the fix, within a second).
CHURN = """
import ipaddress, subprocess, threading, time
from ocf_shim import GenericError

N, STEPS, BURST = 500, 3000, 150
A, R = ipaddress.IPv4Address("10.200.0.0"), ipaddress.IPv4Address("10.201.0.0")

def batch(text):
    subprocess.run(["ip", "-batch", "-"], input=text, text=True, check=True)

def step(k):
    return (
        f"addr del {A + k}/32 dev eth1\\naddr add {A + N + k}/32 dev eth1\\n"
        f"rule del priority {10000 + k}\\n"
        f"rule add from {R + N + k}/32 table 100 priority {10000 + N + k}\\n"
    )

def change():
    for start in range(0, STEPS, BURST):
        batch("".join(step(k) for k in range(start, start + BURST)))
        time.sleep(0.01)  # a load pattern (bursts, as cloud-netconfig makes them), not a wait

batch(
    "link set eth1 up\\nroute add 10.0.3.0/24 dev eth1 table 100\\n"
    "route add default via 10.0.3.1 dev eth1 table 100 onlink\\n"
    "route add ::/0 dev eth1 table 100\\n"
    + "".join(
        f"addr add {A + i}/32 dev eth1\\nrule add from {R + i}/32 table 100 priority {10000 + i}\\n"
        for i in range(N)
    )
)
batch6 = ["ip", "-6", "rule", "add", "from", "2001:db8::/64", "table", "100", "pref", "9000"]
subprocess.run(batch6, check=True)
index = nl.link_by_name("eth1").index
changer = threading.Thread(target=change)
changer.start()
addrs, rules, errors = [], [], 0
while changer.is_alive():
    try:
        got = [a.ip for a in nl.addresses(index) if a.ip.startswith("10.200.")]
        addrs.append(sorted(int(ipaddress.ip_address(ip)) - int(A) for ip in got))
        rules.append(sorted(r.priority - 10000 for r in nl.rules(100) if r.priority >= 10000))
    except GenericError:
        errors += 1  # the reader gave up within its bounds: an error, never a wrong answer
changer.join()
result = {
    "n": N,
    "steps": STEPS,
    "addrs": addrs,
    "rules": rules,
    "errors": errors,
    "rest": {
        "addrs": sorted(
            [a.index, a.ip, a.prefixlen, a.label or "", a.family] for a in nl.addresses()
        ),
        "rules": sorted([r.family, r.priority, r.table, r.src or ""] for r in nl.rules()),
        "routes": sorted(
            [r.family, r.dst or "default", r.gateway or "", r.oif] for r in nl.routes(100)
        ),
    },
}
"""

TABLES = {"local": 255, "main": 254, "default": 253}


def passed_through(ids: list[int], n: int) -> bool:
    if not ids or ids != list(range(ids[0], ids[0] + len(ids))):
        return False
    return len(ids) == n or (len(ids) == n - 1 and ids[0] >= 1)


def test_dumps_during_changes_are_states_the_changer_passed_through(netns: str) -> None:
    result = run_in(netns, sys.executable, CHURN)
    n, steps = result["n"], result["steps"]
    for kind in ("addrs", "rules"):
        reads = result[kind]
        assert len(reads) >= 5, f"too few {kind} reads to prove anything"
        wrong = [read for read in reads if not passed_through(read, n)]
        assert not wrong, f"{len(wrong)} of {len(reads)} {kind} reads were never a real state"
    assert result["errors"] <= len(result["addrs"]) // 2

    # At rest, the reader sees what ip sees.
    rest = result["rest"]
    v4, v6 = 2, 10
    expected_addrs = sorted(
        [
            link["ifindex"],
            a["local"],
            a["prefixlen"],
            a.get("label", "") if a["family"] == "inet" else "",
            v4 if a["family"] == "inet" else v6,
        ]
        for link in ip_json(netns, "addr", "show")
        for a in link.get("addr_info", [])
    )
    assert rest["addrs"] == expected_addrs
    final = [a[1] for a in rest["addrs"] if a[1].startswith("10.200.")]
    first = int(ipaddress.IPv4Address("10.200.0.0")) + steps
    assert sorted(int(ipaddress.IPv4Address(ip)) - first for ip in final) == list(range(n))
    expected_rules = sorted(
        [
            family,
            r["priority"],
            TABLES.get(r["table"]) or int(r["table"]),
            "" if r["src"] == "all" else f"{r['src']}/{r.get('srclen', full)}",
        ]
        for option, family, full in (("-4", v4, 32), ("-6", v6, 128))
        for r in ip_json(netns, option, "rule", "show")
    )
    assert rest["rules"] == expected_rules
    eth1 = ip_json(netns, "link", "show", "eth1")[0]["ifindex"]
    expected_routes = sorted(
        [family, r["dst"], r.get("gateway", ""), eth1]
        for option, family in (("-4", v4), ("-6", v6))
        for r in ip_json(netns, option, "route", "show", "table", "100")
    )
    assert rest["routes"] == expected_routes


# -- flush_table (aws-eni) --------------------------------------------------------------------


@pytest.fixture
def eni_netns(netns_factory: Callable[..., str]) -> str:
    """An ENI's link with an address of each family, as aws-eni finds it."""
    return netns_factory(
        "eninl",
        [
            "link add eth1 address 02:00:0a:00:03:64 type veth peer p1",
            "link set p1 up",
            "link set eth1 up",
            "addr add 10.0.3.100/24 dev eth1",
            "addr add 2001:db8:0:3::100/64 dev eth1 nodad",
        ],
    )


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
def test_flush_table_removes_both_families_and_only_that_table(eni_netns: str, python: str) -> None:
    """``Netlink.flush_table`` (added for aws-eni)."""
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
    assert run_in(eni_netns, python, body) == [4, 4, 0, 0]
    assert routes(eni_netns, "-4", 5001) == []
    assert routes(eni_netns, "-6", 5001) == []
    assert [(r["dst"], r["gateway"]) for r in routes(eni_netns, "-4", 5002)] == [
        ("default", "10.0.3.1")
    ]
