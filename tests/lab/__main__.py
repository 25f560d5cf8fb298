"""The lab from the command line.

python -m lab up --workdir DIR [--nodes a,b] [--dataplane]
                                              start a lab, print it as JSON, keep it until
                                              SIGINT/SIGTERM, then clean up
python -m lab sweep                           delete lab namespaces whose creator is gone
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path

from . import netns
from .harness import Lab


def describe(lab: Lab) -> dict[str, object]:
    return {
        "endpoint_url": lab.endpoint_url,
        "region": lab.region,
        "account_id": lab.account_id,
        "vpc_id": lab.vpc_id,
        "vpc_cidr": lab.vpc_cidr,
        "vpc_ipv6_cidr": lab.vpc_ipv6_cidr,
        "subnets": {name: asdict(s) for name, s in lab.subnets.items()},
        "route_tables": lab.route_tables,
        "main_route_table": lab.main_route_table,
        "vpc_netns": lab.netns("vpc"),
        "nodes": {name: asdict(n) for name, n in lab.nodes.items()},
        "client": asdict(lab.client) if lab.client else None,
        "regional_endpoint": lab.regional_endpoint,
        "start_seconds": round(lab.start_seconds, 3),
    }


def up(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    nodes = tuple(n for n in args.nodes.split(",") if n)
    with Lab(Path(args.workdir), nodes, region=args.region, dataplane=args.dataplane) as lab:
        print(json.dumps(describe(lab), indent=2), flush=True)
        while not stop.wait(3600):
            pass
    return 0


def sweep(_: argparse.Namespace) -> int:
    for name in netns.sweep():
        print(f"deleted {name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start a lab and keep it until SIGINT/SIGTERM")
    p_up.add_argument("--workdir", required=True)
    p_up.add_argument("--nodes", default="a,b")
    p_up.add_argument("--region", default="eu-central-1")
    p_up.add_argument(
        "--dataplane", action="store_true", help="the VPC data plane and a client namespace"
    )
    p_up.set_defaults(func=up)
    p_sweep = sub.add_parser("sweep", help="delete stale lab namespaces")
    p_sweep.set_defaults(func=sweep)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
