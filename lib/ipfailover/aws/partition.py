"""AWS partitions as this node's botocore knows them: a region's partition, ARN prefix, DNS suffix.

botocore ships the table: ``data/partitions.json`` (botocore >= 1.28, the one its endpoint rules
read; under a millisecond to load) and ``data/endpoints.json`` (every botocore; over 1 MB, used
only when the first is missing). The rule is botocore's own: the partition that lists the region,
else the first whose ``regionRegex`` matches it.

For a region that matches no partition botocore guesses the ``aws`` partition and its
``amazonaws.com`` endpoints. That guess is wrong for every region of a partition this botocore
predates, such as the European Sovereign Cloud (``eusc-de-east-1``, ``amazonaws.eu``) on RHEL 9's
botocore: requests would go to a host of another partition. So an unknown region needs
``endpoint_url`` (and ``sts_endpoint_url`` with ``role_arn``), and without them the action fails
with 5 ("not installed"): what is missing is this node's knowledge, not a wrong value (another
node with a newer botocore runs the resource as configured), and installing a newer botocore is
one of the two fixes. A ``role_arn`` of another partition than the region's is a contradiction
between values, wrong on every node: 6.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import NamedTuple, Optional

from ipfailover.aws import skip_unused_imports
from ipfailover.config.params import AwsSettings
from ipfailover.config.syntax import arn_partition, quote
from ocf_shim import ConfigError, NotInstalledError


class Partition(NamedTuple):
    """One AWS partition: ``aws``, ``aws-cn``, ``aws-us-gov``, ``aws-iso-b``, ``aws-eusc``..."""

    name: str
    dns_suffix: str  # amazonaws.com, amazonaws.com.cn, amazonaws.eu, ...

    @property
    def arn_prefix(self) -> str:
        """``arn:aws-cn:`` (the service, region, account and resource follow)."""
        return f"arn:{self.name}:"


class _Entry(NamedTuple):
    partition: Partition
    regions: frozenset[str]
    region_regex: str


@lru_cache(maxsize=1)
def _table() -> tuple[_Entry, ...]:
    """botocore's partitions, in botocore's order."""
    skip_unused_imports(os.environ)
    from botocore.exceptions import DataNotFoundError
    from botocore.loaders import create_loader

    loader = create_loader()
    try:
        data = loader.load_data("partitions")
        return tuple(
            _Entry(
                Partition(str(p["id"]), str(p["outputs"]["dnsSuffix"])),
                frozenset(p.get("regions", {})),
                str(p.get("regionRegex", "")),
            )
            for p in data["partitions"]
        )
    except DataNotFoundError:  # botocore before 1.28
        data = loader.load_data("endpoints")
        return tuple(
            _Entry(
                Partition(str(p["partition"]), str(p["dnsSuffix"])),
                frozenset(p.get("regions", {})),
                str(p.get("regionRegex", "")),
            )
            for p in data["partitions"]
        )


def partition_of(region: str) -> Optional[Partition]:
    """The partition this node's botocore puts ``region`` in, or None when it knows none."""
    from ipfailover.aws.errors import guarded

    table = guarded("reading botocore's partitions", _table)
    for entry in table:
        if region in entry.regions:
            return entry.partition
    for entry in table:
        if entry.region_regex and re.match(entry.region_regex, region):
            return entry.partition
    return None


def check_region(region: str, settings: AwsSettings) -> Optional[Partition]:
    """The partition of ``region`` (a parameter, or what the instance metadata says), checked
    against ``role_arn``; None when botocore does not know the region and the endpoints are
    given. Raises NotInstalledError (5) or ConfigError (6): see the module's docstring."""
    partition = partition_of(region)
    if partition is None:
        needed = ["endpoint_url"] if not settings.endpoint_url else []
        if settings.role_arn and not settings.sts_endpoint_url:
            needed.append("sts_endpoint_url")
        if needed:
            import botocore

            raise NotInstalledError(
                f"region {quote(region)} is not known to the botocore {botocore.__version__} "
                "installed on this node, so its partition and endpoints cannot be derived: "
                f"set {' and '.join(needed)} to the region's endpoint, or install a botocore "
                "that knows the region"
            )
        return None
    if settings.role_arn and arn_partition(settings.role_arn) != partition.name:
        raise ConfigError(
            f"role_arn {quote(settings.role_arn)} is in the partition "
            f"{quote(arn_partition(settings.role_arn))}, but region {quote(region)} is in "
            f"{quote(partition.name)}: a role can only be assumed in its own partition"
        )
    return partition
