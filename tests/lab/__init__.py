"""The ipfailover test lab: moto EC2 + IMDS + network namespaces (see harness.Lab)."""

from .harness import (
    AgentResult,
    Call,
    Eni,
    Lab,
    LabError,
    Node,
    Subnet,
    ThrottleCount,
    exit_reason,
    wait_until,
)
from .spec import Timing
from .throttle import ThrottleModel

__all__ = [
    "AgentResult",
    "Call",
    "Eni",
    "Lab",
    "LabError",
    "Node",
    "Subnet",
    "ThrottleCount",
    "ThrottleModel",
    "Timing",
    "exit_reason",
    "wait_until",
]
