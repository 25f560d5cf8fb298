"""aws-eni's record in HA_RSCTMP (see ipfailover.host.record for the safe file handling).

What start configured, so that monitor (monitor_api=false, or EC2 unreachable) and stop (EC2
unreachable) know the ENI's MAC and addresses without asking EC2. Per ENI and instance, in the
resource agents' runtime directory (tmpfs: gone after a reboot, as the OS configuration is).
"""

from __future__ import annotations

import os

from ipfailover.eni.declaration import NAME
from ipfailover.eni.os_plan import EniFacts
from ocf_shim import Context, GenericError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional


def record_path(environ: Mapping[str, str], eni_id: str, instance_id: str) -> str:
    from ipfailover.host import record

    return record.path_in(environ, f"{NAME}-{eni_id}-{instance_id}.json")


def state_dir(ctx: Context) -> str:
    from ipfailover.host import record

    return record.state_dir(ctx.environ)


def record_names(ctx: Context, eni_id: str) -> list[str]:
    from ipfailover.host import record

    return record.names(ctx.environ, f"{NAME}-{eni_id}-")


def any_record(environ: Mapping[str, str], eni_id: str) -> Optional[EniFacts]:
    """The record of this ENI whatever the instance, for when this instance's id is unknown
    (metadata service unreachable). The directory is the node's own (tmpfs), so there is normally
    at most one; when usable records disagree about the ENI's MAC or addresses, no one of them
    can be trusted over the others: GenericError (monitor then says "cannot tell", never 7)."""
    from ipfailover.host import record

    found = {}
    for path in record.names(environ, f"{NAME}-{eni_id}-"):
        facts = load_record(path, eni_id)
        if facts is not None:
            found[path] = facts
    kinds = {(f.mac, frozenset(f.ips)) for f in found.values()}
    if len(kinds) > 1:
        raise GenericError(
            f"the records of {eni_id} in {record.state_dir(environ)} disagree "
            f"({', '.join(sorted(os.path.basename(p) for p in found))}) and this instance's id "
            "is unknown (instance metadata unreachable): cannot tell which describes this node; "
            "remove the records of other instances"
        )
    return next(iter(found.values()), None)


def load_record(path: str, eni_id: Optional[str] = None) -> Optional[EniFacts]:
    """The facts start recorded at ``path``; None (with a warning) when absent or unusable, or
    when the record is not about ``eni_id``."""
    from ipfailover.host import record

    data = record.read(path)
    if data is None:
        return None
    try:
        facts = EniFacts.from_json(data)
    except ValueError as exc:
        record.ignored(path, str(exc))
        return None
    if eni_id is not None and facts.eni_id != eni_id:
        record.ignored(path, f"it is about {facts.eni_id[:40]!r}, not {eni_id}")
        return None
    return facts


def save_record(path: str, facts: EniFacts, instance_id: str) -> None:
    """Not fatal when it fails (a warning): monitor with the EC2 check does not need it."""
    from ipfailover.host import record

    record.write(path, facts.to_json(instance_id))


def remove_record(path: str) -> None:
    from ipfailover.host import record

    record.remove(path)
