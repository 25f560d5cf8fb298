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
    authenticated proxy, ``http://user:password@host:3128``), even when the value is not a
    valid URL (no scheme, an unencoded ``/`` or ``@`` in the password)."""
    if value is None or value == "":
        return "<unset>"
    lowered = name.lower()
    if any(word in lowered for word in SECRET_WORDS):
        return "<redacted>"
    return show(_hide_url_userinfo(value if isinstance(value, str) else str(value)))


def _hide_url_userinfo(text: str) -> str:
    """``text`` with everything between ``scheme://`` (or the start) and the last ``@`` as
    ``***``: ``user:password@`` of a URL, whatever characters the password holds. Without a
    scheme, only when a ``:`` comes before the ``@`` (``user:password@host``, not ``a@b``)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    at = rest.rfind("@")
    if at < 0 or (not sep and ":" not in rest[:at]):
        return text
    return f"{scheme}{sep}***{rest[at:]}"


def hide_userinfo(text: str) -> str:
    """``text`` (a log record, an exit reason) with the user information of every URL in it
    shown as ``***@``: ``scheme://`` then anything up to the last ``@`` before a blank or a
    quote. The log and the exit reason pass every message through it, whoever wrote the
    message (our reasons, a library's exception text), so no proxy password gets out."""
    if "@" not in text or "://" not in text:
        return text
    import re

    return re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s\"'<>`]*@", r"\1***@", text)
