"""Facts about this instance from the instance metadata service: identity, region, interfaces."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from ipfailover.aws.imds import Imds, ImdsNotFound
from ipfailover.config.syntax import is_region
from ocf_shim import ArgsError, GenericError

_ID_RE = re.compile(r"^(i|eni|vpc|subnet)-[0-9a-f]{8,17}$")


def _checked_id(value: str, what: str) -> str:
    value = value.strip()
    if not _ID_RE.fullmatch(value):
        raise GenericError(f"instance metadata returned a malformed {what}: {value[:40]!r}")
    return value


def instance_id(imds: Imds) -> str:
    return _checked_id(imds.get("meta-data/instance-id"), "instance id")


def region(imds: Imds) -> str:
    """The region from the placement data (older IMDS only has the availability zone: the
    region and a letter), of the shape a region parameter has (params.is_region)."""
    text = (imds.get_optional("meta-data/placement/region") or "").strip()
    if is_region(text):
        return text
    az = imds.get("meta-data/placement/availability-zone").strip()
    if not (is_region(az[:-1]) and "a" <= az[-1:] <= "z"):
        raise GenericError(f"instance metadata returned a malformed availability zone: {az[:40]!r}")
    return az[:-1]


@dataclass(frozen=True)
class InterfaceFacts:
    """What IMDS knows about one of this instance's network interfaces (by MAC)."""

    mac: str
    eni_id: str
    vpc_id: str
    subnet_id: str
    vpc_cidrs: tuple[str, ...]
    subnet_cidr: Optional[str]


def eni_id_of_mac(imds: Imds, mac: str) -> str:
    try:
        text = imds.get(f"meta-data/network/interfaces/macs/{mac}/interface-id")
    except ImdsNotFound:
        raise ArgsError(
            f"no network interface of this instance has MAC {mac} (instance metadata): "
            "the interface is not an ENI of this instance"
        ) from None
    return _checked_id(text, "ENI id")


def interface_facts(imds: Imds, mac: str) -> InterfaceFacts:
    base = f"meta-data/network/interfaces/macs/{mac}/"
    blocks = imds.get_optional(base + "vpc-ipv4-cidr-blocks") or imds.get_optional(
        base + "vpc-ipv4-cidr-block"
    )
    v6 = imds.get_optional(base + "vpc-ipv6-cidr-blocks") or ""
    return InterfaceFacts(
        mac=mac,
        eni_id=eni_id_of_mac(imds, mac),
        vpc_id=_checked_id(imds.get(base + "vpc-id"), "VPC id"),
        subnet_id=_checked_id(imds.get(base + "subnet-id"), "subnet id"),
        vpc_cidrs=tuple(
            line.strip() for line in f"{blocks or ''}\n{v6}".splitlines() if line.strip()
        ),
        subnet_cidr=(imds.get_optional(base + "subnet-ipv4-cidr-block") or "").strip() or None,
    )
