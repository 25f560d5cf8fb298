#!/usr/bin/env python3
"""Stand-ins for attrd_updater, crm_mon, cibadmin and crm_node, for aws-health's process tests
outside a cluster (tests/test_health_agent.py). One JSON file (HEALTH_FAKE_CLUSTER) is the
cluster: its nodes, their transient attributes, the resources section. The output formats are
those of Pacemaker 2.1.5's tools, as far as ipfailover.health.cluster reads them; the real tools
are run against that module in tests/test_health_cluster.py.

The local node is OCF_RESKEY_CRM_meta_on_node (Pacemaker passes it to every action).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from typing import Any
from xml.sax.saxutils import quoteattr


@contextlib.contextmanager
def cluster() -> Iterator[dict[str, Any]]:
    path = os.environ["HEALTH_FAKE_CLUSTER"]
    with open(path, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        state = json.load(handle)
        yield state
        handle.seek(0)
        handle.truncate()
        json.dump(state, handle)


def fail(message: str, code: int = 1) -> None:
    sys.stderr.write(message + "\n")
    sys.exit(code)


def attrd_updater(args: list[str], state: dict[str, Any], me: str) -> None:
    if "--version" in args:
        print(f"Pacemaker {state.get('version', '2.1.5')}\nWritten by Andrew Beekhof")
        return
    if "--help-all" in args:
        print(
            "  -U, --update=VALUE\n  -D, --delete\n"
            + ("  -W, --wait=UNTIL\n" if state.get("wait") else "")
        )
        return
    name = args[args.index("-n") + 1]
    wait = [a for a in args if a.startswith("--wait")]
    if wait and not state.get("wait"):
        fail("attrd_updater: Unknown option --wait")
    attrs = state["attrs"].setdefault(me, {})
    if "-U" in args:
        attrs[name] = args[args.index("-U") + 1]
        # A race staged by a test: another node's writes land together with this one.
        trigger = state.get("on_update") or {}
        if [trigger.get("node"), trigger.get("name"), trigger.get("value")] == [
            me,
            name,
            attrs[name],
        ]:
            for node, values in trigger["set"].items():
                state["attrs"].setdefault(node, {}).update(values)
            state["on_update"] = None
    elif "-D" in args:
        attrs.pop(name, None)
    else:
        fail("unsupported")
    state.setdefault("log", []).append([me, *args])


def crm_mon(args: list[str], state: dict[str, Any]) -> None:
    nodes = []
    for name, node in sorted(state["nodes"].items()):
        flags = " ".join(
            f'{key}="{"true" if node.get(key, default) else "false"}"'
            for key, default in (
                ("online", True),
                ("standby", False),
                ("maintenance", False),
                ("unclean", False),
                ("shutdown", False),
            )
        )
        nodes.append(
            f'    <node name={quoteattr(name)} id="{len(nodes) + 1}" {flags} type="member"/>'
        )
    maintenance = "true" if state.get("maintenance_mode") else "false"
    print(
        '<pacemaker-result api-version="2.25" request="crm_mon --output-as=xml">\n'
        f'  <summary>\n    <cluster_options maintenance-mode="{maintenance}"/>\n  </summary>\n'
        "  <nodes>\n" + "\n".join(nodes) + "\n  </nodes>\n"
        '  <status code="0" message="OK"/>\n</pacemaker-result>'
    )


def cibadmin(args: list[str], state: dict[str, Any]) -> None:
    scope = args[args.index("--scope") + 1]
    if state.get("cib_down"):
        fail("Could not connect to the CIB: Transport endpoint is not connected", 102)
    if scope == "resources":
        print(state.get("resources", "<resources/>"))
        return
    states = []
    for number, name in enumerate(sorted(state["nodes"]), 1):
        pairs = "".join(
            f'<nvpair id="status-{number}-{key}" name={quoteattr(key)} value={quoteattr(value)}/>'
            for key, value in sorted(state["attrs"].get(name, {}).items())
        )
        states.append(
            f'<node_state id="{number}" uname={quoteattr(name)} in_ccm="true" crmd="online">'
            f'<transient_attributes id="{number}"><instance_attributes id="status-{number}">'
            f"{pairs}</instance_attributes></transient_attributes></node_state>"
        )
    print("<status>" + "".join(states) + "</status>")


def main() -> None:
    tool = os.path.basename(sys.argv[0])
    me = os.environ.get("OCF_RESKEY_CRM_meta_on_node", "")  # noqa: SIM112 - as Pacemaker spells it
    with cluster() as state:
        if tool == "attrd_updater":
            attrd_updater(sys.argv[1:], state, me)
        elif tool == "crm_mon":
            crm_mon(sys.argv[1:], state)
        elif tool == "cibadmin":
            cibadmin(sys.argv[1:], state)
        elif tool == "crm_node":
            print(me)
        else:
            fail(f"no stand-in for {tool}")


if __name__ == "__main__":
    main()
