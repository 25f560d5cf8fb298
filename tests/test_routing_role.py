"""routing_table_role without the lab: parameters, the plan's principals, apply's clients, and
the client wiring (AssumeRole's request, the regional STS endpoint on every botocore, the one
Config shared by every client, the reasons naming the principal).

The lab tests (tests/test_shared_vpc.py) run the agent against the lab's STS and IAM.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import botocore.session
import pytest
from botocore.stub import ANY, Stubber

from ipfailover.aws import client as aws
from ipfailover.aws.client import Api, connect
from ipfailover.config.params import AwsSettings
from ipfailover.overlayip import actions as overlayip
from ipfailover.overlayip import declaration
from ocf_shim import OCF, ConfigError, Deadline, OCFError
from planfakes import FakeRuntime, RecordingApi
from test_overlay_plan import observation, params

ROLE = "arn:aws:iam::210987654321:role/ipfailover-routing"
ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("extra", "ok"),
    [
        ({"routing_table_role": ROLE}, True),
        ({"routing_table_role": ROLE, "routing_table_external_id": "sap-prd_7f3c=+,.@:/-"}, True),
        ({"routing_table_role": "arn:aws:iam::210987654321:user/x"}, False),
        ({"routing_table_role": "ipfailover-routing"}, False),
        ({"routing_table_external_id": "sap-prd"}, False),  # without the role
        ({"routing_table_role": ROLE, "routing_table_external_id": "x"}, False),  # too short
        ({"routing_table_role": ROLE, "routing_table_external_id": "a b"}, False),
        ({"routing_table_role": ROLE, "routing_table_external_id": "x" * 1225}, False),
        ({"routing_table_role": ROLE, "routing_table_external_id": "\u00e9t\u00e9"}, False),
    ],
)
def test_routing_parameters(extra: dict[str, str], ok: bool) -> None:
    if ok:
        cfg = declaration.parse_config(params(**extra))
        assert cfg.routing_role == extra["routing_table_role"]
        assert cfg.routing_external_id == extra.get("routing_table_external_id")
    else:
        with pytest.raises(ConfigError) as info:
            declaration.parse_config(params(**extra))
        assert "routing_table_" in info.value.reason


def test_the_meta_data_declares_both_and_says_what_the_chain_needs() -> None:
    names = {p.name: p for p in declaration.PARAMETERS}
    role = names["routing_table_role"]
    assert not role.required
    assert "role_arn" in role.longdesc
    assert "at most an hour" in role.longdesc
    assert "sts_endpoint_url" in role.longdesc
    assert "sts:ExternalId" in names["routing_table_external_id"].longdesc


# ----------------------------------------------------------------------------- the plan


def test_route_steps_name_the_routing_role_and_the_rest_the_node() -> None:
    cfg = declaration.parse_config(params(source_dest_check="disable", routing_table_role=ROLE))
    steps = overlayip.plan(cfg, observation())
    aws_steps = [s for s in steps if not isinstance(s, overlayip.AddAddress)]
    assert [(s.operation, s.principal) for s in aws_steps] == [
        ("ModifyNetworkInterfaceAttribute", "node"),
        ("CreateRoute", "routing-role"),
        ("ReplaceRoute", "routing-role"),
        ("ReplaceRoute", "routing-role"),
    ]


class TwoPrincipals(FakeRuntime):
    """A Runtime whose routing role has an API of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.routing = RecordingApi()
        self.assumed: list[tuple[str, Optional[str], str]] = []

    def assumed_api(self, role_arn: str, external_id: Optional[str], what: str) -> RecordingApi:
        self.assumed.append((role_arn, external_id, what))
        return self.routing


@pytest.mark.parametrize("check", [True, False], ids=["validate-all", "start"])
def test_apply_sends_each_call_with_its_principals_client(check: bool) -> None:
    cfg = declaration.parse_config(
        params(source_dest_check="disable", routing_table_role=ROLE, routing_table_external_id="xy")
    )
    rt = TwoPrincipals()
    overlayip.apply(rt, cfg, overlayip.plan(cfg, observation()), check=check)  # type: ignore[arg-type]
    node = [(op, dry) for op, dry, _ in rt.api().calls]
    routing = [(op, dry) for op, dry, _ in rt.routing.calls]
    assert node == [("ModifyNetworkInterfaceAttribute", check)]
    expected = [("CreateRoute", True), ("ReplaceRoute", True), ("ReplaceRoute", True)]
    if not check:  # start makes no call for the table already right
        expected = [("CreateRoute", False), ("ReplaceRoute", False)]
    assert sorted(routing) == sorted(expected)
    assert set(rt.assumed) == {(ROLE, "xy", "the routing role")}


def test_without_the_role_every_call_is_the_nodes() -> None:
    cfg = declaration.parse_config(params(source_dest_check="disable"))
    rt = TwoPrincipals()
    overlayip.apply(rt, cfg, overlayip.plan(cfg, observation()), check=True)  # type: ignore[arg-type]
    assert rt.routing.calls == [] and rt.assumed == []
    assert len(rt.api().calls) == 4


# ----------------------------------------------------------------------------- the client


def stubbed_sts(monkeypatch: pytest.MonkeyPatch) -> list[Stubber]:
    """Make _Factory.sts hand out STS clients whose answers the test queues."""
    made: list[Stubber] = []
    real = aws._Factory.sts

    def sts(self: Any, credentials: Any, principal: aws.Principal) -> Api:
        api = real(self, credentials, principal)
        stubber = Stubber(api.client)
        stubber.activate()
        made.append(stubber)
        queued = QUEUE.pop(0)
        queued(stubber)
        return api

    monkeypatch.setattr(aws._Factory, "sts", sts)
    return made


QUEUE: list[Any] = []
CREDENTIALS = {
    "AccessKeyId": "ASIAROUTINGROLEKEY01",
    "SecretAccessKey": "s" * 40,
    "SessionToken": "token",
    "Expiration": "2030-01-01T00:00:00Z",
}


def answer(role: str, external_id: Optional[str], key: str = CREDENTIALS["AccessKeyId"]) -> Any:
    def queue(stubber: Stubber) -> None:
        wanted = {"RoleArn": role, "RoleSessionName": ANY, "DurationSeconds": 900}
        if external_id:
            wanted["ExternalId"] = external_id
        stubber.add_response(
            "assume_role", {"Credentials": {**CREDENTIALS, "AccessKeyId": key}}, wanted
        )

    return queue


def denied(stubber: Stubber) -> None:
    stubber.add_client_error(
        "assume_role", "AccessDenied", "User: x is not authorized", http_status_code=403
    )


def settings(**kw: Any) -> AwsSettings:
    return AwsSettings(endpoint_url="http://127.0.0.1:9", **kw)


@pytest.mark.usefixtures("node_env")
def test_assume_gives_an_ec2_api_signing_as_the_role(monkeypatch: pytest.MonkeyPatch) -> None:
    stubbed_sts(monkeypatch)
    QUEUE[:] = [answer(ROLE, "ext-id")]
    node = connect(settings(proxy="http://127.0.0.1:3128"), "eu-central-1", Deadline(20), "t")
    routing = node.assume(ROLE, "ext-id", "the routing role")
    assert routing.client.meta.service_model.service_name == "ec2"
    signing = routing.client._request_signer._credentials
    assert signing.access_key == "ASIAROUTINGROLEKEY01"
    assert node.client._request_signer._credentials.access_key == "AKIDEXAMPLE"
    assert routing.principal.name == f"the routing role {ROLE}"
    assert node.calls == 1  # the AssumeRole counts in the action's calls
    # one Config for every client: the proxy, the timeouts, no SDK retries
    for client in (node.client, routing.client):
        assert client.meta.config.proxies == {
            "http": "http://127.0.0.1:3128",
            "https": "http://127.0.0.1:3128",
        }
        assert client.meta.config.retries["total_max_attempts"] == 1


@pytest.mark.usefixtures("node_env")
def test_assume_role_denied_names_this_node(monkeypatch: pytest.MonkeyPatch) -> None:
    stubbed_sts(monkeypatch)
    QUEUE[:] = [denied]
    node = connect(settings(), "eu-central-1", Deadline(20), "t")
    with pytest.raises(OCFError) as info:
        node.assume(ROLE, None, "the routing role")
    assert info.value.rc == OCF.ERR_PERM
    assert info.value.reason.startswith(f"this node may not sts:AssumeRole on {ROLE} (AccessDenied")
    assert "this node's instance role" in info.value.reason
    assert f"trust policy of {ROLE}" in info.value.reason


@pytest.mark.usefixtures("node_env")
def test_the_chain_assumes_with_role_arns_credentials_and_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = "arn:aws:iam::123456789012:role/cluster"
    stubbed_sts(monkeypatch)
    QUEUE[:] = [answer(cluster, None, "ASIACLUSTERROLEKEY01"), denied]
    node = connect(settings(role_arn=cluster), "eu-central-1", Deadline(20), "t")
    assert node.client._request_signer._credentials.access_key == "ASIACLUSTERROLEKEY01"
    assert node.principal.name == f"the role {cluster} (role_arn)"
    with pytest.raises(OCFError) as info:
        node.assume(ROLE, "ext", "the routing role")
    assert info.value.rc == OCF.ERR_PERM
    reason = info.value.reason
    assert reason.startswith(f"the role {cluster} (role_arn) may not sts:AssumeRole on {ROLE}")
    assert f"IAM policy of the role {cluster}" in reason
    assert "sts:ExternalId" in reason


def test_a_route_call_denied_names_the_routing_role() -> None:
    client: Any = botocore.session.get_session().create_client(
        "ec2",
        region_name="eu-central-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    )
    api = Api(
        client,
        Deadline(10),
        principal=aws.Principal(f"the routing role {ROLE}", "allow it in that role's IAM policy"),
    )
    with Stubber(client) as stubber:
        stubber.add_client_error("replace_route", "UnauthorizedOperation", "no", 403)
        with pytest.raises(OCFError) as info:
            api.call(
                "ReplaceRoute",
                RouteTableId="rtb-11111111",
                DestinationCidrBlock="192.168.10.1/32",
                NetworkInterfaceId="eni-11111111",
            )
    assert info.value.rc == OCF.ERR_PERM
    assert info.value.reason == (
        f"the routing role {ROLE} may not ec2:ReplaceRoute on rtb-11111111 "
        "(UnauthorizedOperation: no); allow it in that role's IAM policy"
    )


@pytest.mark.usefixtures("node_env")
def test_a_role_of_another_partition_is_refused() -> None:
    node = connect(settings(), "eu-central-1", Deadline(20), "t")
    with pytest.raises(OCFError) as info:
        node.assume("arn:aws-cn:iam::210987654321:role/r", None, "the routing role")
    assert info.value.rc == OCF.ERR_CONFIGURED
    assert "partition aws-cn" in info.value.reason


# The STS client as connect() makes it, under a given Python (its botocore), in a child process
# without a network: the endpoint it would send AssumeRole to, and botocore's own default.
PROBE = r"""
import json, sys
import botocore.session
from ipfailover.aws.client import connect
from ipfailover.config.params import AwsSettings
from ocf_shim import Deadline
region, sts_url = sys.argv[1], sys.argv[2] or None
default = botocore.session.get_session().create_client(
    "sts", region_name=region, aws_access_key_id="x", aws_secret_access_key="y"
)
api = connect(AwsSettings(endpoint_url="http://127.0.0.1:9", sts_endpoint_url=sts_url), region,
              Deadline(30), "t")
ours = api._factory.sts(None, api.principal).client
print(json.dumps({"botocore": botocore.__version__, "default": default.meta.endpoint_url,
                  "ours": ours.meta.endpoint_url}))
"""


def pythons() -> list[str]:
    found = [sys.executable]
    floor = ROOT / ".compat" / "floor" / "bin" / "python"
    if floor.exists():
        found.append(str(floor))
    return found


@pytest.mark.parametrize("python", pythons(), ids=lambda p: "floor" if ".compat" in p else "venv")
@pytest.mark.parametrize("region", ["eu-central-1", "us-east-1", "ap-southeast-3"])
def test_sts_goes_to_the_regional_endpoint_on_every_botocore(python: str, region: str) -> None:
    """The floor botocore (1.29) sends the regions of 2015 and older to sts.amazonaws.com by
    default; ours goes to the region's own endpoint, or sts_endpoint_url."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT / "lib"),
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
        "HOME": "/nonexistent",
    }
    for sts_url, wanted in (
        ("", f"https://sts.{region}.amazonaws.com"),
        ("https://vpce-1.sts.example:8443", "https://vpce-1.sts.example:8443"),
    ):
        no_network = ["unshare", "--net", "--"] if os.geteuid() == 0 else []
        done = subprocess.run(
            [*no_network, python, "-c", PROBE, region, sts_url],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        got = json.loads(done.stdout)
        assert got["ours"] == wanted, got
        if got["botocore"].startswith("1.29.") and region != "ap-southeast-3" and not sts_url:
            assert got["default"] == "https://sts.amazonaws.com"  # what we avoid
