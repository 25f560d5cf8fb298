"""OCF check levels (issue 16, part 4): the cheap OS-only monitor and the deep AWS check.

- monitor_api=true (the default): every monitor asks EC2, whatever the check level, so an old
  configuration (one monitor operation, no monitor_api) keeps its AWS check.
- monitor_api=deep: a monitor at OCF_CHECK_LEVEL < 10 makes no EC2 and no metadata request; at
  OCF_CHECK_LEVEL=10 (Pacemaker passes the op attribute as OCF_RESKEY_OCF_CHECK_LEVEL) and in a
  probe it asks EC2 once, with today's meaning (a route taken elsewhere: 7; EC2 unreachable: a
  warning, the OS side decides).
- monitor_api=false: never.

Agents run as Pacemaker runs them (real processes in a lab node); asserted on exit codes and the
lab's call log (EC2 and IMDS requests of node a).
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from ipfailover.config.params import monitor_api
from ocf_shim import ConfigError

OVERLAY_IP = "192.168.100.10"
SEC_IP = "10.0.1.50"
DEEP = {"OCF_RESKEY_OCF_CHECK_LEVEL": "10"}


# -- the parameter --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        (None, "true"),
        ("", "true"),
        ("true", "true"),
        ("yes", "true"),
        (True, "true"),
        ("false", "false"),
        ("0", "false"),
        (False, "false"),
        ("deep", "deep"),
        ("DEEP", "deep"),
    ],
)
def test_monitor_api_values(value: Any, mode: str) -> None:
    assert monitor_api({"monitor_api": value}) == mode


@pytest.mark.parametrize("value", ["depth", "sometimes", "10"])
def test_monitor_api_rejects_other_values(value: str) -> None:
    with pytest.raises(ConfigError, match="true, false or deep"):
        monitor_api({"monitor_api": value})


# -- agents in the lab ----------------------------------------------------------------------


def _configs(lab: Any) -> dict[str, dict[str, str]]:
    eni = lab.create_eni(subnet="a")
    return {
        "aws-overlayip": {
            "ip": OVERLAY_IP,
            "routing_table": ",".join(lab.route_tables),
            "interface": "eth0",
            "endpoint_url": lab.endpoint_url,
        },
        "aws-secip": {"ip": SEC_IP, "endpoint_url": lab.endpoint_url},
        "aws-eni": {"eni_id": eni.id, "endpoint_url": lab.endpoint_url},
    }


def _monitor(lab: Any, agent: str, params: dict[str, str], **kw: Any) -> tuple[int, int, int]:
    """(rc, EC2 requests, IMDS requests) of one recurring monitor on node a."""
    lab.reset_calls()
    result = lab.run_agent("a", agent, "monitor", params, interval_ms=10000, **kw)
    ec2 = len(lab.calls(node="a"))
    imds = len(lab.calls(node="a", service="imds"))
    return result.rc, ec2, imds


@pytest.fixture
def started(lab: Any) -> dict[str, dict[str, str]]:
    configs = _configs(lab)
    for agent, params in configs.items():
        result = lab.run_agent("a", agent, "start", params)
        assert result.rc == 0, (agent, result.exit_reason)
    return configs


@pytest.mark.parametrize("agent", ["aws-overlayip", "aws-secip", "aws-eni"])
def test_an_old_configuration_keeps_the_aws_check(
    lab: Any, started: dict[str, dict[str, str]], agent: str
) -> None:
    """One monitor op, no monitor_api, no OCF_CHECK_LEVEL: EC2 is asked, as before."""
    rc, ec2, _ = _monitor(lab, agent, started[agent])
    assert (rc, ec2) == (0, 1)


@pytest.mark.parametrize("agent", ["aws-overlayip", "aws-secip", "aws-eni"])
def test_deep_checks_aws_only_at_the_deep_level(
    lab: Any, started: dict[str, dict[str, str]], agent: str
) -> None:
    params = {**started[agent], "monitor_api": "deep"}
    assert _monitor(lab, agent, params) == (0, 0, 0)
    assert _monitor(lab, agent, params, extra_env={"OCF_RESKEY_OCF_CHECK_LEVEL": "0"}) == (0, 0, 0)
    rc, ec2, _ = _monitor(lab, agent, params, extra_env=DEEP)
    assert (rc, ec2) == (0, 1)
    rc, ec2, _ = _monitor(lab, agent, params, extra_env={"OCF_CHECK_LEVEL": "10"})
    assert (rc, ec2) == (0, 1)
    # monitor_api=true: every level; false: none.
    rc, ec2, _ = _monitor(lab, agent, {**started[agent], "monitor_api": "true"})
    assert (rc, ec2) == (0, 1)
    rc, ec2, imds = _monitor(lab, agent, {**started[agent], "monitor_api": "false"}, extra_env=DEEP)
    assert (rc, ec2, imds) == (0, 0, 0)


# What the shallow monitor must not import: its CPU is paid at every interval (issue 16).
HEAVY = ("botocore", "pyroute2", "dataclasses", "typing", "socket", "inspect")


@pytest.mark.parametrize("agent", ["aws-overlayip", "aws-secip", "aws-eni"])
def test_the_shallow_monitor_imports_nothing_heavy(
    lab: Any, started: dict[str, dict[str, str]], agent: str
) -> None:
    params = {**started[agent], "monitor_api": "deep"}
    result = lab.run_agent(
        "a", agent, "monitor", params, interval_ms=10000, extra_env={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    assert result.rc == 0
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "ipfailover.runtime" in imported  # the listing is there
    assert imported.isdisjoint(HEAVY), sorted(imported.intersection(HEAVY))


def test_deep_probe_checks_aws(lab: Any, started: dict[str, dict[str, str]]) -> None:
    params = {**started["aws-overlayip"], "monitor_api": "deep"}
    lab.reset_calls()
    result = lab.run_agent("a", "aws-overlayip", "monitor", params)  # no interval: a probe
    assert result.rc == 0
    assert len(lab.calls(node="a")) == 1


def test_a_stolen_route_is_found_by_the_deep_monitor_only(
    lab: Any, started: dict[str, dict[str, str]]
) -> None:
    """The trade-off: the route elsewhere is seen at the deep interval, not the shallow one."""
    params = {**started["aws-overlayip"], "monitor_api": "deep"}
    other = lab.nodes["b"].eni_id
    client = lab.ec2()
    for table in lab.route_tables:
        client.replace_route(
            RouteTableId=table, DestinationCidrBlock=f"{OVERLAY_IP}/32", NetworkInterfaceId=other
        )
    assert _monitor(lab, "aws-overlayip", params)[0] == 0  # the OS side is intact
    assert _monitor(lab, "aws-overlayip", params, extra_env=DEEP)[0] == 7


def test_deep_monitor_with_ec2_unreachable_lets_the_os_side_decide(
    lab: Any, started: dict[str, dict[str, str]]
) -> None:
    params = {**started["aws-overlayip"], "monitor_api": "deep"}
    lab.set_fault(action="*", kind="error", code="InternalError", status=500)
    result = lab.run_agent(
        "a", "aws-overlayip", "monitor", params, interval_ms=120000, extra_env=DEEP
    )
    assert result.rc == 0
    assert "could not complete" in result.stderr


def test_shallow_monitor_still_sees_the_os_side_go(
    lab: Any, started: dict[str, dict[str, str]]
) -> None:
    params = {**started["aws-overlayip"], "monitor_api": "deep"}
    lab.ns_exec("a", ["ip", "addr", "del", f"{OVERLAY_IP}/32", "dev", "eth0"])
    assert _monitor(lab, "aws-overlayip", params) == (7, 0, 0)


# -- what the configuration tools make of the meta-data ------------------------------------


def _monitor_ops(cib: Path, rid: str) -> list[tuple[str, str]]:
    """(interval, OCF_CHECK_LEVEL or "") of each monitor op of primitive ``rid``."""
    root = ET.parse(cib).getroot()  # noqa: S314 - written by pcs/crmsh just now
    prim = root.find(f".//primitive[@id='{rid}']")
    assert prim is not None
    found = []
    for op in prim.findall("operations/op[@name='monitor']"):
        level = op.find("instance_attributes/nvpair[@name='OCF_CHECK_LEVEL']")
        found.append((op.get("interval", ""), "" if level is None else level.get("value", "")))
    return sorted(found)


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("crm", "pcs", "cibadmin", "crm_verify")),
    reason="crmsh, pcs and pacemaker-cli-utils are needed",
)
def test_pcs_copies_both_monitors_and_crmsh_none(ocf_tree: Any, tmp_path: Path) -> None:
    """pcs copies the meta-data's monitor actions (depth 0 and 10) into the CIB, even with
    --no-default-ops; crmsh copies none. Either way the CIB verifies, and a primitive without
    monitor_api keeps the default true (the AWS check at every monitor)."""
    cib = tmp_path / "cib.xml"
    with cib.open("w") as f:
        subprocess.run(["cibadmin", "--empty"], stdout=f, check=True, timeout=60)
    env = {"CIB_file": str(cib)}
    commands = [
        ["pcs", "-f", str(cib), "property", "set", "stonith-enabled=false"],
        ["pcs", "-f", str(cib), "resource", "create", "by_pcs", "ocf:ipfailover:aws-overlayip",
         "ip=192.168.100.10", "routing_table=rtb-0123456789abcdef0", "monitor_api=deep",
         "--no-default-ops"],
        ["crm", "configure", "primitive", "by_crm", "ocf:ipfailover:aws-overlayip", "params",
         "ip=192.168.100.11", "routing_table=rtb-0123456789abcdef0"],
    ]  # fmt: skip
    for command in commands:
        proc = ocf_tree.run(*command, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _monitor_ops(cib, "by_pcs") == [("10s", ""), ("120s", "10")]
    assert _monitor_ops(cib, "by_crm") == []
    verify = subprocess.run(
        ["crm_verify", "--xml-file", str(cib)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stderr
