"""Address labels (aws-vpc-move-ip's iflabel, our label): set by add_address, kept when the
address is there already with it, and put right when it is there with another one. Checked
with ``ip -json`` in a throwaway namespace, under both interpreters (see test_netlink.py).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from test_netlink import PYTHONS, ip_json, run_in


@pytest.fixture
def netns(netns_factory: Callable[..., str]) -> str:
    return netns_factory(
        "label",
        [
            "link add eth0 address 02:00:0a:00:01:0a type veth peer p0",
            "link set p0 up",
            "link set eth0 up",
            "addr add 10.0.1.10/24 dev eth0",
        ],
    )


def labels(ns: str, ip: str) -> list[tuple[int, str]]:
    """(prefix length, label) of each instance of ``ip`` on eth0, as ``ip -json`` shows them."""
    info = ip_json(ns, "addr", "show", "dev", "eth0")[0]["addr_info"]
    return [(a["prefixlen"], a.get("label", "")) for a in info if a["local"] == ip]


ADD = """
i = nl.link_by_name("eth0").index
result = [nl.add_address(i, "192.168.10.1", 32, LABEL) for _ in range(2)]
"""


@pytest.mark.parametrize("python", PYTHONS)
def test_label_is_set_and_kept(netns: str, python: str) -> None:
    assert run_in(netns, python, ADD.replace("LABEL", '"eth0:vip"')) == [True, False]
    assert labels(netns, "192.168.10.1") == [(32, "eth0:vip")]


@pytest.mark.parametrize("previous", [None, "eth0:old"])
@pytest.mark.parametrize("python", PYTHONS)
def test_wrong_label_is_put_right(netns: str, python: str, previous: str) -> None:
    extra = ["label", previous] if previous else []
    subprocess.run(
        ["ip", "-n", netns, "addr", "add", "192.168.10.1/32", "dev", "eth0", *extra], check=True
    )
    assert run_in(netns, python, ADD.replace("LABEL", '"eth0:vip"')) == [True, False]
    assert labels(netns, "192.168.10.1") == [(32, "eth0:vip")]


@pytest.mark.parametrize("python", PYTHONS)
def test_no_label_asked_leaves_a_label_alone(netns: str, python: str) -> None:
    subprocess.run(
        ["ip", "-n", netns, "addr", "add", "192.168.10.1/32", "dev", "eth0", "label", "eth0:x"],
        check=True,
    )
    assert run_in(netns, python, ADD.replace("LABEL", "None")) == [False, False]
    assert labels(netns, "192.168.10.1") == [(32, "eth0:x")]


@pytest.mark.parametrize("python", PYTHONS)
def test_other_prefix_length_is_another_address(netns: str, python: str) -> None:
    subprocess.run(["ip", "-n", netns, "addr", "add", "192.168.10.1/24", "dev", "eth0"], check=True)
    assert run_in(netns, python, ADD.replace("LABEL", '"eth0:vip"')) == [True, False]
    assert sorted(labels(netns, "192.168.10.1")) == [(24, "eth0"), (32, "eth0:vip")]
