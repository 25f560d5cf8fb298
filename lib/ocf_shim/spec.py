"""Declarations of an agent's parameters and actions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Union

ParamValue = Union[str, int, bool, None]

PARAMETER_TYPES = ("string", "integer", "boolean")

# Action names the ra-api-1.dtd accepts (what ocf-tester validates against).
DTD_ACTIONS = frozenset(
    {
        "start",
        "stop",
        "recover",
        "monitor",
        "restart",
        "migrate_to",
        "migrate_from",
        "promote",
        "demote",
        "notify",
        "status",
        "reload",
        "meta-data",
        "usage",
        "methods",
        "validate-all",
    }
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Characters XML 1.0 cannot carry, plus the other C0/C1 controls: keep descriptions printable.
_BAD_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def check_text(what: str, text: str, *, empty_ok: bool = False) -> None:
    """Reject text that would make invalid or misleading XML."""
    if not isinstance(text, str) or not (empty_ok or text.strip()):
        raise ValueError(f"{what} must be a non-empty string")
    if _BAD_TEXT.search(text):
        raise ValueError(f"{what} contains control characters")


@dataclass(frozen=True)
class Parameter:
    """One instance parameter, passed to the agent as ``OCF_RESKEY_<name>``."""

    name: str
    shortdesc: str
    longdesc: str
    type: str = "string"
    default: ParamValue = None
    required: bool = False
    unique: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"invalid parameter name {self.name!r}")
        if self.name.startswith("CRM_meta_"):
            raise ValueError(f"parameter name {self.name!r} is reserved for Pacemaker")
        check_text(f"shortdesc of parameter {self.name!r}", self.shortdesc)
        check_text(f"longdesc of parameter {self.name!r}", self.longdesc)
        if self.type not in PARAMETER_TYPES:
            raise ValueError(
                f"parameter {self.name!r}: type must be one of {PARAMETER_TYPES}, got {self.type!r}"
            )
        if self.default is not None:
            if self.required:
                raise ValueError(
                    f"parameter {self.name!r} is required, so it cannot have a default"
                )
            ok = {
                "string": isinstance(self.default, str),
                "integer": isinstance(self.default, int) and not isinstance(self.default, bool),
                "boolean": isinstance(self.default, bool),
            }[self.type]
            if not ok:
                raise ValueError(
                    f"parameter {self.name!r}: default {self.default!r} is not a {self.type}"
                )
            if isinstance(self.default, str):
                check_text(f"default of parameter {self.name!r}", self.default, empty_ok=True)

    def default_text(self) -> Optional[str]:
        """The default as the meta-data shows it, or None without a default."""
        if self.default is None:
            return None
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)


@dataclass(frozen=True)
class ActionSpec:
    """One advertised action; times are in whole seconds."""

    name: str
    timeout: int
    interval: Optional[int] = None
    depth: Optional[int] = None

    def __post_init__(self) -> None:
        if self.name not in DTD_ACTIONS:
            raise ValueError(f"action {self.name!r} is not one ra-api-1.dtd allows")
        if not _positive_int(self.timeout):
            raise ValueError(f"action {self.name!r}: timeout must be a positive integer")
        if self.interval is not None and not _non_negative_int(self.interval):
            raise ValueError(f"action {self.name!r}: interval must be a non-negative integer")
        if self.depth is not None and not _non_negative_int(self.depth):
            raise ValueError(f"action {self.name!r}: depth must be a non-negative integer")


def _non_negative_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _positive_int(value: object) -> bool:
    return _non_negative_int(value) and value != 0
