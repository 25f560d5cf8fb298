"""IP address text, parsed by hand: no imports, so the agents' parameter checks stay cheap.

Accepts exactly the text that :func:`ipaddress.ip_address` accepts (Python 3.9.5 to 3.12: ASCII
digits only, no leading zeros in IPv4 octets, 1 to 4 hex digits per IPv6 group, at most one
``::``, an IPv4 tail, an IPv6 scope id after ``%``), and gives the same canonical text as its
``str()`` (for IPv6 without the scope id, which is returned on its own). Addresses are handled as
``(version, value)`` pairs: 4 or 6, and the address as an integer.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

    # version (4 or 6), value, canonical text (no scope), scope id ("" when none)
    Address = tuple[int, int, str, str]

_DIGITS = frozenset("0123456789")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_IPV4_ALL_ONES = 0xFFFFFFFF


def parse_ipv4(text: str) -> Optional[int]:
    """The value of a dotted quad (``192.0.2.1``), or None when it is not one."""
    octets = text.split(".")
    if len(octets) != 4:
        return None
    value = 0
    for octet in octets:
        if not 1 <= len(octet) <= 3 or not _DIGITS.issuperset(octet):
            return None
        if octet[0] == "0" and octet != "0":
            return None  # leading zeros: octal to some parsers, refused like inet_pton does
        number = int(octet)
        if number > 255:
            return None
        value = value << 8 | number
    return value


def _groups(parts: list[str], ipv4_tail: bool) -> Optional[list[int]]:
    """The 16-bit groups of ``parts``; the last one may be a dotted quad when ``ipv4_tail``."""
    groups: list[int] = []
    last = len(parts) - 1
    for index, part in enumerate(parts):
        if ipv4_tail and index == last and "." in part:
            value = parse_ipv4(part)
            if value is None:
                return None
            groups += [value >> 16, value & 0xFFFF]
        elif 1 <= len(part) <= 4 and _HEX_DIGITS.issuperset(part):
            groups.append(int(part, 16))
        else:
            return None
    return groups


def parse_ipv6(text: str) -> Optional[int]:
    """The value of an IPv6 address without scope id (``2001:db8::1``, ``::ffff:192.0.2.1``),
    or None when it is not one."""
    head, compressed, tail = text.partition("::")
    if compressed:
        if "::" in tail:
            return None
        high = _groups(head.split(":"), ipv4_tail=False) if head else []
        low = _groups(tail.split(":"), ipv4_tail=True) if tail else []
        if high is None or low is None or len(high) + len(low) > 7:
            return None  # "::" stands for one zero group at least
        groups = high + [0] * (8 - len(high) - len(low)) + low
    else:
        full = _groups(text.split(":"), ipv4_tail=True)
        if full is None or len(full) != 8:
            return None
        groups = full
    value = 0
    for group in groups:
        value = value << 16 | group
    return value


def format_ipv4(value: int) -> str:
    """``192.0.2.1``"""
    return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def format_ipv6(value: int) -> str:
    """RFC 5952 text: lower case, no leading zeros, the first longest run of two or more zero
    groups written as ``::``."""
    groups = [value >> shift & 0xFFFF for shift in range(112, -16, -16)]
    best_start, best_length = 0, 0
    start = 0
    for index, group in enumerate(groups):
        if group:
            start = index + 1
        elif index + 1 - start > best_length:
            best_start, best_length = start, index + 1 - start
    texts = [f"{group:x}" for group in groups]
    if best_length < 2:
        return ":".join(texts)
    end = best_start + best_length
    return ":".join(texts[:best_start]) + "::" + ":".join(texts[end:])


def parse_address(text: str) -> Optional[Address]:
    """``(version, value, canonical text, scope id)`` of an IPv4 or IPv6 address, or None when
    :func:`ipaddress.ip_address` would refuse ``text``. Only IPv6 has a scope id (``fe80::1%eth0``);
    the canonical text never includes it."""
    value = parse_ipv4(text)
    if value is not None:
        return 4, value, format_ipv4(value), ""
    if "/" in text:
        return None
    address, percent, scope = text.partition("%")
    if percent and (not scope or "%" in scope):
        return None
    value = parse_ipv6(address)
    if value is None:
        return None
    return 6, value, format_ipv6(value), scope


def is_unspecified(version: int, value: int) -> bool:
    """``0.0.0.0`` or ``::``"""
    return value == 0


def is_loopback(version: int, value: int) -> bool:
    """``127.0.0.0/8`` or ``::1``"""
    return value >> 24 == 127 if version == 4 else value == 1


def is_multicast(version: int, value: int) -> bool:
    """``224.0.0.0/4`` or ``ff00::/8``"""
    return value >> 28 == 0xE if version == 4 else value >> 120 == 0xFF


def is_link_local(version: int, value: int) -> bool:
    """``169.254.0.0/16`` or ``fe80::/10``"""
    return value >> 16 == 0xA9FE if version == 4 else value >> 118 == 0xFE80 >> 6


def ipv4_mapped(version: int, value: int) -> Optional[int]:
    """The IPv4 address in an IPv4-mapped IPv6 address (``::ffff:0:0/96``), else None."""
    if version == 6 and value >> 32 == 0xFFFF:
        return value & _IPV4_ALL_ONES
    return None


def is_broadcast(version: int, value: int) -> bool:
    """``255.255.255.255``"""
    return version == 4 and value == _IPV4_ALL_ONES
