"""Declarations of an agent's parameters and actions (plain classes: no dataclasses, no re)."""

from __future__ import annotations

from .text import encodable

TYPE_CHECKING = False
if TYPE_CHECKING:
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

_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_REST = _NAME_START | frozenset("0123456789")
# Characters XML 1.0 cannot carry, plus the other C0/C1 controls: keep descriptions printable.
# (Lone surrogates too: they are found by failing to encode.)
_BAD_TEXT = frozenset(
    [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + ["\ufffe", "\uffff"]
)


def _is_name(name: object) -> bool:
    """``[A-Za-z_][A-Za-z0-9_]*``"""
    return isinstance(name, str) and name[:1] in _NAME_START and _NAME_REST.issuperset(name)


def check_text(what: str, text: str, *, empty_ok: bool = False) -> None:
    """Reject text that would make invalid or misleading XML."""
    if not isinstance(text, str) or not (empty_ok or text.strip()):
        raise ValueError(f"{what} must be a non-empty string")
    if not _BAD_TEXT.isdisjoint(text) or not encodable(text):
        raise ValueError(f"{what} contains control characters")


class _Frozen:
    """Value semantics for a declaration: compared and hashed by its fields, never changed."""

    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, f) for f in self.__slots__)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _set(self, **fields: object) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__)
        return f"{type(self).__name__}({shown})"


class Parameter(_Frozen):
    """One instance parameter, passed to the agent as ``OCF_RESKEY_<name>``."""

    __slots__ = (
        "default",
        "deprecated",
        "longdesc",
        "name",
        "replaces",
        "required",
        "shortdesc",
        "type",
        "unique",
    )
    name: str
    shortdesc: str
    longdesc: str
    type: str
    default: ParamValue
    required: bool
    unique: bool
    deprecated: Optional[str]
    replaces: Optional[str]

    def __init__(  # noqa: PLR0917 - the declaration reads best positionally
        self,
        name: str,
        shortdesc: str,
        longdesc: str,
        type: str = "string",
        default: ParamValue = None,
        required: bool = False,
        unique: bool = False,
        *,
        deprecated: Optional[str] = None,
        replaces: Optional[str] = None,
    ) -> None:
        """``deprecated``: why the parameter is kept and what to use instead (the meta-data
        says so in its descriptions); ``replaces``: the parameter a deprecated one stands for,
        whose ``required`` the agent's configuration parser then checks (see ``Agent``)."""
        self._set(
            name=name,
            shortdesc=shortdesc,
            longdesc=longdesc,
            type=type,
            default=default,
            required=required,
            unique=unique,
            deprecated=deprecated,
            replaces=replaces,
        )
        self._check()

    def _check(self) -> None:
        if not _is_name(self.name):
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
        if self.deprecated is not None:
            check_text(f"deprecation of parameter {self.name!r}", self.deprecated)
            if self.required or self.default is not None:
                raise ValueError(
                    f"deprecated parameter {self.name!r} can be neither required nor defaulted"
                )
        if self.replaces is not None and (self.deprecated is None or not _is_name(self.replaces)):
            raise ValueError(f"parameter {self.name!r}: only a deprecated one replaces another")

    def default_text(self) -> Optional[str]:
        """The default as the meta-data shows it, or None without a default."""
        if self.default is None:
            return None
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)


class ActionSpec(_Frozen):
    """One advertised action; times are in whole seconds."""

    __slots__ = ("depth", "interval", "name", "timeout")
    name: str
    timeout: int
    interval: Optional[int]
    depth: Optional[int]

    def __init__(
        self, name: str, timeout: int, interval: Optional[int] = None, depth: Optional[int] = None
    ) -> None:
        self._set(name=name, timeout=timeout, interval=interval, depth=depth)
        self._check()

    def _check(self) -> None:
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
