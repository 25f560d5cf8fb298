"""aws-health's one door to the cluster: node attributes through ``attrd_updater``, the nodes'
state through ``crm_mon``, the configuration and transient attributes through ``cibadmin``.

Thin on purpose: every command runs with the action's deadline, and its output is parsed into
the plain values :mod:`ipfailover.health.events` decides on. Tests outside a cluster put
stand-ins for these three tools on PATH; tests/test_health_cluster.py runs this module against
the real ones.

Waiting for a write: newer Pacemakers (2.1.8's attrd_updater lists it; 2.1.5's does not) have
``attrd_updater --wait``; this module uses ``--wait=cluster`` when the installed attrd_updater
lists it, and otherwise polls the CIB until the value is there (the attribute writer commits it
after every node's attrd has the update), which every node then reads.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import NamedTuple, Optional

from ipfailover.health.events import Peer
from ocf_shim import Deadline, GenericError, NotInstalledError, get_log

log = get_log("ipfailover")

COMMAND_TIMEOUT = 10.0
WAIT_POLL = 0.1
IP_AGENTS = ("aws-secip", "aws-overlayip", "aws-eni")
MIN_PACEMAKER = (2, 1, 3)


class Primitive(NamedTuple):
    """An ocf:ipfailover primitive of the configuration."""

    id: str
    type: str
    params: dict[str, str]
    clone_meta: Optional[dict[str, str]]  # None: not in a clone


def run(argv: list[str], deadline: Deadline, input: Optional[str] = None) -> str:
    """Run a cluster tool; its stdout, or an error naming it and what it said."""
    deadline.check(f"running {argv[0]}")
    timeout = max(0.1, min(COMMAND_TIMEOUT, deadline.remaining()))
    try:
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except FileNotFoundError:
        raise NotInstalledError(f"{argv[0]} is not installed (Pacemaker's tools)") from None
    except subprocess.TimeoutExpired:
        raise GenericError(f"{argv[0]} did not answer within {timeout:.1f}s") from None
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise GenericError(
            f"{' '.join(argv[:3])} failed with {proc.returncode}: {said[-1] if said else ''}"[:300]
        )
    return proc.stdout


def _xml(text: str, what: str) -> ET.Element:
    try:
        return ET.fromstring(text)  # noqa: S314 - output of the cluster's own tools, as root
    except ET.ParseError as exc:
        raise GenericError(f"{what} is not XML: {exc}") from None


# ---------------------------------------------------------------------------------- versions


def pacemaker_version(deadline: Deadline) -> tuple[int, ...]:
    """The installed Pacemaker's version, from ``attrd_updater --version``."""
    out = run(["attrd_updater", "--version"], deadline)
    found = re.search(r"Pacemaker (\d+)\.(\d+)\.(\d+)", out)
    if found is None:
        raise GenericError(f"cannot tell the Pacemaker version from {out[:80]!r}")
    return tuple(int(part) for part in found.groups())


_wait_support: dict[str, bool] = {}


def attrd_can_wait(deadline: Deadline) -> bool:
    """Whether this attrd_updater has ``--wait=cluster`` (not Pacemaker 2.1.5; 2.1.8 has it)."""
    if "wait" not in _wait_support:
        try:
            text = run(["attrd_updater", "--help-all"], deadline)
        except GenericError:
            text = ""
        _wait_support["wait"] = "--wait" in text and "cluster" in text
    return _wait_support["wait"]


# ---------------------------------------------------------------------------------- attributes


def node_name(environ: Mapping[str, str], deadline: Deadline) -> str:
    """This node's name: what Pacemaker passes the action, else ``crm_node -n``."""
    name = environ.get("OCF_RESKEY_CRM_meta_on_node", "").strip()
    if name:
        return name
    return run(["crm_node", "-n"], deadline).strip()


def update(name: str, value: str, deadline: Deadline, me: str, wait: bool = True) -> None:
    """Set this node's transient attribute (never private: rules must see it); ``wait``: until
    the cluster sees it."""
    argv = ["attrd_updater", "-n", name, "-U", value]
    if wait and attrd_can_wait(deadline):
        run([*argv, "--wait=cluster"], deadline)
        return
    run(argv, deadline)
    if wait:
        wait_for(name, value, deadline, me)


def delete(name: str, deadline: Deadline, me: str, wait: bool = True) -> None:
    """Remove this node's transient attribute."""
    argv = ["attrd_updater", "-n", name, "-D"]
    if wait and attrd_can_wait(deadline):
        run([*argv, "--wait=cluster"], deadline)
        return
    run(argv, deadline)
    if wait:
        wait_for(name, None, deadline, me)


def wait_for(name: str, value: Optional[str], deadline: Deadline, me: str) -> None:
    """Poll the CIB until this node's transient ``name`` is ``value`` (None: absent)."""
    while True:
        if transient_attributes(deadline).get(me, {}).get(name) == value:
            return
        if not deadline.allows(WAIT_POLL + 1.0):
            raise GenericError(
                f"the cluster did not show {name}={value if value is not None else '(none)'} "
                "for this node in time"
            )
        time.sleep(WAIT_POLL)


def transient_attributes(deadline: Deadline) -> dict[str, dict[str, str]]:
    """Node name -> its transient attributes, from the CIB's status section (an empty value,
    which attrd_updater -D leaves with some versions, is no value)."""
    root = _xml(run(["cibadmin", "-Q", "--scope", "status"], deadline), "the CIB status")
    result: dict[str, dict[str, str]] = {}
    for state in root.iter("node_state"):
        uname = state.get("uname")
        if not uname:
            continue
        values = result.setdefault(uname, {})
        for transient in state.iter("transient_attributes"):
            for pair in transient.iter("nvpair"):
                name, value = pair.get("name"), pair.get("value")
                if name and value:
                    values[name] = value
    return result


def _true(value: Optional[str]) -> bool:
    return (value or "").lower() == "true"


def peers(
    deadline: Deadline,
    health_attribute: str,
    claim_attribute: str,
    safe_attribute: Optional[str],
) -> tuple[Peer, ...]:
    """Every node of the cluster as :class:`Peer` (this one included): online, standby and
    maintenance from crm_mon, the attributes from the CIB."""
    status = _xml(run(["crm_mon", "-1", "--output-as=xml"], deadline), "crm_mon's XML")
    cluster_maintenance = any(
        _true(options.get("maintenance-mode")) for options in status.iter("cluster_options")
    )
    attributes = transient_attributes(deadline)
    result = []
    for node in status.findall("./nodes/node"):
        name = node.get("name")
        if not name:
            continue
        values = attributes.get(name, {})
        claim_text = values.get(claim_attribute)
        try:
            claim = float(claim_text) if claim_text else None
        except ValueError:
            claim = None
        result.append(
            Peer(
                name=name,
                online=_true(node.get("online")) and not _true(node.get("unclean")),
                standby=_true(node.get("standby")) or _true(node.get("shutdown")),
                maintenance=_true(node.get("maintenance")) or cluster_maintenance,
                health=values.get(health_attribute),
                claim=claim,
                safe=values.get(safe_attribute) if safe_attribute else None,
            )
        )
    return tuple(result)


# ---------------------------------------------------------------------------------- config


def primitives(deadline: Deadline) -> list[Primitive]:
    """The ocf:ipfailover primitives of the configuration, with their clone's meta attributes."""
    root = _xml(run(["cibadmin", "-Q", "--scope", "resources"], deadline), "the CIB resources")
    found: list[Primitive] = []

    def walk(element: ET.Element, clone_meta: Optional[dict[str, str]]) -> None:
        for child in element:
            if child.tag == "clone":
                meta: dict[str, str] = {}
                for attrs in child.findall("meta_attributes"):
                    for pair in attrs.findall("nvpair"):
                        meta[pair.get("name", "")] = pair.get("value", "")
                walk(child, meta)
            elif child.tag in ("group", "bundle", "resources"):
                walk(child, clone_meta)
            elif child.tag == "primitive" and (
                child.get("class") == "ocf" and child.get("provider") == "ipfailover"
            ):
                params: dict[str, str] = {}
                for attrs in child.findall("instance_attributes")[:1]:
                    for pair in attrs.findall("nvpair"):
                        params[pair.get("name", "")] = pair.get("value", "")
                found.append(
                    Primitive(child.get("id", ""), child.get("type", ""), params, clone_meta)
                )

    walk(root, None)
    return found
