"""Retry policy and backoff, kept apart from each other and from the deadline.

The policy says *whether* an error is worth another attempt; the backoff says *how long* to wait;
the caller's :class:`ocf_shim.Deadline` says whether that wait still fits.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

# EC2 error codes that mean "the same request may succeed later": throttling and server trouble.
RETRYABLE_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)

# Codes that say the caller lacks a permission: exit 4.
PERMISSION_CODES = frozenset(
    {
        "UnauthorizedOperation",
        "AccessDenied",
        "AccessDeniedException",
        "AuthFailure",
        "Blocked",
        "OptInRequired",
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "RequestExpired",
    }
)


def is_retryable(code: str, http_status: int) -> bool:
    """True when an EC2 error with this code and HTTP status may succeed on a later attempt."""
    return code in RETRYABLE_CODES or http_status >= 500


def backoff(
    base: float = 0.1,
    cap: float = 0.5,
    rand: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Delays with "full jitter": uniformly random below an exponentially growing ceiling.

    Jitter matters here: every cluster of an account shares the EC2 throttling bucket, and two
    nodes that retry in lockstep keep colliding. The ceiling stops at 0.5 s: a mutating bucket
    refills 5 tokens a second, and a throttled request takes none, so a longer wait only
    leaves the last calls of a burst asleep while tokens are there (100 route tables, 8 calls
    at a time, on a quiet machine: the last ReplaceRoute 0.42-0.81 s after the bucket's bound
    with 1 s, 0.09-0.18 s with 0.5 s, for about 1.5 times the throttled answers).
    """
    ceiling = base
    while True:
        yield max(0.02, ceiling * rand())
        ceiling = min(cap, ceiling * 2)
