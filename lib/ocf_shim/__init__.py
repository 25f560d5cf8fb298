"""A small OCF resource agent shim: declare parameters and actions once, get the protocol right.

Standard library only; nothing is read from the environment until ``Agent.main()`` runs.
"""

from __future__ import annotations

from .agent import Agent, Context, Handler, redact
from .deadline import Deadline
from .errors import (
    OCF,
    ArgsError,
    ConfigError,
    GenericError,
    NotInstalledError,
    OCFError,
    PermError,
    UnimplementedError,
    parse_bool,
)
from .spec import ActionSpec, Parameter, ParamValue

__all__ = [
    "OCF",
    "ActionSpec",
    "Agent",
    "ArgsError",
    "ConfigError",
    "Context",
    "Deadline",
    "GenericError",
    "Handler",
    "NotInstalledError",
    "OCFError",
    "ParamValue",
    "Parameter",
    "PermError",
    "UnimplementedError",
    "parse_bool",
    "redact",
]
