"""``python -m faults``: run the fault matrix and print the table (``make faults``)."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from .runner import GROUPS, main_run
from .world import AGENTS, SHORT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faults", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2, help="labs run at once (default 2)")
    parser.add_argument(
        "--agent",
        action="append",
        choices=sorted(SHORT.values()),
        help="only this agent (repeatable)",
    )
    parser.add_argument(
        "--group", action="append", choices=GROUPS, help="only this group (repeatable)"
    )
    parser.add_argument("--match", help="only cases whose id (group:case:agent:action) matches")
    parser.add_argument(
        "--fuzz-examples",
        type=int,
        default=int(os.environ.get("FAULTS_FUZZ_EXAMPLES", "10")),
        help="hypothesis examples per parameter, each run through 4 actions (default 10)",
    )
    parser.add_argument("--list", action="store_true", help="list the cases, run nothing")
    parser.add_argument("--workdir", type=Path, help="where the labs live (default: a temp dir)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("the lab needs root (network namespaces)")
    agents = [a for a in AGENTS if not args.agent or SHORT[a] in args.agent]
    groups = args.group or list(GROUPS)
    pattern = re.compile(args.match) if args.match else None
    with tempfile.TemporaryDirectory(prefix="ipf-faults-") as tmp:
        return main_run(
            workdir=args.workdir or Path(tmp),
            jobs=args.jobs,
            agents=agents,
            groups=groups,
            fuzz_examples=args.fuzz_examples,
            select=lambda case: pattern is None or bool(pattern.search(case.id)),
            list_only=args.list,
        )


if __name__ == "__main__":
    sys.exit(main())
