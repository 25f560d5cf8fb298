"""`crm_mon --output-as=xml`, parsed into plain data (pure functions)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeState:
    name: str
    online: bool
    standby: bool
    is_dc: bool
    unclean: bool
    pending: bool


@dataclass(frozen=True)
class ResourceState:
    id: str
    agent: str
    role: str
    active: bool
    failed: bool
    nodes: tuple[str, ...]

    @property
    def node(self) -> str | None:
        """The one node it runs on, or None (stopped, or active on several: see nodes)."""
        return self.nodes[0] if self.active and len(self.nodes) == 1 else None


@dataclass(frozen=True)
class FailedAction:
    resource: str
    node: str
    task: str
    exitstatus: str
    exitreason: str
    status: str


@dataclass(frozen=True)
class Status:
    dc: str | None
    quorum: bool
    nodes: dict[str, NodeState] = field(default_factory=dict)
    resources: dict[str, ResourceState] = field(default_factory=dict)
    failures: tuple[FailedAction, ...] = ()

    @property
    def online(self) -> tuple[str, ...]:
        return tuple(sorted(n.name for n in self.nodes.values() if n.online))

    def where(self, resource: str) -> str | None:
        """The node the resource runs on (None when stopped, unknown or on several nodes)."""
        state = self.resources.get(resource)
        return state.node if state is not None else None


def _flag(element: ET.Element, name: str) -> bool:
    return element.get(name) == "true"


def parse_crm_mon(text: str) -> Status:
    root = ET.fromstring(text)  # noqa: S314 (crm_mon's own output, not untrusted input)
    summary = root.find("summary")
    dc = None
    quorum = False
    if summary is not None:
        dc_element = summary.find("current_dc")
        if dc_element is not None and _flag(dc_element, "present"):
            dc = dc_element.get("name")
            quorum = _flag(dc_element, "with_quorum")
    nodes = {}
    for element in root.iterfind("nodes/node"):
        name = element.get("name", "")
        nodes[name] = NodeState(
            name=name,
            online=_flag(element, "online"),
            standby=_flag(element, "standby"),
            is_dc=_flag(element, "is_dc"),
            unclean=_flag(element, "unclean"),
            pending=_flag(element, "pending"),
        )
    resources = {}
    for element in root.iter("resource"):
        rid = element.get("id", "")
        resources[rid] = ResourceState(
            id=rid,
            agent=element.get("resource_agent", ""),
            role=element.get("role", ""),
            active=_flag(element, "active"),
            failed=_flag(element, "failed"),
            nodes=tuple(n.get("name", "") for n in element.iterfind("node")),
        )
    failures = tuple(
        FailedAction(
            resource=f.get("op_key", "").rsplit("_", 2)[0],
            node=f.get("node", ""),
            task=f.get("task", ""),
            exitstatus=f.get("exitstatus", ""),
            exitreason=f.get("exitreason", ""),
            status=f.get("status", ""),
        )
        for f in root.iterfind("failures/failure")
    )
    return Status(dc=dc, quorum=quorum, nodes=nodes, resources=resources, failures=failures)
