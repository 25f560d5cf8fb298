"""A trimmed EC2 service model: only the operations the agents call, so clients load fast.

botocore parses the whole EC2 model (hundreds of operations, megabytes of JSON) when a client is
created: about 0.15 s of every action. ``python3 -m ipfailover.botomodel`` (run by ``make`` and
by the RPM build) writes a model with only our operations and the shapes they reference, keyed by
the installed botocore's version. At run time :func:`search_path` returns that directory only when
it was made from the very botocore that is installed; otherwise (missing, or botocore was updated
since) the agents use botocore's own model: slower, never wrong.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any, Optional

# Every EC2 operation of ipfailover.ec2 (a test keeps this list and that module in step).
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
MODELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_models")


def trim(model: dict[str, Any], operations: tuple[str, ...] = OPERATIONS) -> dict[str, Any]:
    """``model`` with only ``operations``, the shapes they reach, and no documentation."""
    missing = [name for name in operations if name not in model["operations"]]
    if missing:
        raise ValueError(f"the EC2 model has no {', '.join(missing)}")
    shapes: dict[str, Any] = {}

    def keep(name: str) -> None:
        if name in shapes:
            return
        shape = model["shapes"][name]
        shapes[name] = shape
        for key in ("member", "key", "value"):
            if key in shape:
                keep(shape[key]["shape"])
        for member in shape.get("members", {}).values():
            keep(member["shape"])

    ops = {name: model["operations"][name] for name in operations}
    for op in ops.values():
        for key in ("input", "output"):
            if key in op:
                keep(op[key]["shape"])
        for error in op.get("errors", []):
            keep(error["shape"])
    trimmed: dict[str, Any] = _undocumented({**model, "operations": ops, "shapes": shapes})
    return trimmed


def _undocumented(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _undocumented(v) for k, v in value.items() if k != "documentation"}
    if isinstance(value, list):
        return [_undocumented(v) for v in value]
    return value


def version_dir(botocore_version: str) -> str:
    return os.path.join(MODELS_DIR, f"botocore-{botocore_version}")


def search_path() -> Optional[str]:
    """The trimmed model's data directory for the installed botocore, if it was generated."""
    import botocore

    path = version_dir(botocore.__version__)
    return path if os.path.isdir(os.path.join(path, "ec2")) else None


def generate(target_root: str = MODELS_DIR) -> str:
    """Write the trimmed model for the installed botocore; returns the file written."""
    import botocore
    import botocore.session

    loader = botocore.session.get_session().get_component("data_loader")
    api_version = loader.determine_latest_version("ec2", "service-2")
    model = loader.load_service_model("ec2", "service-2", api_version)
    directory = os.path.join(target_root, f"botocore-{botocore.__version__}", "ec2", api_version)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "service-2.json")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".service-2.")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(trim(model), out, separators=(",", ":"), sort_keys=True)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else MODELS_DIR
    print(generate(target))
