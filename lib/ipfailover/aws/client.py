"""The one place where EC2 is called: client creation, retries inside the deadline, error mapping.

botocore is used directly (boto3 adds nothing we need and costs import time). The client is
created once per action; botocore's own retries are switched off (one attempt per call) so that
all retrying happens here, against the action's deadline, with jittered backoff.

Everything botocore does for us (session, configuration files, credentials, the service model,
signing, sending) happens inside one boundary: :func:`connect` and :meth:`Api.call` catch every
exception and :func:`map_exception` turns it into an :class:`OCFError` by family, with a default,
so no action ever ends in a traceback or an "unexpected error":

- what is wrong with this node's AWS set-up (a profile missing from its configuration, a profile
  with a key id but no secret, an unreadable or unparsable configuration file, an unusable
  ``ca_bundle``, a ``credential_process`` program that is missing or not executable): 2;
- a denied permission: 4;
- software or model data missing (``DataNotFoundError``, ``UnknownServiceError``...): 5;
- values wrong in themselves (botocore's parameter validation): 6;
- network and TLS trouble: retried until the deadline, then 1;
- anything else, including a ``credential_process`` that runs and fails (an IAM Roles Anywhere
  helper or aws-vault cannot reach its service, a locked keyring: it may work on the next try,
  and 2 would ban this node for good), a damaged model (``JSONDecodeError``, ``KeyError``...):
  1, with a reason that names the exception class.

What can be checked without the network is checked first (:func:`check_local`), so a missing
file gives 2 at once instead of a network error after half the timeout. Messages are cut short
and never include credentials (botocore's messages name providers and variables, not values).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Optional

from ipfailover import __version__
from ipfailover.aws.errors import (
    NO_CREDENTIALS,
    guarded,
    is_transient,
    map_client_error,
    map_exception,
    short,
)
from ipfailover.aws.retry import backoff, is_retryable
from ipfailover.config.params import AwsSettings
from ocf_shim import (
    ArgsError,
    Deadline,
    GenericError,
    NotInstalledError,
    get_log,
)

if TYPE_CHECKING:
    from botocore.client import BaseClient

log = get_log("ipfailover")


IMDS_HOST = "169.254.169.254"
# The metadata service's addresses as NO_PROXY must name them: urllib compares the URL's netloc,
# which keeps an IPv6 address in brackets (newer Pythons strip them: both forms are listed).
IMDS_NO_PROXY = (IMDS_HOST, "[fd00:ec2::254]", "fd00:ec2::254")


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
        # Work worth doing once the action's own work is done, when time is left (see finish).
        self.deferred: list[Callable[[], object]] = []

    def finish(self, ample: float = 3.0) -> None:
        """Run the deferred work (building the trimmed model) if ``ample`` seconds are left.

        It never fails the action: an error is a debug record, and the work is tried again by
        a later action.
        """
        work, self.deferred = self.deferred, []
        for job in work:
            if not self.deadline.allows(ample):
                log.debug("no time left for deferred work")
                return
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - optional work: never the action's result
                log.debug("deferred work failed: %s: %s", type(exc).__name__, short(exc))

    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore import exceptions as bex
        from botocore import xform_name

        try:
            method = getattr(self.client, xform_name(operation))
        except AttributeError as exc:  # a client made from a model without the operation
            raise map_exception(exc, f"EC2 {operation}") from None
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
            except Exception as exc:  # noqa: BLE001 - the boundary: every exception is mapped
                if not is_transient(exc):
                    raise map_exception(exc, f"EC2 {operation}") from None
                last = f"{type(exc).__name__}: {short(exc)}"
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


def imds_credential_fetch(deadline: Deadline) -> tuple[float, int]:
    """Timeout and attempts of botocore's own fetch of the role's credentials from the metadata
    service: up to 3 attempts of up to 2 s, within a third of the time left."""
    share = deadline.remaining() / 3
    attempts = 3 if share >= 3.0 else 2 if share >= 2.0 else 1
    return max(1.0, min(2.0, share / attempts)), attempts


def client_timeouts(deadline: Deadline) -> tuple[float, float]:
    """Connect and read timeouts that leave room for retries inside the remaining budget."""
    remaining = deadline.remaining()
    connect = min(2.0, max(0.2, remaining / 6))
    read = min(10.0, max(0.5, remaining / 3))
    return connect, read


def bypass_proxy_for_imds(environ: MutableMapping[str, str]) -> None:
    """Name the metadata service's addresses in NO_PROXY (and no_proxy) of ``environ``.

    botocore's own credential fetch from the metadata service honours the proxy variables of
    the environment; a proxy could only answer for another machine, or not at all.
    """
    for var in ("NO_PROXY", "no_proxy"):
        current = environ.get(var, "")
        names = [name.strip() for name in current.split(",") if name.strip()]
        missing = [host for host in IMDS_NO_PROXY if host not in names]
        if missing:
            environ[var] = ",".join(names + missing)


def check_local(environ: Mapping[str, str], settings: AwsSettings) -> None:
    """This node's AWS files, checked before any network call: 2 at once, naming the file.

    botocore silently skips a configuration file it cannot read (the profile then looks
    missing) and finds a bad ``ca_bundle`` only at the first TLS handshake, as a network error.
    """
    home = environ.get("HOME") or os.path.expanduser("~")
    for var, default, what in (
        ("AWS_CONFIG_FILE", ".aws/config", "AWS configuration file"),
        ("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials", "AWS credentials file"),
    ):
        path = os.path.expanduser(environ.get(var) or os.path.join(home, default))
        if os.path.lexists(path):  # a missing one is no error: botocore does without
            try:
                with open(path, "rb") as stream:
                    stream.read(1)
            except OSError as exc:
                raise ArgsError(
                    f"the {what} {path} cannot be read on this node: {exc.strerror or exc}"
                ) from None
    if settings.ca_bundle:
        check_ca_bundle(settings.ca_bundle, "parameter ca_bundle")


def check_ca_bundle(path: str, source: str) -> None:
    """A CA bundle that exists, can be read and holds a certificate (2 otherwise).

    The content check looks for a PEM certificate (what botocore and urllib3 load) instead of
    loading the bundle into an SSL context, which costs ~50 ms for a distribution's bundle.
    """
    try:
        if os.path.isdir(path):
            os.listdir(path)  # a directory of hashed certificates (c_rehash): readable is enough
            return
        with open(path, "rb") as stream:
            content = stream.read(16 << 20)
    except FileNotFoundError:
        raise ArgsError(f"the CA bundle {path} ({source}) does not exist on this node") from None
    except OSError as exc:
        raise ArgsError(
            f"the CA bundle {path} ({source}) cannot be read on this node: {exc.strerror or exc}"
        ) from None
    if b"-----BEGIN CERTIFICATE-----" not in content and b"-----BEGIN TRUSTED" not in content:
        raise ArgsError(f"the CA bundle {path} ({source}) holds no PEM certificate")


def connect(
    settings: AwsSettings,
    region: str,
    deadline: Deadline,
    agent: str,
    cache_dir: Optional[str] = None,
) -> Api:
    """An EC2 :class:`Api` for this action; credentials from the default chain, a profile or
    an assumed role. ``cache_dir``: where the trimmed EC2 model may be built (botomodel)."""
    bypass_proxy_for_imds(os.environ)
    check_local(os.environ, settings)
    try:
        import botocore.session
        from botocore.config import Config
    except ImportError as exc:
        raise NotInstalledError(f"botocore cannot be imported: {exc}") from None
    from ipfailover.aws import botomodel

    reading = "reading this node's AWS configuration"
    session = guarded(reading, lambda: botocore.session.Session(profile=settings.profile))
    profiles = guarded(reading, lambda: list(session.available_profiles), local_files=True)
    if settings.profile is not None and settings.profile not in profiles:
        raise ArgsError(
            f"AWS profile {settings.profile!r} is not in this node's AWS configuration "
            "(AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE, or ~/.aws of the user Pacemaker "
            "runs the agent as)"
        )
    guarded(reading, session.get_scoped_config, local_files=True)  # e.g. AWS_PROFILE unknown
    configured_bundle = guarded(reading, lambda: session.get_config_variable("ca_bundle"))
    if not settings.ca_bundle and configured_bundle:
        check_ca_bundle(str(configured_bundle), "ca_bundle of the AWS configuration")
    # botocore asks the metadata service for the instance role's credentials once, with a 1 s
    # timeout: a busy or throttled metadata service then reads as "no credentials". Give it the
    # attempts and the time our own client gets, inside the action's budget.
    timeout, attempts = imds_credential_fetch(deadline)
    session.set_config_variable("metadata_service_timeout", timeout)
    session.set_config_variable("metadata_service_num_attempts", attempts)
    credentials = guarded("resolving AWS credentials", session.get_credentials, local_files=True)
    if credentials is None:
        raise GenericError(NO_CREDENTIALS)
    trimmed = guarded("loading the trimmed EC2 model", lambda: botomodel.attach(session, cache_dir))
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
            guarded(
                "creating the STS client",
                lambda: session.create_client(
                    "sts",
                    region_name=region,
                    endpoint_url=settings.sts_endpoint_url,
                    verify=verify,
                    config=config,
                ),
            ),
            deadline,
            attempt_time=connect_timeout + read_timeout,
        )
        answer = sts.call(
            "AssumeRole",
            RoleArn=settings.role_arn,
            RoleSessionName=f"ipfailover-{agent}-{os.getpid()}"[:64],
            DurationSeconds=900,
        )

        def assumed() -> None:
            creds = answer["Credentials"]
            session.set_credentials(
                creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
            )

        guarded("using the credentials of the assumed role", assumed)

    def ec2_client() -> BaseClient:
        return session.create_client(
            "ec2",
            region_name=region,
            endpoint_url=settings.endpoint_url,
            verify=verify,
            config=config,
        )

    try:
        client = ec2_client()
    except Exception as exc:  # noqa: BLE001 - the boundary: every exception is mapped
        if trimmed is None:
            raise map_exception(exc, "creating the EC2 client") from None
        # "Slower, never wrong": botocore's own model, whatever went wrong with ours.
        log.debug("the trimmed EC2 model %s cannot be used (%s)", trimmed, type(exc).__name__)
        guarded("creating the EC2 client", lambda: botomodel.detach(session))
        trimmed = None
        client = guarded("creating the EC2 client", ec2_client)
    api = Api(client, deadline, attempt_time=connect_timeout + read_timeout)
    if trimmed is None and cache_dir:
        api.deferred.append(lambda: botomodel.build(session, cache_dir))
    return api
