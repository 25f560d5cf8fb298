"""The ipfailover test lab: moto EC2 + IMDS + network namespaces (see harness.Lab)."""

from .harness import (
    AgentResult,
    Call,
    Eni,
    Lab,
    LabError,
    Node,
    Subnet,
    exit_reason,
    wait_until,
)
from .spec import Timing

__all__ = [
    "AgentResult",
    "Call",
    "Eni",
    "Lab",
    "LabError",
    "Node",
    "Subnet",
    "Timing",
    "exit_reason",
    "wait_until",
]
