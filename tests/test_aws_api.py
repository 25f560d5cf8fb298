"""The EC2 call wrapper: retries inside the deadline, error mapping, dry runs.

botocore's Stubber answers in place of EC2; a fake clock and an injected sleep keep the tests
instant and let them check that no wait ever overruns the deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber

from ipfailover.aws.client import Api
from ipfailover.aws.errors import map_client_error
from ocf_shim import OCF, Deadline, OCFError


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_api(budget: float = 20.0) -> tuple[Api, Stubber, FakeTime]:
    fake = FakeTime()
    client: Any = botocore.session.get_session().create_client(
        "ec2",
        region_name="eu-central-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stubber = Stubber(client)
    stubber.activate()
    deadline = Deadline(budget, clock=fake.clock)

    def delays() -> Iterator[float]:
        while True:
            yield 0.5

    api = Api(client, deadline, attempt_time=1.0, sleep=fake.sleep, delays=delays)
    return api, stubber, fake


PARAMS = {"RouteTableIds": ["rtb-11111111"]}


def test_throttling_is_retried_until_success() -> None:
    api, stubber, fake = make_api()
    for _ in range(2):
        stubber.add_client_error(
            "describe_route_tables", "RequestLimitExceeded", http_status_code=503
        )
    stubber.add_response("describe_route_tables", {"RouteTables": []}, PARAMS)
    assert api.call("DescribeRouteTables", **PARAMS)["RouteTables"] == []
    assert api.calls == 3
    assert fake.sleeps == [0.5, 0.5]
    stubber.assert_no_pending_responses()


def test_server_errors_are_retried() -> None:
    api, stubber, _ = make_api()
    stubber.add_client_error("describe_route_tables", "InternalError", http_status_code=500)
    stubber.add_client_error("describe_route_tables", "Weird", http_status_code=502)
    stubber.add_response("describe_route_tables", {"RouteTables": []}, PARAMS)
    api.call("DescribeRouteTables", **PARAMS)
    assert api.calls == 3


def test_endless_throttling_gives_up_inside_the_deadline() -> None:
    api, stubber, fake = make_api(budget=10.0)
    for _ in range(100):
        stubber.add_client_error(
            "describe_route_tables", "RequestLimitExceeded", http_status_code=503
        )
    with pytest.raises(OCFError) as info:
        api.call("DescribeRouteTables", **PARAMS)
    assert info.value.rc == OCF.ERR_GENERIC
    assert "RequestLimitExceeded" in info.value.reason
    # Never waited past the budget minus the margin, and left room for one more attempt.
    assert fake.now + 1.0 <= 10.0 - api.deadline.margin + 0.5


@pytest.mark.parametrize(
    ("code", "status", "rc"),
    [
        ("UnauthorizedOperation", 403, OCF.ERR_PERM),
        ("AuthFailure", 401, OCF.ERR_PERM),
        ("InvalidRouteTableID.NotFound", 400, OCF.ERR_CONFIGURED),
        ("InvalidParameterValue", 400, OCF.ERR_CONFIGURED),
        ("IncorrectState", 400, OCF.ERR_GENERIC),
    ],
)
def test_errors_map_to_ocf_codes_without_retry(code: str, status: int, rc: OCF) -> None:
    api, stubber, fake = make_api()
    stubber.add_client_error("describe_route_tables", code, http_status_code=status)
    with pytest.raises(OCFError) as info:
        api.call("DescribeRouteTables", **PARAMS)
    assert info.value.rc == rc
    assert api.calls == 1
    assert fake.sleeps == []


def test_permission_reason_names_the_permission() -> None:
    error = map_client_error("CreateRoute", "UnauthorizedOperation", "You are not authorized")
    assert error.rc == OCF.ERR_PERM
    assert "ec2:CreateRoute" in error.reason


def test_dry_run_succeeds_on_dry_run_operation() -> None:
    api, stubber, fake = make_api()
    stubber.add_client_error("create_route", "DryRunOperation", http_status_code=412)
    api.dry_run(
        "CreateRoute",
        RouteTableId="rtb-11111111",
        DestinationCidrBlock="192.168.0.1/32",
        NetworkInterfaceId="eni-11111111",
    )  # DryRunOperation is the success of a check: no exception
    stubber.assert_no_pending_responses()
    assert api.calls == 1
    assert fake.sleeps == []


def test_dry_run_that_is_denied_is_a_permission_error() -> None:
    api, stubber, _ = make_api()
    stubber.add_client_error("create_route", "UnauthorizedOperation", http_status_code=403)
    with pytest.raises(OCFError) as info:
        api.dry_run(
            "CreateRoute",
            RouteTableId="rtb-11111111",
            DestinationCidrBlock="192.168.0.1/32",
            NetworkInterfaceId="eni-11111111",
        )
    assert info.value.rc == OCF.ERR_PERM
