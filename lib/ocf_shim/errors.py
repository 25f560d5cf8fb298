"""OCF exit codes, the errors that carry them, and Pacemaker-style boolean parsing."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional


class OCF:
    """Exit codes of the OCF resource agent API 1.1 (plain ints: no enum to import)."""

    SUCCESS = 0
    ERR_GENERIC = 1
    ERR_ARGS = 2
    ERR_UNIMPLEMENTED = 3
    ERR_PERM = 4
    ERR_INSTALLED = 5
    ERR_CONFIGURED = 6
    NOT_RUNNING = 7
    RUNNING_PROMOTED = 8
    FAILED_PROMOTED = 9
    DEGRADED = 190
    DEGRADED_PROMOTED = 191


class OCFError(Exception):
    """An error that carries its OCF exit code.

    Any layer may raise it; only ``Agent.main()`` turns it into an exit status and an exit reason.
    Subclasses fix ``rc``; ``OCFError`` itself defaults to ``OCF.ERR_GENERIC``.
    """

    rc: int = OCF.ERR_GENERIC

    def __init__(self, reason: str, rc: Optional[int] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if rc is not None:
            if rc not in KNOWN_CODES:
                raise ValueError(f"{rc!r} is not an OCF exit code")
            self.rc = int(rc)


KNOWN_CODES = frozenset(
    value for name, value in vars(OCF).items() if name.isupper() and isinstance(value, int)
)


class GenericError(OCFError):
    rc = OCF.ERR_GENERIC


class ArgsError(OCFError):
    rc = OCF.ERR_ARGS


class UnimplementedError(OCFError):
    rc = OCF.ERR_UNIMPLEMENTED


class PermError(OCFError):
    rc = OCF.ERR_PERM


class NotInstalledError(OCFError):
    rc = OCF.ERR_INSTALLED


class ConfigError(OCFError):
    rc = OCF.ERR_CONFIGURED


_TRUE = frozenset({"true", "on", "yes", "y", "1"})
_FALSE = frozenset({"false", "off", "no", "n", "0"})


def parse_bool(value: str) -> bool:
    """Parse a boolean the way Pacemaker and pcs do; anything else raises ``ValueError``."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value[:64]!r}")
