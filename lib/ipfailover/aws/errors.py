"""AWS errors in one place: the OCF meaning of every exception botocore may raise (by family, with a
default), of EC2's error codes, and the guard that applies that mapping around a call.

See ipfailover.aws.client for the families and their exit codes.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from typing import Optional, TypeVar

from ipfailover.aws.proxy import refusal, tunnel_status
from ipfailover.aws.retry import PERMISSION_CODES
from ocf_shim import ArgsError, ConfigError, GenericError, NotInstalledError, OCFError, PermError

# Errors of the AWS side that mean "this configuration cannot work": exit 6.
_CONFIG_SUFFIXES = (".NotFound", ".Malformed")
_CONFIG_CODES = frozenset(
    {"InvalidParameterValue", "InvalidParameterCombination", "InvalidParameter", "MissingParameter"}
)


# EC2 error codes the agents act on, by name (retry.py lists the retryable and permission ones).
ENI_NOT_FOUND = "InvalidNetworkInterfaceID.NotFound"
ROUTE_ALREADY_EXISTS = "RouteAlreadyExists"
INVALID_PARAMETER_VALUE = "InvalidParameterValue"
# A detach that finds the ENI detached (or detaching) already: nothing left to do.
IGNORED_DETACH_ERRORS = frozenset(
    {
        "IncorrectState",
        "InvalidAttachmentID.NotFound",
        "InvalidNetworkInterfaceAttachmentId.Malformed",
    }
)
# An attach that raced another node's: look again.
RACE_ATTACH_ERRORS = frozenset({"InvalidNetworkInterface.InUse", "IncorrectState"})


class AwsError(OCFError):
    """An EC2 error that is not retryable; ``code`` is the AWS error code."""

    def __init__(self, reason: str, rc: int, code: str, operation: str) -> None:
        super().__init__(reason, rc)
        self.code = code
        self.operation = operation


def map_client_error(
    operation: str,
    code: str,
    message: str,
    *,
    service: str = "ec2",
    principal: str = "this node",
    resource: Optional[str] = None,
    fix: str = "allow it in the IAM policy of the instance role",
) -> AwsError:
    """The OCF meaning of a non-retryable error of an AWS API (EC2, or STS for the roles).

    A denial names who was denied (``principal``: this node, the role of role_arn, the routing
    role), the permission, the resource when the request names one, and where to allow it.
    """
    detail = f"{code}: {message}" if message else code
    if code in PERMISSION_CODES:
        on = f" on {resource}" if resource else ""
        return AwsError(
            f"{principal} may not {service}:{operation}{on} ({detail}); {fix}",
            4,
            code,
            operation,
        )
    label = service.upper()
    if code.endswith(_CONFIG_SUFFIXES) or code in _CONFIG_CODES:
        return AwsError(f"{label} {operation} failed: {detail}", 6, code, operation)
    return AwsError(f"{label} {operation} failed: {detail}", 1, code, operation)


NO_CREDENTIALS = (
    "no AWS credentials found: attach an IAM instance profile to the instance, or set the "
    "profile or role_arn parameter"
)
# Files of this node whose failure to open is this node's problem (exit 2): a missing or
# non-executable credential_process program, a configuration file that is a directory...
_LOCAL_FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def _families() -> tuple[tuple[type[BaseException], ...], ...]:
    """botocore's exception classes by OCF family: this node's set-up (2), software (5),
    values (6), permissions (4).

    Looked up by name, since the classes differ between the oldest supported botocore and the
    newest (``LoginError`` is recent); a missing name is skipped.
    """
    from botocore import exceptions as bex

    def some(*names: str) -> tuple[type[BaseException], ...]:
        found = (getattr(bex, name, None) for name in names)
        return tuple(cls for cls in found if isinstance(cls, type))

    node = some(
        "ProfileNotFound",
        "PartialCredentialsError",
        "ConfigNotFound",
        "ConfigParseError",
        "InvalidConfigError",  # and InfiniteLoopConfigError: a profile's chain of roles
        "UnknownCredentialError",
        "UnknownTokenProviderError",
        "RefreshWithMFAUnsupportedError",
        "SSOTokenLoadError",  # "run aws sso login": a person's action on this node
        "UnauthorizedSSOTokenError",
        "LoginRefreshRequired",
        "LoginTokenLoadError",
        "InvalidDefaultsMode",
        "InvalidIMDSEndpointError",
        "InvalidIMDSEndpointModeError",
        "InvalidRetryConfigurationError",
        "InvalidSTSRegionalEndpointsConfigError",
        "InvalidEndpointDiscoveryConfigurationError",
        "InvalidChecksumConfigError",
        "InvalidProxiesConfigError",
        "InvalidS3AddressingStyleError",
        "InvalidS3UsEast1RegionalEndpointConfigError",
    )
    software = some(
        "DataNotFoundError",  # and UnknownServiceError
        "ApiVersionNotFoundError",
        "MissingDependencyException",
        "UnsupportedServiceProtocolsError",
    )
    values = some("ParamValidationError", "ValidationError")
    denied = some("LoginInsufficientPermissions")
    return node, software, values, denied


def is_transient(exc: BaseException) -> bool:
    """True for network and TLS trouble: the same request may succeed on a later attempt."""
    from botocore import exceptions as bex

    if tunnel_status(exc) is not None:  # a proxy refused: the same answer next time
        return False
    if isinstance(exc, (bex.HTTPClientError, bex.ConnectionError, bex.IncompleteReadError)):
        return True
    if isinstance(exc, (OCFError, bex.BotoCoreError, *_LOCAL_FILE_ERRORS)):
        return False
    return isinstance(exc, (OSError, http.client.HTTPException))


def map_exception(exc: BaseException, doing: str, local_files: bool = False) -> OCFError:
    """The OCF error for any exception raised while ``doing`` something with botocore.

    ``local_files``: the step reads this node's files or runs its programs (configuration,
    credentials), so a missing or unreadable one is this node's problem (2).
    """
    if isinstance(exc, OCFError):
        return exc
    status = tunnel_status(exc)
    if status is not None:
        return refusal(status, doing)
    name = type(exc).__name__
    detail = f"{name}: {short(exc)}".rstrip(": ")
    if isinstance(exc, ImportError):  # botocore itself, or a module it needs, is missing
        return NotInstalledError(f"{doing} failed: software is missing on this node ({detail})")
    from botocore import exceptions as bex

    if isinstance(exc, bex.ClientError):
        body = exc.response.get("Error", {})
        operation = str(getattr(exc, "operation_name", "") or doing)
        return map_client_error(
            operation, str(body.get("Code", name)), str(body.get("Message", "")).strip()
        )
    node, software, values, denied = _families()
    rules: tuple[tuple[tuple[type[BaseException], ...], Callable[[], OCFError]], ...] = (
        ((bex.NoCredentialsError,), lambda: GenericError(NO_CREDENTIALS)),
        (denied, lambda: PermError(f"{doing} was denied ({detail})")),
        (
            node + (_LOCAL_FILE_ERRORS if local_files else ()),
            lambda: ArgsError(
                f"{doing} failed: this node's AWS configuration cannot be used ({detail})"
            ),
        ),
        (
            software,
            lambda: NotInstalledError(
                f"{doing} failed: botocore or its data is missing or too old ({detail})"
            ),
        ),
        (values, lambda: ConfigError(f"{doing} rejected the request: {detail}")),
    )
    for classes, make in rules:
        if isinstance(exc, classes):
            return make()
    return GenericError(f"{doing} failed: {detail}")


def short(exc: BaseException) -> str:
    """The exception's message, first line, cut short (a log line, never a dump)."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


T = TypeVar("T")


def guarded(doing: str, function: Callable[[], T], local_files: bool = False) -> T:
    try:
        return function()
    except Exception as exc:  # noqa: BLE001 - the boundary: every exception is mapped
        raise map_exception(exc, doing, local_files) from None


def is_not_found(exc: BaseException) -> bool:
    """Whether EC2 said that what was asked about does not exist (``*.NotFound``)."""
    code = error_code(exc)
    return code is not None and code.endswith(".NotFound")


def error_code(exc: BaseException) -> Optional[str]:
    """The AWS error code carried by an exception, if any."""
    if isinstance(exc, AwsError):
        return exc.code
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None
