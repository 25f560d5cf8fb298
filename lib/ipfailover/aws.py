"""The one place where EC2 is called: client creation, retries inside the deadline, error mapping.

botocore is used directly (boto3 adds nothing we need and costs import time). The client is
created once per action; botocore's own retries are switched off (one attempt per call) so that
all retrying happens here, against the action's deadline, with jittered backoff.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Optional

from ocf_shim import ConfigError, Deadline, GenericError, OCFError, get_log

from . import __version__
from .params import AwsSettings
from .retry import PERMISSION_CODES, backoff, is_retryable

if TYPE_CHECKING:
    from botocore.client import BaseClient

log = get_log("ipfailover")

# Errors of the AWS side that mean "this configuration cannot work": exit 6.
_CONFIG_SUFFIXES = (".NotFound", ".Malformed")
_CONFIG_CODES = frozenset(
    {"InvalidParameterValue", "InvalidParameterCombination", "InvalidParameter", "MissingParameter"}
)
IMDS_HOST = "169.254.169.254"


class AwsError(OCFError):
    """An EC2 error that is not retryable; ``code`` is the AWS error code."""

    def __init__(self, reason: str, rc: int, code: str, operation: str) -> None:
        super().__init__(reason, rc)
        self.code = code
        self.operation = operation


class Api:
    """A botocore client (EC2, or STS for role_arn) bound to one action's deadline.

    ``call("CreateRoute", RouteTableId=...)`` returns the parsed response or raises an
    :class:`OCFError` subclass. ``calls`` counts the requests sent (for logs and the benchmark).
    """

    def __init__(
        self,
        client: BaseClient,
        deadline: Deadline,
        attempt_time: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        delays: Callable[[], Iterator[float]] = backoff,
    ) -> None:
        self.client = client
        self.deadline = deadline
        self.attempt_time = attempt_time  # the longest one attempt can take (connect + read)
        self._sleep = sleep
        self._delays = delays
        self._lock = threading.Lock()
        self.calls = 0

    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore import exceptions as bex
        from botocore import xform_name

        method = getattr(self.client, xform_name(operation))
        delays = self._delays()
        attempts = 0
        while True:
            self.deadline.check(f"calling EC2 {operation}")
            attempts += 1
            with self._lock:
                self.calls += 1
            try:
                response: dict[str, Any] = method(**kwargs)
                return response
            except bex.ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", "Unknown"))
                message = str(error.get("Message", "")).strip()
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
                if code == "DryRunOperation":
                    raise
                if not is_retryable(code, status):
                    raise map_client_error(operation, code, message) from None
                last = f"{code}: {message}" if message else code
            except (
                bex.EndpointConnectionError,
                bex.ConnectTimeoutError,
                bex.ReadTimeoutError,
                bex.ConnectionClosedError,
            ) as exc:
                last = f"{type(exc).__name__}: {exc}"
            except bex.NoCredentialsError:
                raise GenericError(
                    "no AWS credentials found: attach an IAM instance profile to the instance, "
                    "or set the profile or role_arn parameter"
                ) from None
            except bex.ParamValidationError as exc:
                raise ConfigError(f"EC2 {operation} rejected the request: {exc}") from None
            except bex.BotoCoreError as exc:
                last = f"{type(exc).__name__}: {exc}"
            delay = next(delays)
            if not self.deadline.allows(delay + max(0.2, self.attempt_time)):
                raise GenericError(
                    f"EC2 {operation} did not succeed before the action timeout "
                    f"({attempts} attempts, last: {last})"
                )
            log.debug(
                "EC2 %s failed (%s); attempt %d in %.2fs", operation, last, attempts + 1, delay
            )
            self._sleep(delay)

    def dry_run(self, operation: str, **kwargs: Any) -> None:
        """Ask EC2 whether the call would be allowed, without making it (``DryRun=True``)."""
        from botocore import exceptions as bex

        try:
            self.call(operation, DryRun=True, **kwargs)
        except bex.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "DryRunOperation":
                return
            raise
        raise GenericError(f"EC2 {operation} with DryRun=true made the change instead of checking")


def map_client_error(operation: str, code: str, message: str) -> AwsError:
    """The OCF meaning of a non-retryable EC2 error."""
    detail = f"{code}: {message}" if message else code
    if code in PERMISSION_CODES:
        return AwsError(
            f"EC2 {operation} was denied ({detail}); allow ec2:{operation} in the IAM policy of "
            "the instance role",
            4,
            code,
            operation,
        )
    if code.endswith(_CONFIG_SUFFIXES) or code in _CONFIG_CODES:
        return AwsError(f"EC2 {operation} failed: {detail}", 6, code, operation)
    return AwsError(f"EC2 {operation} failed: {detail}", 1, code, operation)


def client_timeouts(deadline: Deadline) -> tuple[float, float]:
    """Connect and read timeouts that leave room for retries inside the remaining budget."""
    remaining = deadline.remaining()
    connect = min(2.0, max(0.2, remaining / 6))
    read = min(10.0, max(0.5, remaining / 3))
    return connect, read


def connect(settings: AwsSettings, region: str, deadline: Deadline, agent: str) -> Api:
    """An EC2 :class:`Api` for this action; credentials from the default chain, a profile or
    an assumed role."""
    # The metadata service must never be reached through a proxy from the environment.
    for name in ("NO_PROXY", "no_proxy"):
        current = os.environ.get(name, "")
        if IMDS_HOST not in current:
            os.environ[name] = f"{current},{IMDS_HOST}" if current else IMDS_HOST
    import botocore.session
    from botocore.config import Config

    from .botomodel import search_path

    try:
        session = botocore.session.Session(profile=settings.profile)
        session.get_scoped_config()  # an unknown profile fails here, clearly
    except Exception as exc:  # noqa: BLE001 - botocore raises several kinds here
        raise ConfigError(f"AWS profile {settings.profile!r} cannot be used: {exc}") from None
    trimmed = search_path()
    if trimmed is not None:
        session.get_component("data_loader").search_paths.insert(0, trimmed)
    connect_timeout, read_timeout = client_timeouts(deadline)
    config = Config(
        region_name=region,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},
        proxies={"http": settings.proxy, "https": settings.proxy} if settings.proxy else None,
        user_agent_extra=f"ipfailover-agents/{__version__} ({agent})",
        max_pool_connections=16,
    )
    verify: Any = settings.ca_bundle if settings.ca_bundle else None
    if settings.role_arn:
        sts = Api(
            session.create_client(
                "sts",
                region_name=region,
                endpoint_url=settings.sts_endpoint_url,
                verify=verify,
                config=config,
            ),
            deadline,
            attempt_time=connect_timeout + read_timeout,
        )
        creds = sts.call(
            "AssumeRole",
            RoleArn=settings.role_arn,
            RoleSessionName=f"ipfailover-{agent}-{os.getpid()}"[:64],
            DurationSeconds=900,
        )["Credentials"]
        session.set_credentials(
            creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
        )
    client = session.create_client(
        "ec2", region_name=region, endpoint_url=settings.endpoint_url, verify=verify, config=config
    )
    return Api(client, deadline, attempt_time=connect_timeout + read_timeout)


def error_code(exc: BaseException) -> Optional[str]:
    """The AWS error code carried by an exception, if any."""
    if isinstance(exc, AwsError):
        return exc.code
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None
