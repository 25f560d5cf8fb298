"""A trimmed EC2 service model: only the operations the agents call, so clients load fast.

botocore parses the whole EC2 model (hundreds of operations, megabytes of JSON) when a client is
created: about 0.15 s of every action. A trimmed model holds only our operations and the shapes
they reference. It is keyed by the botocore version it was made from *and* by a short hash of
:data:`OPERATIONS` (the directory ``botocore-<version>-ops-<hash>``), so a model made for
another botocore or for older code (fewer operations) is never picked.

"Slower, never wrong": :func:`attach` uses a model only after checking it (it parses, it has
every operation and every shape they reach); any failure there, or later when botocore builds
the client from it (``ipfailover.aws.client.connect``), is a debug record and botocore's own
model is used.

Where the model comes from, first match wins:

1. the package's ``_models`` directory, written at build time (``make models``, the RPM's
   ``%install``) for the build host's botocore;
2. a cache under ``$HA_RSCTMP`` (``/run/resource-agents``), built lazily at run time.

The lazy build (chosen over an RPM file trigger on botocore's data): when an action had to use
botocore's full model, it writes the trimmed one into the cache *after its own work* and only
when at least 3 s of its timeout are left (``Api.finish``). It reuses the full model botocore has
just parsed, so it costs the trimming and writing only: 3-6 ms measured (botocore 1.29 and 1.44),
against 0.12-0.17 s that every action spends on the full model (0.03-0.05 s on the trimmed one);
once per botocore version and boot (the cache is on tmpfs, so stale versions vanish at reboot).
Checking a model before use costs under 1 ms. It is written atomically
(a temporary file made in the target directory, then ``os.replace``), so concurrent agents and a
crash leave either no model or a whole one. A file trigger would also follow distribution
updates of botocore, but it runs inside the package transaction, must never fail it, must be
repeated for every Python and botocore package name of every distribution, and the files it
writes must be owned by the package (``%ghost``) per version: more moving parts for the same
result, and it would do nothing for a botocore installed with pip.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import tempfile
from typing import TYPE_CHECKING, Any, Optional

from ocf_shim import get_log

if TYPE_CHECKING:
    from botocore.session import Session

log = get_log("ipfailover")

# Every EC2 operation of ipfailover.aws.ec2 (a test keeps this list and that module in step).
OPERATIONS = (
    "AssignIpv6Addresses",
    "AssignPrivateIpAddresses",
    "AssociateAddress",
    "AttachNetworkInterface",
    "CreateRoute",
    "DescribeAddresses",
    "DescribeNetworkInterfaces",
    "DescribeRouteTables",
    "DescribeSubnets",
    "DescribeVpcs",
    "DetachNetworkInterface",
    "DisassociateAddress",
    "ModifyNetworkInterfaceAttribute",
    "ReplaceRoute",
    "UnassignIpv6Addresses",
    "UnassignPrivateIpAddresses",
)
# The package-level ipfailover/_models (where `make models` and the RPM build write them).
MAX_MODEL_BYTES = 32 << 20  # the trimmed model is about 0.1 MB; botocore's whole one ~5 MB
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK
MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_models")
CACHE_SUBDIR = "ipfailover-models"  # under HA_RSCTMP
# Which operations a model holds: part of its directory name.
OPERATIONS_KEY = hashlib.sha256("\n".join(sorted(OPERATIONS)).encode()).hexdigest()[:10]


def _reachable(model: dict[str, Any], operations: tuple[str, ...]) -> dict[str, Any]:
    """The shapes ``operations`` reach; KeyError/ValueError/TypeError when the model lacks one."""
    missing = [name for name in operations if name not in model["operations"]]
    if missing:
        raise ValueError(f"the EC2 model has no {', '.join(missing)}")
    shapes: dict[str, Any] = {}
    pending: list[str] = []
    for name in operations:
        op = model["operations"][name]
        pending += [op[key]["shape"] for key in ("input", "output") if key in op]
        pending += [error["shape"] for error in op.get("errors", [])]
    while pending:
        name = pending.pop()
        if name in shapes:
            continue
        shape = model["shapes"][name]
        shapes[name] = shape
        pending += [shape[key]["shape"] for key in ("member", "key", "value") if key in shape]
        pending += [member["shape"] for member in shape.get("members", {}).values()]
    return shapes


def trim(model: dict[str, Any], operations: tuple[str, ...] = OPERATIONS) -> dict[str, Any]:
    """``model`` with only ``operations``, the shapes they reach, and no documentation."""
    shapes = _reachable(model, operations)
    ops = {name: model["operations"][name] for name in operations}
    trimmed: dict[str, Any] = _undocumented({**model, "operations": ops, "shapes": shapes})
    return trimmed


def _undocumented(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _undocumented(v) for k, v in value.items() if k != "documentation"}
    if isinstance(value, list):
        return [_undocumented(v) for v in value]
    return value


def model_key(botocore_version: str) -> str:
    return f"botocore-{botocore_version}-ops-{OPERATIONS_KEY}"


def version_dir(botocore_version: str, root: str = MODELS_DIR) -> str:
    return os.path.join(root, model_key(botocore_version))


def cache_root(cache_dir: str) -> str:
    return os.path.join(cache_dir, CACHE_SUBDIR)


def search_path(cache_dir: Optional[str] = None) -> Optional[str]:
    """The data directory of a usable trimmed model for the installed botocore, if any."""
    import botocore

    roots = [MODELS_DIR] + ([cache_root(cache_dir)] if cache_dir else [])
    for root in roots:
        path = version_dir(botocore.__version__, root)
        if os.path.isdir(os.path.join(path, "ec2")) and usable(path):
            return path
    return None


def usable(path: str) -> bool:
    """True when the trimmed model under ``path`` parses and serves every operation."""
    try:
        [api_version] = os.listdir(os.path.join(path, "ec2"))
        # Only a regular file of sane size: a FIFO or a device there would block botocore's read.
        fd = os.open(os.path.join(path, "ec2", api_version, "service-2.json"), _READ_FLAGS)
        with os.fdopen(fd, "rb") as stream:
            info = os.fstat(stream.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_MODEL_BYTES:
                raise ValueError("not a regular file of at most 32 MiB")
            model = json.load(stream)
        _reachable(model, OPERATIONS)
    except Exception as exc:  # noqa: BLE001 - any failure: botocore's own model instead
        log.debug("trimmed EC2 model %s not used: %s: %s", path, type(exc).__name__, exc)
        return False
    return True


def attach(session: Session, cache_dir: Optional[str] = None) -> Optional[str]:
    """Put a usable trimmed model first in ``session``'s search path; the path, or None."""
    path = search_path(cache_dir)
    if path is not None:
        session.get_component("data_loader").search_paths.insert(0, path)
    return path


def detach(session: Session) -> None:
    """Back to botocore's own model: a fresh loader (the old one may cache what it read)."""
    from botocore.loaders import create_loader

    session.register_component(
        "data_loader", create_loader(session.get_config_variable("data_path"))
    )


def build(session: Session, cache_dir: str) -> str:
    """Write the trimmed model into the cache, from the full model ``session`` has loaded."""
    import botocore

    loader = session.get_component("data_loader")
    api_version = loader.determine_latest_version("ec2", "service-2")
    # The same arguments as botocore's client creator: its cached result, not a second parse.
    model = loader.load_service_model("ec2", "service-2", api_version=None)
    path = write(model, botocore.__version__, api_version, cache_root(cache_dir))
    log.debug("wrote the trimmed EC2 model %s", path)
    return path


def write(model: dict[str, Any], botocore_version: str, api_version: str, root: str) -> str:
    """Trim ``model`` and write it atomically under ``root``; returns the file written."""
    directory = os.path.join(version_dir(botocore_version, root), "ec2", api_version)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    path = os.path.join(directory, "service-2.json")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".service-2.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(trim(model), out, separators=(",", ":"), sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def generate(target_root: str = MODELS_DIR) -> str:
    """Write the trimmed model for the installed botocore; returns the file written."""
    import botocore
    import botocore.session

    loader = botocore.session.get_session().get_component("data_loader")
    api_version = loader.determine_latest_version("ec2", "service-2")
    model = loader.load_service_model("ec2", "service-2", api_version)
    return write(model, botocore.__version__, api_version, target_root)


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else MODELS_DIR
    print(generate(target))
