"""A small OCF resource agent shim: declare parameters and actions once, get the protocol right.

Standard library only; nothing is read from the environment until ``Agent.main()`` runs.
"""

from __future__ import annotations

from .agent import Agent, Context, check_level, lazy_handler
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
from .log import Log, get_log
from .spec import ActionSpec, Parameter
from .text import hide_userinfo, redact

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .agent import Handler
    from .spec import ParamValue

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
    "Log",
    "NotInstalledError",
    "OCFError",
    "ParamValue",
    "Parameter",
    "PermError",
    "UnimplementedError",
    "check_level",
    "get_log",
    "hide_userinfo",
    "lazy_handler",
    "parse_bool",
    "redact",
]
