"""`python -m compat` (tests/compat): which tests a row runs, in full and as the subset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from compat.__main__ import ROWS, SUBSET, TEST_FILES

ROOT = Path(__file__).resolve().parent.parent
# Each case collects the agent tests in a child pytest (imports moto: seconds each).
pytestmark = pytest.mark.slow


def collected(row: str, expression: str) -> list[str]:
    """The test ids pytest selects for ``row`` with ``-k expression`` (nothing runs)."""
    env = {**os.environ, "IPFAILOVER_AGENT_PYTHONS": f"{row}={sys.executable}"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
         *TEST_FILES, "-k", expression],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_rows_have_distinct_names_and_pins() -> None:
    names = [row.name for row in ROWS]
    assert len(set(names)) == len(names)
    for row in ROWS:
        assert row.python.startswith("/") or row.packages, row  # a pyenv row pins its stack
        if row.packages:
            assert {p.split("=")[0] for p in row.packages} == {"boto3", "botocore", "pyroute2"}


@pytest.mark.parametrize("row", ["sles15", "rhel10"])
def test_the_subset_is_each_agents_ocf_tester_sequence(row: str) -> None:
    full = collected(row, row)
    subset = collected(row, f"{row} and {SUBSET}")
    assert {test.split("::")[0] for test in subset} == set(TEST_FILES)  # every agent
    assert len(subset) == len(TEST_FILES)
    assert all(SUBSET in test and f"[{row}]" in test for test in subset)
    assert set(subset) < set(full)
