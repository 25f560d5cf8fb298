"""A node without pyroute2 (SLES 15: no SUSE module ships python311-pyroute2): aws-overlayip and
aws-secip add and remove their address over our own netlink socket and work in full; aws-eni,
which changes links, policy rules and routes through pyroute2, fails its start with 5 naming it
before it changes anything, in EC2 or on the node.

The node's Python is the venv's or Debian's /usr/bin/python3 (the agents' shebang) run with -S
and, on PYTHONPATH, the packages of its site directories except pyroute2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = [sys.executable] + (["/usr/bin/python3"] if Path("/usr/bin/python3").exists() else [])
OVERLAY_IP = "192.168.100.77"
SECONDARY_IP = "10.0.1.77"
SITE_DIRS = "import json, sys; print(json.dumps([p for p in sys.path if p.endswith('-packages')]))"


@pytest.fixture(params=PYTHONS)
def no_pyroute2(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """(an interpreter without pyroute2, its environment for run_agent)."""
    python = request.param
    site = tmp_path / "site"
    site.mkdir()
    for directory in json.loads(subprocess.check_output([python, "-c", SITE_DIRS], text=True)):
        for entry in Path(directory).iterdir():
            if not entry.name.lower().startswith("pyroute2") and not (site / entry.name).exists():
                (site / entry.name).symlink_to(entry)
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {python} -S "$@"\n')
    wrapper.chmod(0o755)
    env = {"PYTHONPATH": f"{ROOT / 'lib'}:{site}"}
    found = subprocess.run(
        [wrapper, "-c", "import botocore, importlib.util as u; print(u.find_spec('pyroute2'))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "None"  # botocore is there, pyroute2 is not
    return str(wrapper), env


def addresses(lab: Any, node: str) -> set[str]:
    return {
        a["local"]
        for link in lab.ip_json(node, "addr", "show", "dev", "eth0")
        for a in link.get("addr_info", [])
    }


def test_overlay_and_secondary_addresses_need_no_pyroute2(
    lab: Any, no_pyroute2: tuple[str, dict[str, str]]
) -> None:
    python, env = no_pyroute2
    overlay = {
        "ip": OVERLAY_IP,
        "routing_table": ",".join(lab.route_tables),
        "interface": "eth0",
        "endpoint_url": lab.endpoint_url,
    }
    secondary = {"ip": SECONDARY_IP, "interface": "eth0", "endpoint_url": lab.endpoint_url}
    eni = lab.nodes["a"].eni_id
    for agent, params in (("aws-overlayip", overlay), ("aws-secip", secondary)):
        for action in ("start", "monitor"):
            result = lab.run_agent("a", agent, action, params, python=python, extra_env=env)
            assert result.rc == 0, (agent, action, result.exit_reason, result.stderr[-800:])
    assert {OVERLAY_IP, SECONDARY_IP} <= addresses(lab, "a")
    assert set(lab.route_targets(f"{OVERLAY_IP}/32").values()) == {eni}
    assert lab.holders(SECONDARY_IP) == {eni}
    for agent, params in (("aws-overlayip", overlay), ("aws-secip", secondary)):
        for action, rc in (("stop", 0), ("monitor", 7)):
            result = lab.run_agent("a", agent, action, params, python=python, extra_env=env)
            assert result.rc == rc, (agent, action, result.exit_reason, result.stderr[-800:])
    assert not {OVERLAY_IP, SECONDARY_IP} & addresses(lab, "a")


def test_aws_eni_without_pyroute2_is_not_installed_software(
    lab: Any, no_pyroute2: tuple[str, dict[str, str]]
) -> None:
    python, env = no_pyroute2
    eni = lab.create_eni(subnet="c", secondary_ips=1)
    params = {"eni_id": eni.id, "endpoint_url": lab.endpoint_url}
    rules = lab.ip_json("a", "rule", "show")
    for action in ("validate-all", "start"):
        result = lab.run_agent("a", "aws-eni", action, params, python=python, extra_env=env)
        assert result.rc == 5, (action, result.exit_reason, result.stderr[-800:])
        assert "pyroute2" in result.exit_reason
    assert lab.ip_json("a", "rule", "show") == rules
    assert lab.eni(eni.id).get("Attachment") is None  # the ENI never left where it was
