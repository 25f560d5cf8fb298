"""The side-by-side benchmark runs end to end (one run, one comparison) and the incumbent really
works in the lab. No timing is asserted: the bench reports times, it does not judge them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab import incumbents
from lab.bench import ACTIONS, EXPECTED_RC, OURS_ONLY

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.lab,  # its own Labs, not the fixture
    pytest.mark.skipif(incumbents.missing() is not None, reason=str(incumbents.missing())),
]


def test_bench_side_by_side_with_aws_vpc_move_ip(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "lib"), str(REPO / "tests")]))
    argv = [sys.executable, "-m", "lab.bench", "--runs", "1", "--tables", "1", "--json", str(out)]
    done = subprocess.run(
        [*argv, "aws-overlayip", "aws-vpc-move-ip"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout
    assert "overlay IP, 1 route table: aws-overlayip vs aws-vpc-move-ip" in text
    assert "python -c pass" in text
    assert "botocore + 1 call" in text
    assert "unexpected exit code" not in text, text

    report: dict[str, Any] = json.loads(out.read_text())
    assert [f["case"] for f in report["floors"]] == ["python -c pass", "botocore + 1 call"]
    assert report["floors"][1]["ec2_calls"]["max"] == 1
    (section,) = report["sections"]
    assert (section["ours"], section["theirs"]) == ("aws-overlayip", "aws-vpc-move-ip")
    rows = {(r["agent"], r["action"]): r for r in section["rows"]}
    theirs_actions = [x for x in ACTIONS if x not in OURS_ONLY]
    assert set(rows) == {("aws-overlayip", x) for x in ACTIONS} | {
        ("aws-vpc-move-ip", x) for x in theirs_actions
    }
    for (agent, action), row in rows.items():
        assert row["rcs"] == [EXPECTED_RC[action]], (agent, action, row)
        assert row["runs"] == 1
        assert row["over_python_floor"] > 0
        if agent == "aws-overlayip" and action not in OURS_ONLY:
            assert row["ours_over_theirs"] > 0
    # the syntax check alone: neither AWS nor the metadata service is asked
    for action in OURS_ONLY:
        alone = rows[("aws-overlayip", action)]
        assert (alone["ec2_calls"]["max"], alone["imds_requests"]["max"]) == (0, 0), alone
    theirs = {action: rows[("aws-vpc-move-ip", action)] for action in theirs_actions}
    # The incumbent really talked to the simulator through the AWS CLI: a takeover is
    # DescribeRouteTables, ReplaceRoute, DescribeRouteTables; monitor (monapi) one describe.
    assert theirs["start"]["ec2_calls"]["max"] == 3
    assert theirs["start"]["cli_processes"]["max"] == 3
    assert theirs["monitor"]["ec2_calls"]["max"] == 1
    assert theirs["meta-data"]["cli_processes"]["max"] == 0
    assert rows[("aws-overlayip", "monitor")]["ec2_calls"]["max"] == 1
