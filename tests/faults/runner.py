"""Run the fault matrix on a few labs at once and print the table.

Each worker thread owns one :class:`lab.Lab` (its own lab server and namespaces) and resets it
before every case. Agent processes mostly wait (on retries, timeouts, EC2 transitions), so a
few labs share two cores well; the timing checks keep their margins because an agent's CPU
time is small.
"""

from __future__ import annotations

import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

from lab import Lab, LabError

from .cases import (
    Case,
    Row,
    client_cases,
    discover,
    drift_cases,
    ec2_cases,
    execute,
    fuzz_cases,
    imds_cases,
    kill_cases,
    parallel_cases,
    permission_cases,
    race_cases,
)
from .world import AGENTS, SHORT

T = TypeVar("T")
R = TypeVar("R")
GROUPS = ("ec2", "permission", "imds", "client", "kill", "race", "drift", "parallel", "fuzz")
# Rough cost, to start the long cases first and keep the workers busy to the end.
_COST = {"fuzz": 9, "kill": 4, "race": 3, "permission": 2}
MAX_PROBLEMS = 25  # per failed row in the report


class LabPool:
    """``jobs`` labs, each used by one worker thread at a time."""

    def __init__(self, workdir: Path, jobs: int) -> None:
        self.workdir = workdir
        self.jobs = max(1, jobs)
        self.labs: list[Lab | None] = [None] * self.jobs

    def lab(self, index: int) -> Lab:
        lab = self.labs[index]
        if lab is None:
            lab = Lab(self.workdir / f"lab{index}")
            lab.start()
            self.labs[index] = lab
            return lab
        try:
            lab.reset()
        except (LabError, OSError):
            lab.close()
            lab = Lab(self.workdir / f"lab{index}")
            lab.start()
            self.labs[index] = lab
        return lab

    def map(self, function: Callable[[Lab, T, Path], R], items: Sequence[T]) -> list[R]:
        """``function(lab, item, workdir)`` for every item, on a fresh lab world each time."""
        results: list[Any] = [None] * len(items)
        todo: queue.Queue[int] = queue.Queue()
        for index in range(len(items)):
            todo.put(index)

        def worker(slot: int) -> None:
            while True:
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    return
                lab = self.lab(slot)
                workdir = self.workdir / f"case{index:04d}"
                try:
                    results[index] = function(lab, items[index], workdir)
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)

        threads = [
            threading.Thread(target=worker, args=(slot,), daemon=True)
            for slot in range(min(self.jobs, len(items)))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    def close(self) -> None:
        for lab in self.labs:
            if lab is not None:
                lab.close()
        self.labs = [None] * self.jobs


def build_cases(
    pool: LabPool,
    agents: Sequence[str] = AGENTS,
    groups: Sequence[str] = GROUPS,
    fuzz_examples: int = 10,
    fuzz_explicit: str = "all",
) -> list[Case]:
    """The whole matrix; the permission and kill cases from clean runs' call logs."""
    cases: list[Case] = []
    if "ec2" in groups:
        cases += ec2_cases(agents)
    if "imds" in groups:
        cases += imds_cases(agents)
    if "client" in groups:
        cases += client_cases(agents)
    if "permission" in groups or "kill" in groups:
        found: dict[tuple[str, str], list[str]] = {}
        for calls in pool.map(discover, list(agents)):
            found.update(calls)
        if "permission" in groups:
            cases += permission_cases(found)
        if "kill" in groups:
            cases += kill_cases(found)
    if "race" in groups:
        cases += race_cases(agents)
    if "drift" in groups:
        cases += drift_cases(agents)
    if "parallel" in groups:
        cases += parallel_cases(agents)
    if "fuzz" in groups:
        cases += fuzz_cases(fuzz_examples, fuzz_explicit, agents)
    return cases


def run_cases(
    pool: LabPool, cases: Sequence[Case], progress: Callable[[Row], None] | None = None
) -> list[Row]:
    ordered = sorted(range(len(cases)), key=lambda i: -_COST.get(cases[i].group, 1))
    lock = threading.Lock()

    def one(lab: Lab, index: int, workdir: Path) -> list[Row]:
        rows = execute(lab, cases[index], workdir)
        if progress is not None:
            with lock:
                for row in rows:
                    progress(row)
        return rows

    results = pool.map(one, ordered)
    by_index = dict(zip(ordered, results))
    return [row for i in range(len(cases)) for row in by_index[i]]


# ----------------------------------------------------------------------------- the table


def _time(row: Row) -> str:
    if not row.timeout:
        return "-"
    return f"{row.duration:5.1f}s / {row.timeout:3.0f}s"


def format_table(rows: Iterable[Row]) -> str:
    rows = list(rows)
    header = ("group", "case", "agent", "action", "outcome", "exit code", "time / timeout")
    lines = [
        (
            r.case.group,
            r.case.name,
            SHORT[r.case.agent],
            r.case.action,
            "pass" if r.ok else "FAIL",
            r.rc,
            _time(r),
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
    widths[1] = min(widths[1], 48)

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(str(c)[: widths[i]].ljust(widths[i]) for i, c in enumerate(cells))

    out = [fmt(header), fmt(["-" * w for w in widths])]
    out += [fmt(line) for line in lines]
    return "\n".join(out)


def format_totals(rows: Sequence[Row], seconds: float) -> str:
    passed = sum(r.ok for r in rows)

    def tally(key: Callable[[Row], str], names: Sequence[str], label: Callable[[str], str]) -> str:
        counts = []
        for name in names:
            mine = [r for r in rows if key(r) == name]
            if mine:
                counts.append(f"{label(name)} {sum(r.ok for r in mine)}/{len(mine)}")
        return ", ".join(counts)

    return "\n".join(
        [
            f"TOTAL: {len(rows)} cases run, {passed} passed, {len(rows) - passed} failed",
            "by group (passed/run): " + tally(lambda r: r.case.group, GROUPS, str),
            "by agent (passed/run): " + tally(lambda r: r.case.agent, AGENTS, SHORT.__getitem__),
            f"wall time: {seconds / 60:.1f} min",
        ]
    )


def format_failures(rows: Sequence[Row]) -> str:
    out = []
    for row in rows:
        if row.ok:
            continue
        out.append(f"FAIL {row.case.id}")
        out += [f"    - {p}" for p in row.problems[:MAX_PROBLEMS]]
        if len(row.problems) > MAX_PROBLEMS:
            out.append(f"    ... {len(row.problems) - MAX_PROBLEMS} more")
    return "\n".join(out)


def report(rows: Sequence[Row], seconds: float, stream: TextIO = sys.stdout) -> None:
    stream.write(format_table(rows) + "\n\n")
    failures = format_failures(rows)
    if failures:
        stream.write(failures + "\n\n")
    stream.write(format_totals(rows, seconds) + "\n")
    stream.flush()


def main_run(
    *,
    workdir: Path,
    jobs: int,
    agents: Sequence[str],
    groups: Sequence[str],
    fuzz_examples: int,
    select: Callable[[Case], bool] = lambda case: True,
    list_only: bool = False,
    stream: TextIO = sys.stdout,
) -> int:
    began = time.monotonic()
    pool = LabPool(workdir, jobs)
    try:
        cases = [c for c in build_cases(pool, agents, groups, fuzz_examples) if select(c)]
        if list_only:
            for case in cases:
                stream.write(case.id + "\n")
            return 0
        stream.write(f"running {len(cases)} cases on {pool.jobs} labs\n")
        stream.flush()

        def progress(row: Row) -> None:
            mark = "pass" if row.ok else "FAIL"
            stream.write(f"  {mark} {row.case.id} [{row.rc}] {row.wall:.1f}s\n")
            stream.flush()

        rows = run_cases(pool, cases, progress)
    finally:
        pool.close()
    stream.write("\n")
    report(rows, time.monotonic() - began, stream)
    return 0 if all(r.ok for r in rows) else 1
