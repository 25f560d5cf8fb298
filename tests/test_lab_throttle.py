"""EC2's request throttling in the lab (lab.throttle): token buckets per action, shared by
every node, at AWS's figures by default.

The model is tested with an injected clock (no sleeps); the server's answers with buckets that
do not refill (refill 0), so that what is throttled does not depend on timing.
"""

from __future__ import annotations

import json
import math
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from agentkit import agent
from lab import Lab, ThrottleCount, ThrottleModel, wait_until
from lab.throttle import AWS_LIMITS, Buckets, Limit, bucket_floor, bucket_of

NO_FILTER: dict[str, str] = {}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def buckets(clock: Clock, **model: Any) -> Buckets:
    return Buckets(ThrottleModel(**model), clock=clock)


def takes(b: Buckets, action: str, n: int, params: dict[str, str] | None = None) -> list[bool]:
    return [b.take(action, params or NO_FILTER) for _ in range(n)]


# ---- the model (pure, injected clock) -----------------------------------------------------------


def test_aws_figures_for_the_agents_actions() -> None:
    """The figures of AWS's page "Request throttling for the Amazon EC2 API" (lab/throttle.py)."""
    figures = {name: (limit.capacity, limit.refill) for name, limit in AWS_LIMITS.items()}
    describe, unfiltered, mutating, uncategorized = (100, 20), (50, 10), (50, 5), (100, 5)
    assert figures == {
        "DescribeRouteTables": describe,
        "DescribeNetworkInterfaces": describe,
        "DescribeSubnets": describe,
        "DescribeVpcs": describe,
        "DescribeAddresses": describe,
        "DescribeInstances": describe,
        "CreateRoute": mutating,
        "ReplaceRoute": mutating,
        "AssignPrivateIpAddresses": uncategorized,
        "UnassignPrivateIpAddresses": uncategorized,
        "AssignIpv6Addresses": uncategorized,
        "UnassignIpv6Addresses": mutating,
        "AssociateAddress": mutating,
        "DisassociateAddress": mutating,
        "AttachNetworkInterface": mutating,
        "DetachNetworkInterface": mutating,
        "ModifyNetworkInterfaceAttribute": uncategorized,
        "StopInstances": mutating,
        "StartInstances": (5, 2),
        "DescribeInstances/unfiltered": unfiltered,
        "DescribeInstanceStatus/unfiltered": unfiltered,
        "DescribeNetworkInterfaces/unfiltered": unfiltered,
        "DescribeSecurityGroups/unfiltered": unfiltered,
        "DescribeSnapshots/unfiltered": unfiltered,
        "DescribeSpotInstanceRequests/unfiltered": unfiltered,
        "DescribeVolumes/unfiltered": unfiltered,
    }
    # a default per category for what is not written out
    model = ThrottleModel()
    assert model.limit("DescribeKeyPairs") == Limit(100, 20)
    assert model.limit("DeleteRoute") == Limit(50, 5)
    assert model.limit("AuthorizeSecurityGroupIngress") == Limit(50, 5)


def test_capacity_then_refill_and_a_throttled_call_takes_no_token() -> None:
    clock = Clock()
    b = buckets(clock, limits={"DescribeVpcs": Limit(3, 2)})
    assert takes(b, "DescribeVpcs", 4) == [True, True, True, False]
    clock.advance(0.25)  # half a token
    assert takes(b, "DescribeVpcs", 3) == [False] * 3
    clock.advance(0.25)  # the throttled calls took nothing: one whole token now
    assert takes(b, "DescribeVpcs", 2) == [True, False]
    clock.advance(100)  # refill stops at the capacity
    assert takes(b, "DescribeVpcs", 4) == [True, True, True, False]
    assert b.counts() == {"DescribeVpcs": {"answered": 7, "throttled": 6}}


def test_one_bucket_per_action() -> None:
    clock = Clock()
    b = buckets(clock, limits={"mutating": Limit(2, 1)})
    assert takes(b, "ReplaceRoute", 3) == [True, True, False]
    assert takes(b, "CreateRoute", 2) == [True, True]  # its own bucket, the category's figures
    assert takes(b, "DescribeRouteTables", 100) == [True] * 100  # AWS's: 100


def test_unfiltered_and_unpaginated_calls_use_the_smaller_bucket() -> None:
    filtered = {"Filter.1.Name": "addresses.private-ip-address", "Filter.1.Value.1": "10.0.1.5"}
    assert (
        bucket_of("DescribeNetworkInterfaces", NO_FILTER) == "DescribeNetworkInterfaces/unfiltered"
    )
    assert bucket_of("DescribeNetworkInterfaces", {"NetworkInterfaceId.1": "eni-1"}) == (
        "DescribeNetworkInterfaces/unfiltered"
    )
    assert bucket_of("DescribeNetworkInterfaces", filtered) == "DescribeNetworkInterfaces"
    assert bucket_of("DescribeInstances", {"MaxResults": "5"}) == "DescribeInstances"
    assert bucket_of("DescribeRouteTables", NO_FILTER) == "DescribeRouteTables"
    clock = Clock()
    b = buckets(clock)
    assert takes(b, "DescribeNetworkInterfaces", 51) == [True] * 50 + [False]
    assert takes(b, "DescribeNetworkInterfaces", 100, filtered) == [True] * 100
    assert b.counts() == {"DescribeNetworkInterfaces": {"answered": 150, "throttled": 1}}


def test_background_load_draws_continuously() -> None:
    clock = Clock()
    b = buckets(clock, limits={"ReplaceRoute": Limit(10, 5)}, background={"ReplaceRoute": 2})
    assert takes(b, "ReplaceRoute", 11) == [True] * 10 + [False]
    clock.advance(1.0)  # 5 in, 2 taken by the others
    assert takes(b, "ReplaceRoute", 4) == [True] * 3 + [False]
    # a background equal to the refill keeps a drained bucket empty
    b = buckets(clock, limits={"ReplaceRoute": Limit(10, 5)}, background={"mutating": 5})
    assert takes(b, "ReplaceRoute", 10) == [True] * 10
    clock.advance(60)
    assert takes(b, "ReplaceRoute", 1) == [False]
    assert ThrottleModel(background={"mutating": 5}).background_rate("DescribeVpcs") == 0


def drain(b: Buckets, clock: Clock, action: str, calls: int, step: float) -> float:
    """All calls at once, each throttled one retried every `step` s: when the last one is
    answered, measured from the first."""
    began, left = clock.now, calls
    while True:
        while left and b.take(action, NO_FILTER):
            left -= 1
        if not left:
            return clock.now - began
        clock.advance(step)


@pytest.mark.parametrize(
    ("calls", "capacity", "refill", "background"),
    [(30, 50, 5, 0), (120, 50, 5, 0), (100, 50, 5, 2.5), (300, 100, 20, 5)],
)
def test_bound_formula_matches_the_model(
    calls: int, capacity: float, refill: float, background: float
) -> None:
    clock = Clock()
    model = ThrottleModel(
        limits={"ReplaceRoute": Limit(capacity, refill)}, background={"ReplaceRoute": background}
    )
    b = Buckets(model, clock=clock)
    expected = bucket_floor(calls, capacity, refill, background)
    assert expected == max(0, calls - capacity) / (refill - background)
    assert model.floor("ReplaceRoute", calls) == expected
    step = 0.001
    assert drain(b, clock, "ReplaceRoute", calls, step) == pytest.approx(expected, abs=step)


def test_bound_formula_with_tokens_left_and_no_net_refill() -> None:
    assert bucket_floor(100, 0, 5) == 20
    assert bucket_floor(10, 25.5, 5) == 0
    assert bucket_floor(110, 50, 5, 2) == 20
    assert bucket_floor(51, 50, 5, 5) == math.inf
    # 100 route tables at AWS's ReplaceRoute figures: 50 at once, the rest at 5 a second
    assert ThrottleModel().floor("ReplaceRoute", 100) == 10


def test_model_settings_and_environment() -> None:
    model = ThrottleModel(
        limits={"mutating": Limit(10, 1), "ReplaceRoute": Limit(20, 2)}, scale=0.5
    )
    assert model.limit("ReplaceRoute") == Limit(10, 1)  # the action's own entry wins
    assert model.limit("CreateRoute") == Limit(5, 0.5)
    assert model.limit("DescribeVpcs") == Limit(50, 10)  # AWS's, scaled
    assert ThrottleModel.from_json(json.loads(json.dumps(model.to_json()))) == model
    assert ThrottleModel.from_env(None) == ThrottleModel() == ThrottleModel.from_env("aws")
    assert not ThrottleModel.from_env("off").enabled
    assert ThrottleModel.from_env('{"background": {"ReplaceRoute": 2}}').background == {
        "ReplaceRoute": 2.0
    }
    for bad in ('{"limit": {}}', "[1]", '{"scale": 0}', "nonsense"):
        with pytest.raises(ValueError, match="LAB_THROTTLE"):
            ThrottleModel.from_env(bad)
    clock = Clock()
    assert takes(Buckets(ThrottleModel.off(), clock=clock), "ReplaceRoute", 500) == [True] * 500


# ---- the lab server ------------------------------------------------------------------------------

NODE_CLIENT = textwrap.dedent(
    """
    import json, sys
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import ClientError
    endpoint, calls = sys.argv[1], int(sys.argv[2])
    client = botocore.session.Session().create_client(
        "ec2", region_name="eu-central-1", endpoint_url=endpoint,
        aws_access_key_id="AKIDNODE", aws_secret_access_key="node",
        config=Config(retries={"total_max_attempts": 1}))
    out = []
    for _ in range(calls):
        try:
            client.describe_vpcs()
            out.append("ok")
        except ClientError as err:
            out.append(err.response["Error"]["Code"])
    print(json.dumps(out))
    """
)


def from_node(lab: Lab, node: str, calls: int) -> list[str]:
    """describe_vpcs `calls` times from inside a node, botocore retries off."""
    argv = [sys.executable, "-c", NODE_CLIENT, lab.endpoint_url, str(calls)]
    proc = lab.ns_exec(node, argv, check=True)
    result: list[str] = json.loads(proc.stdout)
    return result


def error_of(call: Callable[[], Any]) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as info:
        call()
    response: Any = info.value.response
    error = response["Error"]
    return error["Code"], response["ResponseMetadata"]["HTTPStatusCode"], error["Message"]


def no_refill(**limits: float) -> ThrottleModel:
    return ThrottleModel(limits={action: Limit(n, 0) for action, n in limits.items()})


def test_throttled_answer_as_ec2_gives_it(lab: Lab) -> None:
    lab.set_throttle(no_refill(DescribeVpcs=2))
    ec2 = lab.ec2(bypass_faults=False)  # a botocore client, retries off
    ec2.describe_vpcs()
    ec2.describe_vpcs()
    assert error_of(ec2.describe_vpcs) == ("RequestLimitExceeded", 503, "Request limit exceeded.")
    ec2.describe_subnets()  # another action, another bucket
    assert [(c.action, c.status, c.fault, c.error_code) for c in lab.calls()] == [
        ("DescribeVpcs", 200, None, None),
        ("DescribeVpcs", 200, None, None),
        ("DescribeVpcs", 503, "bucket", "RequestLimitExceeded"),
        ("DescribeSubnets", 200, None, None),
    ]
    assert lab.throttle_counts() == {
        "DescribeSubnets": ThrottleCount(answered=1, throttled=0),
        "DescribeVpcs": ThrottleCount(answered=2, throttled=1),
    }
    assert lab.throttle_state()["buckets"]["DescribeVpcs"]["tokens"] == 0
    # the injected faults still work as before, beside the buckets
    lab.set_fault("DescribeSubnets", "throttle", count=1)
    assert error_of(ec2.describe_subnets)[:2] == ("RequestLimitExceeded", 503)
    assert lab.calls()[-1].fault == "throttle"
    # reset(): the Lab's own model again (AWS's), full buckets, no counts
    lab.reset()
    assert lab.throttle_state()["model"] == ThrottleModel().to_json()
    assert lab.throttle_counts() == {}


def test_all_nodes_share_the_accounts_buckets(lab: Lab) -> None:
    lab.set_throttle(no_refill(DescribeVpcs=3))
    assert from_node(lab, "a", 2) == ["ok", "ok"]
    assert from_node(lab, "b", 2) == ["ok", "RequestLimitExceeded"]
    assert lab.throttle_counts() == {"DescribeVpcs": ThrottleCount(answered=3, throttled=1)}
    assert [(c.node, c.status) for c in lab.calls()] == [
        ("a", 200),
        ("a", 200),
        ("b", 200),
        ("b", 503),
    ]


def test_dry_run_draws_from_the_same_bucket(lab: Lab) -> None:
    lab.set_throttle(no_refill(DescribeVpcs=2))
    ec2 = lab.ec2(bypass_faults=False)
    assert error_of(lambda: ec2.describe_vpcs(DryRun=True))[:2] == ("DryRunOperation", 412)
    ec2.describe_vpcs()
    assert error_of(lambda: ec2.describe_vpcs(DryRun=True))[:2] == ("RequestLimitExceeded", 503)
    assert lab.throttle_counts() == {"DescribeVpcs": ThrottleCount(answered=2, throttled=1)}


def test_the_labs_own_reads_do_not_draw(
    lab_factory: Callable[..., Lab], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data plane, IMDS, hotplug, power and the harness's reads: none takes a token, even
    with buckets that hold none; the nodes' clients are throttled. The model comes from
    LAB_THROTTLE, as for `make demo` and `make bench`."""
    starved = ThrottleModel(scale=1e-9)  # no whole token anywhere
    monkeypatch.setenv("LAB_THROTTLE", json.dumps(starved.to_json()))
    lab = lab_factory(dataplane=True)
    assert lab.throttle_state()["model"] == starved.to_json()
    a, b = lab.nodes["a"], lab.nodes["b"]
    ec2 = lab.ec2()  # the tests' client: bypasses faults and buckets
    lab.set_timing(assign_delay=0, attach_delay=0, detach_delay=0)
    ec2.assign_private_ip_addresses(NetworkInterfaceId=b.eni_id, PrivateIpAddresses=["10.0.1.50"])
    ec2.create_route(
        RouteTableId=lab.route_tables[0],
        DestinationCidrBlock="192.168.100.10/32",
        NetworkInterfaceId=a.eni_id,
    )
    eni = lab.create_eni(subnet="a")
    ec2.attach_network_interface(NetworkInterfaceId=eni.id, InstanceId=b.instance_id, DeviceIndex=1)
    wait_until(lambda: lab.forwarded_to("10.0.1.50") == "b", what="data plane follows AWS")
    wait_until(lambda: lab.forwarded_to("192.168.100.10") == "a", what="route followed")
    wait_until(lambda: eni.id in lab.guest_links(), what="hotplugged link")
    assert lab.holders("10.0.1.50") == {b.eni_id}
    assert lab.route_targets("192.168.100.10/32")[lab.route_tables[0]] == a.eni_id
    imds_reads = [
        "meta-data/instance-id",
        "meta-data/network/interfaces/macs/",
        f"meta-data/network/interfaces/macs/{b.mac}/local-ipv4s",
        "meta-data/iam/security-credentials/",
    ]
    answers = imds_read(lab, "b", imds_reads)
    assert "10.0.1.50" in answers[2]
    ec2.stop_instances(InstanceIds=[a.instance_id])
    wait_until(lambda: lab.power()["a"].state == "stopped", what="power off")
    assert lab.throttle_counts() == {}
    # ... while a node's client is throttled
    assert from_node(lab, "b", 1) == ["RequestLimitExceeded"]
    assert lab.throttle_counts() == {"DescribeVpcs": ThrottleCount(answered=0, throttled=1)}


IMDS_READER = textwrap.dedent(
    """
    import json, sys, urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    base = "http://169.254.169.254/latest/"
    req = urllib.request.Request(base + "api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    token = opener.open(req, timeout=5).read().decode()
    out = []
    for path in json.loads(sys.argv[1]):
        req = urllib.request.Request(base + path, headers={"X-aws-ec2-metadata-token": token})
        out.append(opener.open(req, timeout=5).read().decode())
    print(json.dumps(out))
    """
)


def imds_read(lab: Lab, node: str, paths: list[str]) -> list[str]:
    proc = lab.ns_exec(node, [sys.executable, "-c", IMDS_READER, json.dumps(paths)], check=True)
    result: list[str] = json.loads(proc.stdout)
    return result


def test_an_ordinary_agent_start_is_far_below_the_default_buckets(lab: Lab) -> None:
    assert lab.throttle_state()["model"] == ThrottleModel().to_json()  # on, at AWS's figures
    params = {
        "ip": "192.168.100.10",
        "routing_table": ",".join(lab.route_tables),
        "endpoint_url": lab.endpoint_url,
        "source_dest_check": "disable",
    }
    result = lab.run_agent("a", agent("aws-overlayip"), "start", params)
    assert result.rc == 0, result.exit_reason
    calls = lab.calls(node="a")
    assert 0 < len(calls) < 20
    counts = lab.throttle_counts()
    assert sum(c.answered for c in counts.values()) == len(calls)
    assert all(c.throttled == 0 for c in counts.values())
