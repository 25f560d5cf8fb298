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

One session and one botocore Config serve every client of the action: EC2, STS (always the
region's own endpoint, or ``sts_endpoint_url``) and, through :meth:`Api.assume`, EC2 signed by
an assumed role (aws-overlayip's ``routing_table_role``). Each :class:`Api` knows its
:class:`Principal`, so a denial says who may not do what: "this node may not sts:AssumeRole on
arn:...", "the routing role arn:... may not ec2:ReplaceRoute on rtb-...".

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
from ipfailover.aws import skip_unused_imports
from ipfailover.aws.errors import (
    NO_CREDENTIALS,
    guarded,
    is_transient,
    map_client_error,
    map_exception,
    short,
)
from ipfailover.aws.proxy import proxy_url, refusal
from ipfailover.aws.retry import backoff, is_retryable
from ipfailover.config.params import AwsSettings
from ocf_shim import (
    ArgsError,
    ConfigError,
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


# Who makes the calls of an Api, for the reasons of its denials (see Principal).
NODE = "this node"


class Principal:
    """Whose credentials an :class:`Api` signs with: ``name`` begins a denial's reason ("the
    routing role arn:... may not ec2:ReplaceRoute on rtb-..."), ``fix`` ends it."""

    __slots__ = ("fix", "name")

    def __init__(self, name: str, fix: str) -> None:
        self.name = name
        self.fix = fix


NODE_PRINCIPAL = Principal(NODE, "allow it in the IAM policy of this node's instance role")


class Api:
    """A botocore client (EC2, or STS for the roles) bound to one action's deadline.

    ``call("CreateRoute", RouteTableId=...)`` returns the parsed response or raises an
    :class:`OCFError` subclass. ``calls`` counts the requests sent (for logs and the benchmark).
    ``principal`` is whose credentials sign the calls; :meth:`assume` makes the Api of a role
    (the routing role of aws-overlayip) from the same session and configuration.
    """

    def __init__(
        self,
        client: BaseClient,
        deadline: Deadline,
        attempt_time: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        delays: Callable[[], Iterator[float]] = backoff,
        *,
        service: str = "ec2",
        principal: Principal = NODE_PRINCIPAL,
        factory: Optional[_Factory] = None,
    ) -> None:
        self.client = client
        self.deadline = deadline
        self.attempt_time = attempt_time  # the longest one attempt can take (connect + read)
        self._sleep = sleep
        self._delays = delays
        self._lock = threading.Lock()
        self.calls = 0
        self.service = service
        self.principal = principal
        self._factory = factory
        # Work worth doing once the action's own work is done, when time is left (see finish).
        self.deferred: list[Callable[[], object]] = []

    def assume(self, role_arn: str, external_id: Optional[str], what: str) -> Api:
        """An EC2 Api with the credentials of ``role_arn``, assumed (sts:AssumeRole through the
        regional STS endpoint, or sts_endpoint_url) with this Api's credentials: the instance
        role's, or role_arn's (a chain: the session then lasts at most an hour; ours asks for
        15 minutes). ``what`` names the role in reasons ("the routing role"). Its calls count in
        this Api's ``calls``."""
        if self._factory is None:
            raise GenericError(f"cannot assume {role_arn}: this EC2 client was not made by connect")
        return self._factory.assumed(self, role_arn, external_id, what)

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

        label = f"{self.service.upper()} {operation}"
        try:
            method = getattr(self.client, xform_name(operation))
        except AttributeError as exc:  # a client made from a model without the operation
            raise map_exception(exc, label) from None
        delays = self._delays()
        attempts = 0
        while True:
            self.deadline.check(f"calling {label}")
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
                if status == 407:  # an http endpoint through a proxy that wants credentials
                    raise refusal(status, label) from None
                if not is_retryable(code, status):
                    raise map_client_error(
                        operation,
                        code,
                        message,
                        service=self.service,
                        principal=self.principal.name,
                        resource=_resource_of(kwargs),
                        fix=self.principal.fix,
                    ) from None
                last = f"{code}: {message}" if message else code
            except Exception as exc:  # noqa: BLE001 - the boundary: every exception is mapped
                if not is_transient(exc):
                    raise map_exception(exc, label) from None
                last = f"{type(exc).__name__}: {short(exc)}"
            delay = next(delays)
            if not self.deadline.allows(delay + max(0.2, self.attempt_time)):
                raise GenericError(
                    f"{label} did not succeed before the action timeout "
                    f"({attempts} attempts, last: {last})"
                )
            log.debug("%s failed (%s); attempt %d in %.2fs", label, last, attempts + 1, delay)
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


# The parameters that name the one resource a call acts on, for the reason of a denial.
_RESOURCE_KEYS = (
    "RouteTableId",
    "NetworkInterfaceId",
    "AttachmentId",
    "AllocationId",
    "AssociationId",
    "InstanceId",
    "RoleArn",
)


def _resource_of(kwargs: Mapping[str, Any]) -> Optional[str]:
    for key in _RESOURCE_KEYS:
        value = kwargs.get(key)
        if isinstance(value, str) and value:
            return value
    return None


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
    proxy = proxy_url(settings)  # with the credentials of proxy_credentials_file (2 if unsafe)
    skip_unused_imports(os.environ)
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
    # STS through the region's own endpoint, whatever the botocore: before 1.30 ("legacy") it
    # sends the regions of 2015 and older to sts.amazonaws.com, which a network with only an
    # STS interface endpoint cannot reach. sts_endpoint_url, when set, wins.
    session.set_config_variable("sts_regional_endpoints", "regional")
    trimmed = guarded("loading the trimmed EC2 model", lambda: botomodel.attach(session, cache_dir))
    connect_timeout, read_timeout = client_timeouts(deadline)
    # The one Config of every client of the action (EC2, STS, the routing role's EC2).
    config = Config(
        region_name=region,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},
        proxies={"http": proxy, "https": proxy} if proxy else None,
        user_agent_extra=f"ipfailover-agents/{__version__} ({agent})",
        max_pool_connections=16,
    )
    factory = _Factory(
        session,
        config,
        settings=settings,
        region=region,
        deadline=deadline,
        agent=agent,
        attempt_time=connect_timeout + read_timeout,
    )
    principal = factory.take_role_arn() if settings.role_arn else NODE_PRINCIPAL

    def ec2_client() -> BaseClient:
        return factory.client("ec2", settings.endpoint_url, None)

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
    api = Api(
        client,
        deadline,
        attempt_time=connect_timeout + read_timeout,
        principal=principal,
        factory=factory,
    )
    if trimmed is None and cache_dir:
        api.deferred.append(lambda: botomodel.build(session, cache_dir))
    return api


class _Factory:
    """What :func:`connect` prepared once (the session, the one Config, the settings), to make
    the action's further clients: STS, and EC2 with an assumed role's credentials."""

    def __init__(
        self,
        session: Any,
        config: Any,
        *,
        settings: AwsSettings,
        region: str,
        deadline: Deadline,
        agent: str,
        attempt_time: float,
    ) -> None:
        self.session = session
        self.config = config
        self.settings = settings
        self.region = region
        self.deadline = deadline
        self.agent = agent
        self.attempt_time = attempt_time

    def client(
        self, service: str, endpoint_url: Optional[str], credentials: Optional[Mapping[str, str]]
    ) -> BaseClient:
        """A botocore client of the session: its own credentials, or ``credentials``."""
        keys: dict[str, Any] = {}
        if credentials is not None:
            keys = {
                "aws_access_key_id": credentials["AccessKeyId"],
                "aws_secret_access_key": credentials["SecretAccessKey"],
                "aws_session_token": credentials["SessionToken"],
            }
        verify: Any = self.settings.ca_bundle if self.settings.ca_bundle else None
        client: BaseClient = self.session.create_client(
            service,
            region_name=self.region,
            endpoint_url=endpoint_url,
            verify=verify,
            config=self.config,
            **keys,
        )
        return client

    def sts(self, credentials: Optional[Mapping[str, str]], principal: Principal) -> Api:
        client = guarded(
            "creating the STS client",
            lambda: self.client("sts", self.settings.sts_endpoint_url, credentials),
        )
        return Api(
            client,
            self.deadline,
            attempt_time=self.attempt_time,
            service="sts",
            principal=principal,
        )

    def assume_role(
        self, sts: Api, role_arn: str, external_id: Optional[str], purpose: str
    ) -> dict[str, Any]:
        """The AssumeRole answer for ``role_arn``; 15 minutes, the shortest session STS gives
        (a chained one may last an hour at most)."""
        extra = {"ExternalId": external_id} if external_id else {}
        return sts.call(
            "AssumeRole",
            RoleArn=role_arn,
            RoleSessionName=f"ipfailover-{purpose}-{os.getpid()}"[:64],
            DurationSeconds=900,
            **extra,
        )

    def take_role_arn(self) -> Principal:
        """Assume role_arn with the node's credentials and make them the session's: every
        client made afterwards signs as role_arn (the routing role's STS client too)."""
        role_arn = self.settings.role_arn
        assert role_arn is not None
        sts = self.sts(None, Principal(NODE, _trust_fix("this node's instance role", role_arn)))
        answer = self.assume_role(sts, role_arn, None, self.agent)

        def assumed() -> None:
            creds = answer["Credentials"]
            self.session.set_credentials(
                creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
            )

        guarded("using the credentials of the assumed role", assumed)
        return Principal(f"the role {role_arn} (role_arn)", "allow it in that role's IAM policy")

    def assumed(self, base: Api, role_arn: str, external_id: Optional[str], what: str) -> Api:
        """The EC2 Api of ``role_arn`` assumed with ``base``'s credentials (see Api.assume)."""
        check_partition(role_arn, self.region, what)
        # STS with the credentials of base's session: the instance role's or role_arn's.
        fix = _trust_fix(_whose(base.principal), role_arn, external_id)
        sts = self.sts(None, Principal(base.principal.name, fix))
        try:
            answer = self.assume_role(sts, role_arn, external_id, f"{self.agent}-routes")
        finally:
            with base._lock:
                base.calls += sts.calls
        creds = answer.get("Credentials") or {}
        missing = [
            k for k in ("AccessKeyId", "SecretAccessKey", "SessionToken") if not creds.get(k)
        ]
        if missing:
            raise GenericError(f"STS AssumeRole of {role_arn} answered without {missing[0]}")
        client = guarded(
            f"creating the EC2 client of {what}",
            lambda: self.client("ec2", self.settings.endpoint_url, creds),
        )
        return Api(
            client,
            self.deadline,
            attempt_time=self.attempt_time,
            principal=Principal(
                f"{what} {role_arn}", "allow it in that role's IAM policy (its own account's)"
            ),
            factory=self,
        )


def _trust_fix(whose: str, role_arn: str, external_id: Optional[str] = None) -> str:
    return (
        f"allow sts:AssumeRole on it in the IAM policy of {whose}, and name that role in the "
        f"trust policy of {role_arn}"
        + (" with this external id (sts:ExternalId)" if external_id else "")
    )


def _whose(principal: Principal) -> str:
    if principal is NODE_PRINCIPAL:
        return "this node's instance role"
    return principal.name.split(" (", 1)[0]


def check_partition(role_arn: str, region: str, what: str) -> None:
    """A role of another partition than the region's cannot be assumed there (6)."""
    from ipfailover.aws.partition import partition_of
    from ipfailover.config.syntax import arn_partition

    partition = partition_of(region)
    if partition is not None and arn_partition(role_arn) != partition.name:
        raise ConfigError(
            f"{what} {role_arn} is in the partition {arn_partition(role_arn)}, but region "
            f"{region} is in {partition.name}: a role can only be assumed in its own partition"
        )
