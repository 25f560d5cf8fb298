"""Parameters accept what the kernel and AWS accept, no less and no more (issue 12, class 6).

Interface names are checked against the kernel itself (a throwaway network namespace), regions
and partitions against botocore's own data (the venv's and Debian's, the stand-in for an older
enterprise botocore), and the agents as processes: the syntax check (validate-all at
OCF_CHECK_LEVEL=0, no lab), and the partition check at action time in the lab.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from agentkit import DEBIAN_PYTHON, PYTHONS, agent
from ipfailover.aws.partition import Partition, check_region, partition_of
from ipfailover.config import params, syntax
from ocf_shim import ConfigError, GenericError, NotInstalledError

if TYPE_CHECKING:
    from ipfailover.aws.imds import Imds

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
PREFIX = "ocf-exit-reason:"
SECRET = "pa55-w0rd-s3cret"


def syntax_check(name: str, values: dict[str, str], **env: str) -> tuple[int, str]:
    """validate-all at OCF_CHECK_LEVEL=0 of agent ``name``: (exit code, exit reason)."""
    environ = {
        "PATH": "/usr/bin:/bin",
        "OCF_ROOT": "/usr/lib/ocf",
        "PYTHONPATH": str(LIB),
        "OCF_CHECK_LEVEL": "0",
        **{f"OCF_RESKEY_{k}": v for k, v in values.items()},
        **env,
    }
    proc = subprocess.run(
        [sys.executable, str(agent(name)), "validate-all"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    reasons = [line[len(PREFIX) :] for line in proc.stderr.splitlines() if line.startswith(PREFIX)]
    return proc.returncode, "\n".join(reasons)


OVERLAY = {"ip": "192.168.10.10", "routing_table": "rtb-0123abcd"}
SECIP = {"ip": "10.0.1.100"}


# -- interface names: the kernel's rule ------------------------------------------------------

KERNEL_NAMES = [
    "eth0", "e" * 15, "e" * 16, "\xe9" * 7, "\xe9" * 8, "x\xe9", "x\xe0", "a;b", "$(x)", "-x",
    ".x", "a@b", "a b", "a\tb", "a:b", "a/b", ".", "..", "...", "\u3000x", "a\xa0",
    "\U0001f4a5", "a\x01", "eth0:1",
]  # fmt: skip


@pytest.mark.lab  # a network namespace of its own
def test_interface_names_are_what_the_kernel_takes() -> None:
    """Each name is created (a veth) in a network namespace of its own: the kernel's answer is
    the oracle. iproute2 is not used: it has its own, narrower, check."""
    code = (
        "import json, sys\n"
        "from pyroute2 import IPRoute\n"
        "names = json.loads(sys.argv[1])\n"
        "result = {}\n"
        "with IPRoute() as ip:\n"
        "    for i, name in enumerate(names):\n"
        "        try:\n"
        "            ip.link('add', ifname=name, kind='veth', peer=f'peer{i}')\n"
        "            result[name] = True\n"
        "        except Exception:\n"
        "            result[name] = False\n"
        "print(json.dumps(result))\n"
    )
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", code, json.dumps(KERNEL_NAMES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    kernel = json.loads(done.stdout)
    ours = {}
    for name in KERNEL_NAMES:
        try:
            ours[name] = syntax.parse_interface("interface", name) == name
        except ConfigError:
            ours[name] = False
    assert ours == kernel
    assert kernel["a;b"] and kernel["x\xe9"] and not kernel["x\xe0"]  # the oracle is alive


@pytest.mark.parametrize(
    ("agent_name", "values", "words"),
    [
        ("aws-overlayip", {**OVERLAY, "interface": "eth0:1"}, ["alias", "label='eth0:1'"]),
        ("aws-secip", {**SECIP, "interface": "eth0:ovl"}, ["alias", "interface='eth0'"]),
        ("aws-secip", {**SECIP, "interface": "e" * 16}, ["15", "altname"]),
        ("aws-secip", {**SECIP, "interface": "\xe9" * 8}, ["16 bytes", "altname"]),
    ],
)
def test_interface_refusals_say_why(
    agent_name: str, values: dict[str, str], words: list[str]
) -> None:
    rc, reason = syntax_check(agent_name, values)
    assert rc == 6
    for word in words:
        assert word in reason


@pytest.mark.parametrize("name", ["a;b", "x\xe9", "enp0s31f6", "br-0123456789a", "e" * 15])
def test_kernel_names_pass_the_syntax_check(name: str) -> None:
    assert syntax_check("aws-secip", {**SECIP, "interface": name}) == (0, "")


def test_an_interface_missing_here_is_2_not_6(lab: Any) -> None:
    """A valid name the node lacks is wrong on this node only."""
    result = lab.run_agent(
        "a",
        agent("aws-secip"),
        "validate-all",
        {**SECIP, "ip": "10.0.1.50", "interface": "a;b", "endpoint_url": lab.endpoint_url},
    )
    assert result.rc == 2, result.stderr


# -- tags, regions, role ARNs, profiles, paths, URLs -------------------------------------------


@pytest.mark.parametrize(
    ("values", "rc"),
    [
        ({"routing_table_tag": "aws:cloudformation:stack-name=my-stack"}, 0),
        ({"routing_table_tag": "AWS:x=1"}, 0),
        ({"routing_table_tag": "aws:=1"}, 0),
        ({"routing_table_tag": "=1"}, 6),
        ({"region": "eusc-de-east-1"}, 0),
        ({"region": "us-isob-east-1"}, 0),
        ({"region": "us-isof-south-1"}, 0),
        ({"region": "eu-isoe-west-1"}, 0),
        ({"region": "ap-southeast-7"}, 0),
        ({"region": "mx-central-1"}, 0),
        ({"region": "cn-north-1"}, 0),
        ({"region": "us-gov-west-1"}, 0),
        ({"region": "eu-central"}, 6),
        ({"region": "e-central-1"}, 6),
        ({"region": "eu-central-1a"}, 6),
        ({"region": "us-west-2-lax-1"}, 6),  # a Local Zone, not a region
        ({"role_arn": "arn:aws-eusc:iam::123456789012:role/ha"}, 0),
        ({"role_arn": "arn:aws-iso-b:iam::123456789012:role/ha"}, 0),
        ({"role_arn": "arn:aws:iam::123456789012:role/team!a/ha"}, 0),  # IAM paths: ! to ~
        ({"role_arn": "arn:aws:iam::123456789012:role/" + "a" * 65}, 6),  # names: 64 at most
        ({"role_arn": "arn:aws-:iam::123456789012:role/ha"}, 6),
        ({"role_arn": "arn:aws:iam::123456789012:role//ha"}, 6),
        ({"profile": "my profile"}, 0),
        ({"profile": "team/ha"}, 0),
        ({"profile": " default"}, 6),
        ({"ca_bundle": "/etc/pki/ca-trust/source/anchors/Corp CA (2024).pem"}, 0),
        ({"ca_bundle": "/" + "a" * 4094}, 0),
        ({"ca_bundle": "/" + "a" * 4095}, 6),
        ({"ca_bundle": "etc/ssl/ca.pem"}, 6),
        ({"proxy": "http://user:p%40ss@proxy.example:3128"}, 0),
        ({"proxy": "http://ha-agent:pw@[2001:db8::3]:3128"}, 0),
        ({"proxy": "http://ha-agent@[2001:db8::3]:3128"}, 6),  # no password: botocore sends none
        ({"proxy": "http://user:p%4@proxy:3128"}, 6),
        ({"proxy": "http://us er@proxy:3128"}, 6),
        ({"endpoint_url": "https://user@ec2.eu-central-1.amazonaws.com"}, 6),
        ({"endpoint_url": "https://ec2.eu-central-1.amazonaws.com."}, 0),
        ({"endpoint_url": "https://vpce..amazonaws.com"}, 6),  # botocore: Invalid endpoint
        ({"endpoint_url": "https://" + "a" * 64 + ".example"}, 6),
        ({"endpoint_url": "https://a-.example"}, 6),
    ],
)
def test_what_aws_and_botocore_accept(values: dict[str, str], rc: int) -> None:
    assert syntax_check("aws-overlayip", {**OVERLAY, **values})[0] == rc


def test_a_proxy_password_is_not_in_the_exit_reason() -> None:
    proxy = f"http://user:{SECRET}@proxy.example:99999"  # a bad port
    rc, reason = syntax_check("aws-secip", {**SECIP, "proxy": proxy})
    assert rc == 6
    assert "proxy" in reason
    assert SECRET not in reason


def test_a_proxy_password_is_not_in_the_debug_log(lab: Any, tmp_path: Path) -> None:
    logfile = tmp_path / "ha.log"
    proxy = f"http://user:{SECRET}@proxy.example:3128"
    result = lab.run_agent(
        "a",
        agent("aws-secip"),
        "monitor",  # a probe: the parameters are dumped, no request is sent
        {"ip": "10.0.1.50", "proxy": proxy},
        extra_env={"HA_debug": "1", "HA_LOGFILE": str(logfile)},
    )
    assert result.rc == 7, result.stderr
    log = logfile.read_text()
    assert "proxy='http://***@proxy.example:3128'" in log
    assert SECRET not in log + result.stderr


# -- partitions from botocore's data ------------------------------------------------------------

PARTITIONS = {
    "eu-central-1": ("aws", "amazonaws.com"),
    "ap-southeast-7": ("aws", "amazonaws.com"),
    "cn-north-1": ("aws-cn", "amazonaws.com.cn"),
    "us-gov-west-1": ("aws-us-gov", "amazonaws.com"),
    "us-isob-east-1": ("aws-iso-b", "sc2s.sgov.gov"),
    "eusc-de-east-1": ("aws-eusc", "amazonaws.eu"),
    "xx-test-1": None,
}


@pytest.mark.parametrize(("region", "expected"), PARTITIONS.items())
def test_partition_of(region: str, expected: tuple[str, str] | None) -> None:
    got = partition_of(region)
    assert got == (None if expected is None else Partition(*expected))
    if got is not None:
        assert got.arn_prefix == f"arn:{got.name}:"


def _partitions_in(python: str, *prelude: str) -> dict[str, Any]:
    code = "\n".join(
        [
            *prelude,
            "import json, sys",
            "from ipfailover.aws.partition import partition_of",
            "print(json.dumps({r: partition_of(r) for r in sys.argv[1:]}))",
        ]
    )
    done = subprocess.run(
        [python, "-c", code, *PARTITIONS],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(LIB)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(not Path(DEBIAN_PYTHON).exists(), reason="no /usr/bin/python3")
def test_an_older_botocore_does_not_know_the_sovereign_cloud() -> None:
    got = _partitions_in(DEBIAN_PYTHON)
    assert got["eusc-de-east-1"] is None
    assert got["us-isob-east-1"] == ["aws-iso-b", "sc2s.sgov.gov"]
    assert got["eu-central-1"] == ["aws", "amazonaws.com"]


def test_a_botocore_without_partitions_json_reads_endpoints_json() -> None:
    """botocore before 1.28 has no partitions.json: the same answers from endpoints.json."""
    prelude = (
        "import botocore.loaders, botocore.exceptions",
        "load = botocore.loaders.Loader.load_data",
        "def without_partitions(self, name):",
        "    if name == 'partitions':",
        "        raise botocore.exceptions.DataNotFoundError(data_path=name)",
        "    return load(self, name)",
        "botocore.loaders.Loader.load_data = without_partitions",
    )
    assert _partitions_in(sys.executable, *prelude) == _partitions_in(sys.executable)


def settings(**values: str) -> params.AwsSettings:
    return params.parse_aws_settings(values)


def test_an_unknown_region_needs_the_endpoints() -> None:
    with pytest.raises(NotInstalledError) as info:
        check_region("xx-test-1", settings())
    assert info.value.rc == 5
    assert "endpoint_url" in info.value.reason
    assert check_region("xx-test-1", settings(endpoint_url="https://ec2.example")) is None
    role = "arn:aws:iam::123456789012:role/ha"
    with pytest.raises(NotInstalledError, match="sts_endpoint_url"):
        check_region("xx-test-1", settings(endpoint_url="https://ec2.example", role_arn=role))
    both = settings(
        endpoint_url="https://ec2.example", sts_endpoint_url="https://sts.example", role_arn=role
    )
    assert check_region("xx-test-1", both) is None


@pytest.mark.parametrize(
    ("region", "arn_partition", "rc"),
    [
        ("eu-central-1", "aws", 0),
        ("cn-north-1", "aws-cn", 0),
        ("eusc-de-east-1", "aws-eusc", 0),
        ("eu-central-1", "aws-cn", 6),
        ("us-gov-west-1", "aws", 6),
        ("eusc-de-east-1", "aws", 6),
    ],
)
def test_a_role_of_another_partition_is_a_contradiction(
    region: str, arn_partition: str, rc: int
) -> None:
    values = settings(role_arn=f"arn:{arn_partition}:iam::123456789012:role/ha")
    if rc == 0:
        assert check_region(region, values) == partition_of(region)
    else:
        with pytest.raises(ConfigError) as info:
            check_region(region, values)
        assert info.value.rc == rc


# -- the partition check at action time, as agent processes in the lab --------------------------


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize(
    ("extra", "rc"),
    [
        ({"region": "xx-test-1"}, 5),  # unknown to every botocore; nothing is sent anywhere
        ({"role_arn": "arn:aws-cn:iam::123456789012:role/ha"}, 6),  # the lab's region is aws
        ({"region": "eu-central-1", "role_arn": "arn:aws-eusc:iam::123456789012:role/ha"}, 6),
    ],
)
def test_region_checks_at_action_time(
    lab: Any, python: str, extra: dict[str, str], rc: int
) -> None:
    p = {"ip": "10.0.1.50", **extra}
    if "role_arn" in extra:
        p["endpoint_url"] = lab.endpoint_url  # known region: nothing is sent to AWS
    for action in ("validate-all", "start"):
        result = lab.run_agent("a", agent("aws-secip"), action, p, python=python)
        assert result.rc == rc, result.stderr
    assert lab.holders("10.0.1.50") == set()


@pytest.mark.skipif(not Path(DEBIAN_PYTHON).exists(), reason="no /usr/bin/python3")
def test_the_sovereign_cloud_on_an_older_botocore_needs_endpoint_url(lab: Any) -> None:
    result = lab.run_agent(
        "a",
        agent("aws-secip"),
        "validate-all",
        {"ip": "10.0.1.50", "region": "eusc-de-east-1"},
        python=DEBIAN_PYTHON,
    )
    assert result.rc == 5, result.stderr
    assert "endpoint_url" in result.stderr


@pytest.mark.parametrize("timeout_ms", [10**17, 10**30])
def test_a_huge_timeout_completes_normally(lab: Any, timeout_ms: int) -> None:
    """Clamped to Pacemaker's largest (ocf_shim.deadline): no OverflowError in the watchdog."""
    p = {"ip": "10.0.1.50"}
    result = lab.run_agent(
        "a", agent("aws-secip"), "monitor", p, timeout_ms=timeout_ms, kill_after=60
    )
    assert (result.rc, result.exit_reason) == (7, None), result.stderr


class FakeImds:
    """The two answers node.region reads."""

    def __init__(self, region: str | None, zone: str) -> None:
        self.answers = {"meta-data/placement/availability-zone": zone}
        if region is not None:
            self.answers["meta-data/placement/region"] = region

    def get_optional(self, path: str) -> str | None:
        return self.answers.get(path)

    def get(self, path: str) -> str:
        return self.answers[path]


@pytest.mark.parametrize(
    ("region", "zone", "expected"),
    [
        (None, "eusc-de-east-1a", "eusc-de-east-1"),
        (None, "us-isob-east-1b", "us-isob-east-1"),
        ("eusc-de-east-1", "eusc-de-east-1a", "eusc-de-east-1"),
        ("garbage region", "ap-southeast-7c", "ap-southeast-7"),
    ],
)
def test_the_instance_region_has_the_parameter_shape(
    region: str | None, zone: str, expected: str
) -> None:
    from ipfailover.aws import instance as node

    assert node.region(cast("Imds", FakeImds(region, zone))) == expected


@pytest.mark.parametrize("zone", ["eusc-de-east-1", "eu-central-1A", "eu-central-1ab", ""])
def test_a_malformed_zone_is_refused(zone: str) -> None:
    from ipfailover.aws import instance as node

    with pytest.raises(GenericError):
        node.region(cast("Imds", FakeImds(None, zone)))


@pytest.mark.parametrize("name", ["endpoint_url", "sts_endpoint_url", "proxy"])
def test_no_url_refusal_shows_a_password(name: str) -> None:
    url = f"https://user:{SECRET}@ec2.example:99999"
    rc, reason = syntax_check("aws-overlayip", {**OVERLAY, name: url})
    assert rc == 6
    assert name in reason
    assert SECRET not in reason


def test_route_tables_found_by_a_cloudformation_tag(lab: Any) -> None:
    """CloudFormation tags every route table it makes with aws:cloudformation:stack-name."""
    tagged = lab.route_tables[:2]
    lab.ec2().create_tags(
        Resources=tagged, Tags=[{"Key": "aws:cloudformation:stack-name", "Value": "ha"}]
    )
    p = {
        "ip": "192.168.100.10",
        "routing_table_tag": "aws:cloudformation:stack-name=ha",
        "endpoint_url": lab.endpoint_url,
        "source_dest_check": "disable",
    }
    assert lab.run_agent("a", agent("aws-overlayip"), "start", p).rc == 0
    targets = lab.route_targets("192.168.100.10/32", lab.route_tables)
    eni = lab.nodes["a"].eni_id
    assert targets == {t: eni if t in tagged else None for t in lab.route_tables}


def test_a_tag_value_with_wildcards_takes_only_tables_tagged_exactly_so(lab: Any) -> None:
    """EC2's tag filter reads * and ? as wildcards; the agent must manage only its own tables."""
    ours, other = lab.route_tables[0], lab.route_tables[1]
    lab.ec2().create_tags(Resources=[ours], Tags=[{"Key": "ha-ip", "Value": "sap*"}])
    lab.ec2().create_tags(Resources=[other], Tags=[{"Key": "ha-ip", "Value": "sap-other"}])
    p = {
        "ip": "192.168.100.10",
        "routing_table_tag": "ha-ip=sap*",
        "endpoint_url": lab.endpoint_url,
        "source_dest_check": "disable",
    }
    assert lab.run_agent("a", agent("aws-overlayip"), "start", p).rc == 0
    targets = lab.route_targets("192.168.100.10/32", [ours, other])
    assert targets == {ours: lab.nodes["a"].eni_id, other: None}
