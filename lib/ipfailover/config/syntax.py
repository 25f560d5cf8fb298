"""Pure validators of parameter values: addresses, ids, tags, interface names, URLs, regions, ARNs.

Validators raise :class:`ocf_shim.ConfigError` (exit 6) with a reason that names the parameter
and says what a good value looks like. Hostile values are quoted with ``repr`` and cut short,
so nothing a user typed can forge log lines or exit reasons.

Written with :mod:`re` and :mod:`ipaddress`, imported when a value is checked (not for
meta-data). Where :mod:`ipaddress` differs between Python versions, the rule here is one for
all of them (tests/test_params_syntax.py pins each): IPv4 octets with a leading zero are refused
(Python 3.9.0-3.9.4 read them as decimal); an IPv4-mapped IPv6 address is shown as
``::ffff:102:304`` and is none of unspecified, loopback, multicast or link-local (Python 3.13
shows ``::ffff:1.2.3.4`` and classifies it by its IPv4 address); no decision rests on
``is_private`` or ``is_global``.

They replaced a hand-written parser that saved a few milliseconds on no hot path. The syntax-only
check (``validate-all`` at ``OCF_CHECK_LEVEL=0``, valid parameters; CPU time of the whole
process, median of 15 runs interleaved with a bare ``python3 -c pass`` of 25.5 ms; Debian's
Python 3.11 on 2 busy cores) went from 27-31 ms with the hand-written parser to 36-38 ms with
these (1.4-1.5 times a bare start; the limit is 2.5).
"""

from __future__ import annotations

from ocf_shim import ConfigError, redact

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from typing import Optional, Union

    IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

_HEX_DIGITS = frozenset("0123456789abcdef")
PATH_MAX = 4096  # the kernel's limit for a path, its final NUL included
IFNAMSIZ = 16  # the kernel's buffer for an interface name, its final NUL included
REGION_MAX = 63  # a region name is one label of the endpoint's host name

# dev_valid_name() of net/core/dev.c, on the UTF-8 bytes: no "/", ":" or byte the kernel's
# isspace() takes (lib/ctype.c: \t \n \v \f \r, space and 0xa0, so "à", UTF-8 c3 a0, is refused
# too), 1 to 15 bytes, not . or ..
_INTERFACE = rb"(?!\.\.?\Z)[^/:\t\n\v\f\r \xa0]{1,15}\Z"
_REGION = r"[a-z]{2,}(?:-[a-z]+)+-[0-9]{1,3}"
# IAM: the path is / or /.../ of printable ASCII, the name 1-64 of letters, digits and _+=,.@-
_ROLE_ARN = (
    r"arn:aws(?:-[a-z]+)*:iam::[0-9]{12}:role"
    r"(?P<path>/(?:[\x21-\x7e]+/)?)[A-Za-z0-9_+=,.@-]{1,64}"
)
# botocore.utils.is_valid_endpoint_url's host name (ASCII), at most 255 characters
_HOST = r"(?:(?!-)[A-Za-z0-9-]{1,63}(?<!-)\.)*(?!-)[A-Za-z0-9-]{1,63}(?<!-)\.?"
# http(s)://[user:password@]host[:port][/path]: RFC 3986 userinfo (unreserved, sub-delims, ":"
# and %XX), a host name or an IPv6 address in brackets, ASCII only.
_URL = (
    rf"https?://(?P<userinfo>(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{{2}})+@)?"
    rf"(?P<host>{_HOST}|\[[0-9A-Fa-f:.]{{2,45}}\])"
    r"(?::(?P<port>[0-9]{1,5}))?(?:/[A-Za-z0-9_.~%/-]*)?"
)
# Key: 1-128 characters, no "=" or ",", not starting with a blank; value: up to 256, no ","
# (EC2 allows "," in both, but "a=b,c=d" reads as two tags: refused rather than guessed).
_TAG = r"([^=\s,][^=,]{0,127})=([^,]{0,256})"


def quote(value: object, limit: int = 64) -> str:
    """A short, single-line rendering of a user's value for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def parse_address(text: str) -> Optional[IPAddress]:
    """An IPv4 or IPv6 address (an IPv6 one may carry a ``%zone``), or None; the same on every
    Python: octets with a leading zero are refused."""
    import ipaddress

    dotted = text.partition("%")[0].rpartition(":")[2]
    if "." in dotted and any(len(octet) > 1 and octet[0] == "0" for octet in dotted.split(".")):
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def address_text(address: IPAddress) -> str:
    """The canonical text of ``address`` without its zone, the same on every Python (3.13
    writes an IPv4-mapped address with its IPv4 address in dotted form; earlier ones do not)."""
    if address.version == 6:
        mapped = address.ipv4_mapped
        if mapped is not None:
            value = int(mapped)
            return f"::ffff:{value >> 16:x}:{value & 0xFFFF:x}"
    return str(address).partition("%")[0]


def is_mapped(address: IPAddress) -> bool:
    return address.version == 6 and address.ipv4_mapped is not None


def parse_ip(name: str, value: str) -> str:
    """One IPv4 or IPv6 address (no prefix, no zone), as its canonical text."""
    address = parse_address(value.strip())
    if address is None:
        raise ConfigError(f"parameter {name!r}: {quote(value)} is not an IPv4 or IPv6 address")
    text = address_text(address)
    scope = address.scope_id if address.version == 6 else None
    shown = f"{text}%{scope}" if scope else text
    # An IPv4-mapped address is none of these (as before Python 3.13): it is refused below.
    plain = not is_mapped(address)
    if plain and (address.is_unspecified or address.is_multicast or address.is_loopback):
        raise ConfigError(f"parameter {name!r}: {shown} cannot be a service address")
    if plain and address.is_link_local:
        raise ConfigError(f"parameter {name!r}: {shown} is link-local; use a routable address")
    if scope:
        raise ConfigError(f"parameter {name!r}: {quote(value)} has a zone; give the address alone")
    if not plain:
        raise ConfigError(
            f"parameter {name!r}: {text} is IPv4-mapped; give the IPv4 address itself"
        )
    if address.version == 4 and int(address) == 0xFFFFFFFF:
        raise ConfigError(f"parameter {name!r}: {text} is the broadcast address")
    return text


def address_version(text: str) -> int:
    """4 or 6: the version of an address such as :func:`parse_ip` returns."""
    address = parse_address(text)
    if address is None:
        raise ValueError(f"{text!r} is not an IP address")
    return address.version


def ip_object(text: str) -> IPAddress:
    """The :mod:`ipaddress` object of an address."""
    import ipaddress

    return ipaddress.ip_address(text)


def parse_id(name: str, value: str, prefix: str) -> str:
    """An AWS resource id such as ``rtb-0123abcd`` (8 or 17 hex digits after the prefix).

    Checked without ``re``: ids are read at every monitor, whose CPU this import would add to.
    """
    text = value.strip()
    digits = text[len(prefix) + 1 :] if text.startswith(f"{prefix}-") else ""
    if len(digits) not in (8, 17) or not set(digits) <= _HEX_DIGITS:
        raise ConfigError(
            f"parameter {name!r}: {quote(value)} is not a {prefix}- id "
            f"(expected {prefix}- followed by 8 or 17 hexadecimal digits)"
        )
    return text


# AWS's default quota of route tables per VPC (a bound against runaway input, not a tuning
# knob: 100 tables cost about 10 s of the account's ReplaceRoute bucket, see the README).
MAX_IDS = 200


def parse_id_list(name: str, value: str, prefix: str) -> tuple[str, ...]:
    """A comma (or blank) separated list of ids, duplicates removed, order kept."""
    items = value.replace(",", " ").split()
    if not items:
        raise ConfigError(f"parameter {name!r} is empty")
    if len(items) > MAX_IDS:
        raise ConfigError(
            f"parameter {name!r} lists {len(items)} ids; at most {MAX_IDS} are supported"
        )
    return tuple(dict.fromkeys(parse_id(name, item, prefix) for item in items))


def parse_tag(name: str, value: str) -> tuple[str, str]:
    """``Key=Value`` as used to find resources by tag.

    Keys may begin with ``aws:``: only AWS may set such tags, but anyone may look them up, and
    CloudFormation tags every route table it makes that way (``aws:cloudformation:stack-name``).
    """
    import re

    match = re.fullmatch(_TAG, value.strip())
    if not match:
        raise ConfigError(f"parameter {name!r}: {quote(value)} is not of the form Key=Value")
    return match.group(1).strip(), match.group(2).strip()


def parse_interface(name: str, value: str, label_parameter: Optional[str] = None) -> str:
    """A Linux interface name, exactly as the kernel's ``dev_valid_name()`` (net/core/dev.c)
    takes one: 1 to 15 bytes (IFNAMSIZ), not ``.`` or ``..``, no ``/``, ``:`` or blank byte;
    any other byte is allowed (the shim refuses control characters in every parameter first).

    ``eth0:1`` is refused with its own reason: it is an alias label (IPaddr2, ifconfig), not an
    interface. ``label_parameter`` names the parameter that takes such a label, if the agent
    has one. Altnames (``ip link property add altname``, up to 127 bytes) are not looked up: the
    agents find the link by IFLA_IFNAME, the name ``ip addr``, labels and every other agent of
    the cluster use, and a label must begin with it.
    """
    raw = name_bytes(value)
    device = value.partition(":")[0]
    if ":" in value and _is_kernel_name(name_bytes(device)):
        hint = f" and {label_parameter}={quote(value)}" if label_parameter else ""
        raise ConfigError(
            f"parameter {name!r}: {quote(value)} is an alias label (IPaddr2, ifconfig), not an "
            f"interface: set {name}={quote(device)}{hint}"
        )
    if len(raw) >= IFNAMSIZ:
        raise ConfigError(
            f"parameter {name!r}: {quote(value)} is {len(raw)} bytes, but a Linux interface name "
            f"has at most {IFNAMSIZ - 1}; altnames (longer names added with 'ip link property "
            "add altname') are not looked up: give the name 'ip -brief link' shows"
        )
    if not _is_kernel_name(raw):
        raise ConfigError(
            f"parameter {name!r}: {quote(value)} is not a Linux interface name (1-15 bytes, no "
            "'/', ':' or blanks, not '.' or '..')"
        )
    return value


def name_bytes(value: str) -> bytes:
    """The bytes the kernel would get (undecodable bytes of the environment as they were)."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return b"/"  # text no environment can carry: refused as a name


def _is_kernel_name(raw: bytes) -> bool:
    """``dev_valid_name()`` of net/core/dev.c."""
    import re

    return re.match(_INTERFACE, raw) is not None


def parse_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    text = value.strip().lower()
    if text not in choices:
        raise ConfigError(f"parameter {name!r}: {quote(value)} is not one of {', '.join(choices)}")
    return text


def _is_url(text: str, userinfo: bool = False) -> bool:
    """``http(s)://`` host (name, or IPv6 address in brackets), ``:port`` (1-65535), ``/path``;
    with ``userinfo``, ``user:password@`` before the host too."""
    import re

    match = re.fullmatch(_URL, text)
    if match is None or (match.group("userinfo") and not userinfo):
        return False
    port, host = match.group("port"), match.group("host")
    if (port is not None and not 1 <= int(port) <= 65535) or len(host) > 255:
        return False
    if host.startswith("["):
        address = parse_address(host[1:-1])
        return address is not None and address.version == 6
    return True


def parse_url(name: str, value: str) -> str:
    """An http(s) URL: host name or IP address, optional port (1-65535) and path; ASCII only.
    Messages never show the password of a ``user:password@`` (refused here)."""
    text = value.strip()
    if not _is_url(text):
        raise ConfigError(f"parameter {name!r}: {redact(name, value)} is not an http(s) URL")
    return text


def parse_proxy_url(name: str, value: str) -> str:
    """An http(s) URL as :func:`parse_url`, with ``user:password@`` allowed (an authenticated
    proxy: botocore sends them as Basic proxy authorization, percent-decoded, so they must meet
    :func:`credentials_problem` once decoded). Messages never show the password."""
    text = value.strip()
    if not _is_url(text, userinfo=True):
        raise ConfigError(
            f"parameter {name!r}: {redact(name, value)} is not an http(s) URL "
            "(http://[user:password@]host[:port]; '@', ':' or '/' in a password as %40, %3A, %2F)"
        )
    if has_userinfo(text):
        from urllib.parse import unquote

        userinfo = text.partition("://")[2].partition("/")[0].rpartition("@")[0]
        user, colon, password = userinfo.partition(":")
        problem = credentials_problem(unquote(user), unquote(password) if colon else "")
        if problem:
            raise ConfigError(f"parameter {name!r}: {redact(name, value)}: {problem}")
    return text


def credentials_problem(user: str, password: str) -> Optional[str]:
    """What makes ``user`` and ``password`` unusable as a proxy's Basic credentials through
    botocore, or None: it sends them only when both are non-empty, encodes them as ASCII (any
    other character fails every request), and a ``:`` in the user would move the rest into the
    password (RFC 7617)."""
    if not user or not password:
        return "the proxy's user and password must both be given (user:password)"
    if ":" in user:
        return "the proxy's user name contains ':', which Basic authentication cannot carry"
    if not (user + password).isascii() or not (user + password).isprintable():
        return (
            "the proxy's user and password must be printable ASCII (botocore sends them as ASCII)"
        )
    return None


def has_userinfo(url: str) -> bool:
    """Whether a URL :func:`parse_proxy_url` took carries ``user:password@``."""
    authority = url.partition("://")[2].partition("/")[0]
    return "@" in authority


def parse_int_range(name: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ConfigError(f"parameter {name!r}: {value} is outside {low}..{high}")
    return value


def is_integer_text(text: str) -> bool:
    """An optional sign and 1 to 12 ASCII digits."""
    import re

    return re.fullmatch(r"[+-]?[0-9]{1,12}", text) is not None


def is_region(text: str) -> bool:
    """The generic shape of an AWS region name: ``area-name-N`` with any number of name parts
    (``eu-central-1``, ``us-gov-west-1``, ``us-isob-east-1``, ``eusc-de-east-1``): ASCII
    lower-case letters, digits only in the final number, at most 63 characters. Which regions
    exist, and in which partition, is botocore's knowledge (:mod:`ipfailover.aws.partition`)."""
    import re

    return len(text) <= REGION_MAX and re.fullmatch(_REGION, text) is not None


def arn_partition(arn: str) -> str:
    """The partition of an ARN: ``aws-cn`` of ``arn:aws-cn:iam::...``."""
    return arn.split(":", 2)[1]


def is_role_arn(text: str) -> bool:
    """``arn:<partition>:iam::<12 digits>:role/<path><name>``, with IAM's rules: the path is
    ``/`` or ``/.../`` of printable ASCII (at most 512 characters), the name 1-64 characters of
    letters, digits and ``_+=,.@-``; the partition ``aws`` or ``aws-`` and lower-case words."""
    import re

    match = re.fullmatch(_ROLE_ARN, text)
    return match is not None and len(match.group("path")) <= 512
