"""China, GovCloud and the European Sovereign Cloud on the oldest and the newest supported
botocore (issue 13, part 2).

For cn-north-1, us-gov-west-1 and eusc-de-east-1, under RHEL 9's botocore (1.29, the compat
matrix's "floor" row, its venv made here when missing) and the newest (the project's venv):

- validation: the partition the agents derive (``check_region``), or exit 5 naming
  ``endpoint_url`` where that botocore does not know the region;
- the endpoints the agents' own clients would use: EC2 and STS made by ``client.connect`` as an
  action makes them (credentials from the environment), in a network namespace with no network,
  so nothing can be sent; and the host botocore would guess for a region it does not know, the
  reason for that exit 5;
- the ARNs the IAM checks build: the lab's request resources and principal in the region's
  partition, matched by the shipped example policies once their partition is the region's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab import iam

# A venv of RHEL 9's botocore may be made (pip, ~20 s) and every probe is a child process.
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"

# What the agents do in each region, on each botocore. None: that botocore does not know it.
EXPECTED: dict[str, dict[str, Any]] = {
    "cn-north-1": {
        "partition": ["aws-cn", "amazonaws.com.cn", "arn:aws-cn:"],
        "ec2": "https://ec2.cn-north-1.amazonaws.com.cn",
        "sts": "https://sts.cn-north-1.amazonaws.com.cn",
    },
    "us-gov-west-1": {
        "partition": ["aws-us-gov", "amazonaws.com", "arn:aws-us-gov:"],
        "ec2": "https://ec2.us-gov-west-1.amazonaws.com",
        "sts": "https://sts.us-gov-west-1.amazonaws.com",
    },
    "eusc-de-east-1": {
        "partition": ["aws-eusc", "amazonaws.eu", "arn:aws-eusc:"],
        "ec2": "https://ec2.eusc-de-east-1.amazonaws.eu",
        "sts": "https://sts.eusc-de-east-1.amazonaws.eu",
    },
}
REGIONS = list(EXPECTED)
EUSC_EC2 = EXPECTED["eusc-de-east-1"]["ec2"]
EUSC_STS = EXPECTED["eusc-de-east-1"]["sts"]

# One agent action's view, in a child process under the botocore being tested: check_region,
# then connect() (as runtime.py does) and the endpoints of its EC2 and STS clients. Python 3.9.
PROBE = r"""
import json, sys
region, values, connecting = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "connect"
import botocore, botocore.session
from ipfailover.config import params
from ipfailover.aws.partition import check_region
from ocf_shim import Deadline, OCFError

out = {"botocore": botocore.__version__}
guess = botocore.session.get_session().create_client(
    "ec2", region_name=region, aws_access_key_id="x", aws_secret_access_key="y"
)
out["botocore_guess"] = guess.meta.endpoint_url
settings = params.parse_aws_settings(values)
try:
    found = check_region(region, settings)
except OCFError as exc:
    out.update(rc=exc.rc, reason=exc.reason)
else:
    out["partition"] = None if found is None else [found.name, found.dns_suffix, found.arn_prefix]
if connecting and "rc" not in out:
    from ipfailover.aws.client import connect

    api = connect(settings, region, Deadline(30), "aws-secip")
    out["ec2"] = api.client.meta.endpoint_url
    sts = api._factory.client("sts", settings.sts_endpoint_url, None)
    out["sts"] = sts.meta.endpoint_url
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def pythons() -> dict[str, str]:
    """The oldest supported botocore (the compat floor row's venv, made like `make compat`
    makes it) and the newest (this venv)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from compat.__main__ import ROWS, interpreter_of

    floor = next(row for row in ROWS if row.name == "floor")
    log: list[str] = []
    python = interpreter_of(floor, log)
    if python is None:
        pytest.skip(f"no CPython {floor.python} here for the floor row: {log}")
    return {"oldest": str(python), "newest": sys.executable}


def probe(python: str, region: str, *, connect: bool = True, **values: str) -> dict[str, Any]:
    """check_region, then (``connect``) the clients' endpoints; with role_arn, only the first
    (connect would assume the role)."""
    connect = connect and "role_arn" not in values
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(LIB),
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    no_network = ["unshare", "--net", "--"] if os.geteuid() == 0 else []
    done = subprocess.run(
        [
            *no_network,
            python,
            "-c",
            PROBE,
            region,
            json.dumps(values),
            "connect" if connect else "check",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def botocore_major_minor(result: dict[str, Any]) -> tuple[int, int]:
    major, minor = result["botocore"].split(".")[:2]
    return int(major), int(minor)


@pytest.mark.parametrize("stack", ["oldest", "newest"])
@pytest.mark.parametrize("region", ["cn-north-1", "us-gov-west-1"])
def test_china_and_govcloud_on_every_botocore(
    pythons: dict[str, str], stack: str, region: str
) -> None:
    got = probe(pythons[stack], region)
    if stack == "oldest":
        assert botocore_major_minor(got) == (1, 29)
    expected = EXPECTED[region]
    assert (got["partition"], got["ec2"], got["sts"]) == (
        expected["partition"],
        expected["ec2"],
        expected["sts"],
    )
    # A role of the region's partition is assumed; one of another partition is refused (6).
    account = "123456789012"
    own = probe(
        pythons[stack], region, role_arn=f"{expected['partition'][2]}iam::{account}:role/ha"
    )
    assert own["partition"] == expected["partition"]
    other = probe(pythons[stack], region, role_arn=f"arn:aws:iam::{account}:role/ha")
    assert other["rc"] == 6
    assert expected["partition"][0] in other["reason"]


def test_the_sovereign_cloud_on_the_newest_botocore(pythons: dict[str, str]) -> None:
    got = probe(pythons["newest"], "eusc-de-east-1")
    expected = EXPECTED["eusc-de-east-1"]
    assert (got["partition"], got["ec2"], got["sts"]) == (
        expected["partition"],
        expected["ec2"],
        expected["sts"],
    )


def test_the_sovereign_cloud_on_the_oldest_botocore_needs_the_endpoints(
    pythons: dict[str, str],
) -> None:
    oldest = pythons["oldest"]
    got = probe(oldest, "eusc-de-east-1")
    assert botocore_major_minor(got) == (1, 29)
    # What that botocore would do on its own: a host of the commercial partition.
    assert got["botocore_guess"] == "https://ec2.eusc-de-east-1.amazonaws.com"
    assert got["rc"] == 5
    assert "endpoint_url" in got["reason"]
    assert "sts_endpoint_url" not in got["reason"]
    assert got["botocore"] in got["reason"]

    role = "arn:aws-eusc:iam::123456789012:role/ha"
    with_role = probe(oldest, "eusc-de-east-1", endpoint_url=EUSC_EC2, role_arn=role)
    assert with_role["rc"] == 5
    assert "sts_endpoint_url" in with_role["reason"]

    with_both = probe(
        oldest, "eusc-de-east-1", endpoint_url=EUSC_EC2, sts_endpoint_url=EUSC_STS, role_arn=role
    )
    assert "rc" not in with_both
    assert with_both["partition"] is None
    # The clients go where the parameters say, and only there.
    given = probe(oldest, "eusc-de-east-1", endpoint_url=EUSC_EC2, sts_endpoint_url=EUSC_STS)
    assert (given["partition"], given["ec2"], given["sts"]) == (None, EUSC_EC2, EUSC_STS)


# -- the ARNs of the IAM checks ---------------------------------------------------------------

ACCOUNT = "123456789012"
POLICIES = ROOT / "policies"


def in_partition(document: dict[str, Any], partition: str) -> dict[str, Any]:
    """A shipped example policy (written for ``aws``) for another partition: what the README
    tells users in aws-cn, aws-us-gov and aws-eusc to change."""
    return json.loads(json.dumps(document).replace('"arn:aws:', f'"arn:{partition}:'))


@pytest.mark.parametrize("stack", ["oldest", "newest"])
@pytest.mark.parametrize("region", REGIONS)
def test_the_iam_checks_build_arns_in_the_regions_partition(
    pythons: dict[str, str], stack: str, region: str
) -> None:
    """The lab's IAM evaluator is given the partition the agents derive for the region (the
    newest botocore's for the sovereign cloud, where the oldest knows none and endpoint_url
    stands in): the request's resources and the caller are ARNs of that partition, and the
    example policy allows the agent's call only in the region's own partition."""
    got = probe(pythons[stack], region)
    if got.get("partition") is None:
        assert (stack, region, got["rc"]) == ("oldest", "eusc-de-east-1", 5)
        got = probe(pythons["newest"], region)
    partition, _, prefix = got["partition"]
    table = "rtb-0123456789abcdef0"
    resources = iam.request_resources(
        "ReplaceRoute",
        {"RouteTableId": table},
        None,
        region=region,
        account=ACCOUNT,
        partition=partition,
    )
    assert resources == [f"{prefix}ec2:{region}:{ACCOUNT}:route-table/{table}"]
    caller = iam.assumed_role_arn(ACCOUNT, "node-role", "i-0abc", partition)
    assert caller == f"{prefix}sts::{ACCOUNT}:assumed-role/node-role/i-0abc"

    shipped = json.loads((POLICIES / "aws-overlayip.json").read_text())
    ids = {i: i for i in iam.example_ids(shipped)}
    as_shipped = iam.localize(shipped, region=region, account=ACCOUNT, ids=ids)
    assert not iam.evaluate(as_shipped, "ec2:ReplaceRoute", resources).allowed
    adapted = iam.localize(
        in_partition(shipped, partition), region=region, account=ACCOUNT, ids=ids
    )
    assert iam.evaluate(adapted, "ec2:ReplaceRoute", resources).allowed
