"""Text that reaches a log line or an exit reason: cleaned of controls, cut short, credentials
hidden. A leaf: the agent and its watchdog both use it, and it imports neither.
"""

from __future__ import annotations

MAX_REASON_LEN = 512
EXIT_REASON_PREFIX = "ocf-exit-reason:"
SECRET_WORDS = ("secret", "token", "password", "key")

# C0 and C1 controls (newline included), DEL and Unicode line separators: none of them belongs in
# a parameter value or a log line. Lone surrogates (what undecodable bytes in the environment turn
# into) neither; they are found by failing to encode, which needs no 2048-entry table.
_CONTROL = dict.fromkeys([*range(32), *range(127, 160), 8232, 8233], " ")


def encodable(text: str) -> bool:
    """False when ``text`` holds a lone surrogate (what undecodable bytes turn into)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean(text: str) -> str:
    """``text`` with every control character and lone surrogate turned into a space."""
    text = text.translate(_CONTROL)
    if not encodable(text):
        text = "".join(" " if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def one_line(text: str, limit: int = MAX_REASON_LEN) -> str:
    """Make ``text`` safe as one log or exit-reason line: controls become spaces, length capped."""
    return clean(text).strip()[:limit]


def show(value: object, limit: int = 64) -> str:
    """A short, escaped rendering of an untrusted value for messages."""
    text = value if isinstance(value, str) else str(value)
    shown = repr(text[:limit])
    return shown + "..." if len(text) > limit else shown


def redact(name: str, value: object) -> str:
    """Render a parameter value for the log, hiding anything that may be a credential: the whole
    value when the parameter's name says so, the user information of a URL in any value (an
    authenticated proxy, ``http://user:password@host:3128``)."""
    if value is None or value == "":
        return "<unset>"
    lowered = name.lower()
    if any(word in lowered for word in SECRET_WORDS):
        return "<redacted>"
    return show(_hide_url_userinfo(value if isinstance(value, str) else str(value)))


def _hide_url_userinfo(text: str) -> str:
    """``text`` with the ``user:password@`` of a URL (``scheme://user:password@host``) as
    ``***@``."""
    scheme, sep, rest = text.partition("://")
    end = min((rest.find(c) for c in "/?#" if c in rest), default=len(rest))
    at = rest.rfind("@", 0, end)
    return f"{scheme}{sep}***{rest[at:]}" if sep and at >= 0 else text
