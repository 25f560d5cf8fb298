"""OCF exit codes, the errors that carry them, and Pacemaker-style boolean parsing.

The rule every agent follows when it picks an error (the README's table says the same to users):

- ``ConfigError`` (6) only for values wrong in themselves: syntax, parameters that contradict each
  other, an address that is some node's primary. Pacemaker stops the resource everywhere.
- ``ArgsError`` (2) for what is wrong on this node only: a file or profile missing or unreadable
  here, an interface that does not exist here. Pacemaker tries another node.
- ``NotInstalledError`` (5) for software missing here; ``PermError`` (4) for a denied permission;
  ``GenericError`` (1) for transient trouble and for a fact that cannot be decided now.
- stop never fails with 2, 5, 6 or 7 for a problem of this node: its AWS part is best effort once
  the OS side is clean. ``Agent.main()`` enforces it (such an error of a stop handler becomes 1);
  the agents document the one stop that cannot finish without AWS (aws-eni's detach).
"""

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
