"""The syntax check as the launchers run it: real processes, no lab, nothing heavy imported.

validate-all at OCF_CHECK_LEVEL=0 checks the parameters and stops there (exit 0 or 6); bad input
fails every action the same way before any client or logging is imported. The validators use re
and ipaddress (and enum, which re imports): those are allowed; they cost a few milliseconds
(ipfailover/config/syntax.py has the figures).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD = {
    "aws-overlayip": {"ip": "192.168.10.10", "routing_table": "rtb-0123abcd,rtb-0123abce"},
    "aws-secip": {"ip": "10.0.1.100", "elastic_ip_allocation_id": "eipalloc-0123abcd"},
    "aws-eni": {"eni_id": "eni-0123456789abcdef0", "device_index": "2"},
}
BAD = {
    "aws-overlayip": ("ip", "192.168.1000.10"),
    "aws-secip": ("cidr_netmask", "33"),
    "aws-eni": ("eni_id", "eni-nothex"),
}
# What only the actions need: none of it may be imported by the syntax check.
HEAVY = (
    "botocore",
    "pyroute2",
    "http",
    "socket",
    "logging",
    "typing",
    "dataclasses",
    "signal",
    "threading",
    "json",
    "xml",
    "ipfailover.aws",
    "ipfailover.host",
    "ipfailover.runtime",
    "ocf_shim.watchdog",
)


def run(
    agent: str, action: str, params: dict[str, str], level: str = ""
) -> tuple[int, str, set[str]]:
    env = {"PATH": "/usr/bin:/bin", "OCF_ROOT": "/usr/lib/ocf"}
    env.update({f"OCF_RESKEY_{k}": v for k, v in params.items()})
    if level:
        env["OCF_CHECK_LEVEL"] = level
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / "agents" / agent), action],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = proc.stderr.splitlines()
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time")}
    reasons = [line for line in lines if line.startswith("ocf-exit-reason:")]
    return proc.returncode, "\n".join(reasons), imported


# An agent's package: only its declaration belongs to the syntax check (not its actions or plans).
AGENT_PACKAGES = ("ipfailover.overlayip.", "ipfailover.secip.", "ipfailover.eni.")


def heavy(imported: set[str]) -> set[str]:
    return {
        m
        for m in imported
        if m in HEAVY
        or m.startswith(tuple(f"{h}." for h in HEAVY))
        or (m.startswith(AGENT_PACKAGES) and not m.endswith(".declaration"))
    }


@pytest.mark.parametrize("agent", sorted(GOOD))
def test_validate_at_level_0_checks_the_syntax_alone(agent: str) -> None:
    rc, reasons, imported = run(agent, "validate-all", GOOD[agent], level="0")
    assert (rc, reasons) == (0, "")
    assert f"ipfailover.{agent[4:]}.declaration" in imported
    assert not heavy(imported)


@pytest.mark.parametrize("agent", sorted(GOOD))
@pytest.mark.parametrize("action", ["start", "stop", "monitor", "validate-all"])
def test_bad_input_fails_every_action_before_anything_heavy(agent: str, action: str) -> None:
    name, value = BAD[agent]
    rc, reason, imported = run(agent, action, {**GOOD[agent], name: value})
    assert rc == 6
    assert reason.startswith(f"ocf-exit-reason:parameter {name!r}"), reason
    assert value in reason
    assert not heavy(imported)
