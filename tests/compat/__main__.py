"""``python -m compat`` (``make compat``): the agent-process tests on every supported stack.

One row per stack our users run. Each row is an interpreter with boto3, botocore and pyroute2 at
that stack's versions: a virtual environment under ``.compat/`` made from the CPython versions
found on this machine (pyenv), or the distribution's own ``/usr/bin/python3`` with its packages.
The test harness (pytest, the lab's moto) stays in the project's venv; only the agents run under
the row's interpreter, exactly as Pacemaker would start them on such a node
(``IPFAILOVER_AGENT_PYTHONS`` tells tests/agentkit.py which interpreters to run them with).

A row whose interpreter is missing here is printed "not available here" and never counted as
passed; the command fails when any row that could run failed, or when no row could run at all.
The rows are stand-ins: CPython and PyPI packages at the distributions' versions, not the
distributions' builds (except the Debian row, which is the real thing).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
COMPAT_DIR = ROOT / ".compat"
# The agent-process tests of the three agents: real processes in the lab (ocf-tester's sequence
# with start, monitor and stop, and a failover a -> b -> a), parametrized by interpreter.
TEST_FILES = (
    "tests/test_overlayip_agent.py",
    "tests/test_secip_agent.py",
    "tests/test_eni_agent.py",
)
# The representative subset (--subset): each agent's ocf-tester sequence (validate-all, start,
# monitor, stop, the probes and the repeated start and stop) under the row's interpreter, without
# the failovers, which exercise the same calls again from a second node.
SUBSET = "test_ocf_tester_sequence"


@dataclass(frozen=True)
class Row:
    name: str
    stands_for: str
    python: str  # "3.9" (a pyenv version prefix) or an absolute interpreter path
    packages: tuple[str, ...]  # pip requirements; empty: the interpreter's own packages


ROWS = (
    Row(
        "floor",
        "RHEL 9",
        "3.9",
        ("boto3==1.26.*", "botocore==1.29.*", "pyroute2==0.7.2"),
    ),
    Row("debian12", "Debian 12 (system)", "/usr/bin/python3", ()),
    # SLES 15 SP5 and later, python311 flavour: the Python 3 module's python311 and the Public
    # Cloud module's python311-boto3. 1.34 is the series SUSE's python311 builds had in 2024
    # (openSUSE's devel:languages:python:aws); pyroute2 0.7.x, the series openSUSE builds as
    # python311-pyroute2 (README, "Installing"). Not checked against SUSE's own channels.
    Row(
        "sles15",
        "SLES 15 python311",
        "3.11",
        ("boto3==1.34.*", "botocore==1.34.*", "pyroute2==0.7.*"),
    ),
    # RHEL 10: Python 3.12; boto3/botocore 1.34 and pyroute2 0.7, the series of Fedora 40, from
    # which RHEL 10 was branched. Not checked against RHEL 10's own repositories.
    Row(
        "rhel10",
        "RHEL 10",
        "3.12",
        ("boto3==1.34.*", "botocore==1.34.*", "pyroute2==0.7.*"),
    ),
    Row("current", "current PyPI", "3.13", ("boto3", "botocore", "pyroute2")),
)


def find_interpreter(version: str) -> Optional[Path]:
    """An installed CPython of ``version`` ("3.9"), or the path itself; None when missing."""
    if version.startswith("/"):
        path = Path(version)
        return path if path.exists() else None
    roots = []
    if shutil.which("pyenv"):
        found = subprocess.run(
            ["pyenv", "root"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if found:
            roots.append(Path(found) / "versions")
    candidates = []
    for root in roots:
        if root.is_dir():
            candidates += [
                p / "bin" / "python3"
                for p in root.iterdir()
                if re.fullmatch(re.escape(version) + r"\.\d+", p.name)
            ]
    which = shutil.which(f"python{version}")
    if which:
        candidates.append(Path(which))
    existing = sorted((c for c in candidates if c.exists()), key=lambda p: p.parent.parent.name)
    return existing[-1] if existing else None


def interpreter_of(row: Row, log: list[str]) -> Optional[Path]:
    """The interpreter the agents run under for ``row`` (its venv made if needed)."""
    base = find_interpreter(row.python)
    if base is None:
        return None
    if not row.packages:
        return base
    venv = COMPAT_DIR / row.name
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    wanted = "\n".join((str(base), *row.packages))
    if not (stamp.exists() and stamp.read_text() == wanted):
        shutil.rmtree(venv, ignore_errors=True)
        for command in (
            [str(base), "-m", "venv", str(venv)],
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                *row.packages,
            ],
        ):
            proc = subprocess.run(command, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                log.append(f"{row.name}: {' '.join(command[:4])}... failed:\n{proc.stderr[-2000:]}")
                return None
        stamp.write_text(wanted)
    return python


def versions(python: Path) -> str:
    probe = (
        "import sys, boto3, botocore, pyroute2; from importlib.metadata import version;"
        "print('%d.%d.%d' % sys.version_info[:3], version('boto3'), version('botocore'),"
        " version('pyroute2'))"
    )
    proc = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return f"(cannot import: {proc.stderr.strip().splitlines()[-1:]})"
    py, boto3, botocore, pyroute2 = proc.stdout.split()
    return f"{py:8} {boto3 + ' / ' + botocore:24} {pyroute2}"


def run_row(
    row: Row, python: Path, pytest_args: list[str], subset: bool = False
) -> tuple[str, int]:
    """Run the agent-process tests with the agents under ``python`` (only :data:`SUBSET` when
    ``subset``); (summary, pytest's rc)."""
    # The trimmed EC2 model for this botocore (what make and the RPM build do).
    subprocess.run(
        [str(python), "-m", "ipfailover.aws.botomodel"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "lib")},
        capture_output=True,
        check=False,
    )
    env = {**os.environ, "IPFAILOVER_AGENT_PYTHONS": f"{row.name}={python}"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *TEST_FILES,
            "-k",
            f"{row.name} and {SUBSET}" if subset else row.name,
            *pytest_args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else "no output"
    if proc.returncode not in (0,):
        sys.stdout.write(proc.stdout[-6000:] + proc.stderr[-2000:])
    return summary, proc.returncode


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compat", description=__doc__)
    parser.add_argument("--row", action="append", choices=[r.name for r in ROWS])
    parser.add_argument(
        "--subset",
        action="append",
        default=[],
        choices=[r.name for r in ROWS],
        metavar="ROW",
        help=f"run only the representative subset ({SUBSET}) for this row",
    )
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest")
    args = parser.parse_args(argv)
    rows = [r for r in ROWS if not args.row or r.name in args.row]
    results = []
    failed = ran = 0
    for row in rows:
        log: list[str] = []
        python = interpreter_of(row, log)
        if python is None:
            results.append(
                (row, "-", "not available here" + (f" ({log[-1][:200]})" if log else ""))
            )
            continue
        subset = row.name in args.subset
        print(
            f"compat: {row.name} ({row.stands_for}) with {python}"
            f"{' (subset)' if subset else ''} ...",
            flush=True,
        )
        started = time.monotonic()
        summary, rc = run_row(row, python, args.pytest_args, subset)
        summary += f" [{time.monotonic() - started:.0f} s{', subset' if subset else ''}]"
        ran += 1
        failed += rc != 0
        results.append((row, versions(python), summary))
    print()
    header = f"{'row':10} {'stands for':20} {'python':8} {'boto3 / botocore':24} {'pyroute2':9}"
    print(f"{header} result")
    for row, stack, summary in results:
        shown = f"{'-':8} {'-':24} -" if stack == "-" else stack
        print(f"{row.name:10} {row.stands_for:20} {shown:43} {summary}")
    if ran == 0:
        print("compat: no row could run here")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
