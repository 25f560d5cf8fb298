"""The effectful clients of one action, created on first use and closed at its end.

An agent action opens a :class:`Runtime`, asks it for the metadata service, the netlink handle and
the EC2 API, and never creates any of them itself: one choke point per kind of side effect.
Nothing heavy is imported until it is asked for, so meta-data, syntax checks and the OS-only
monitor stay cheap: this module imports no typing, threads or AWS module at run time.
"""

from __future__ import annotations

from ipfailover.config.params import DEEP_CHECK_LEVEL, MONITOR_API_DEEP, AwsSettings
from ocf_shim import OCF, ArgsError, Context, GenericError, OCFError, get_log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional, TypeVar

    from ipfailover.aws.client import Api
    from ipfailover.aws.imds import Imds
    from ipfailover.host.netlink import Link, Netlink

    T = TypeVar("T")
    R = TypeVar("R")

log = get_log("ipfailover")


def aws_check_due(ctx: Context, monitor_api: str) -> bool:
    """Whether this monitor checks the AWS side, for the monitor_api parameter ("true", "false"
    or MONITOR_API_DEEP, ipfailover.config.params): always, never, or in the deep monitor only
    (OCF_CHECK_LEVEL >= DEEP_CHECK_LEVEL) and in probes, where the state the cluster starts from
    is decided (rare: their cost does not matter)."""
    if monitor_api == MONITOR_API_DEEP:
        return ctx.is_probe or ctx.check_level >= DEEP_CHECK_LEVEL
    return monitor_api != "false"


class Runtime:
    def __init__(self, ctx: Context, settings: AwsSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self._imds: Optional[Imds] = None
        self._netlink: Optional[Netlink] = None
        self._api: Optional[Api] = None
        self._region: Optional[str] = None
        self._assumed: dict[tuple[str, Optional[str]], Api] = {}

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._netlink is not None:
            self._netlink.close()
        if self._api is not None:
            self._api.finish()  # after the action's work: e.g. build the trimmed EC2 model

    @property
    def imds(self) -> Imds:
        if self._imds is None:
            from ipfailover.aws.imds import Imds

            self._imds = Imds(self.ctx.deadline)
        return self._imds

    @property
    def netlink(self) -> Netlink:
        if self._netlink is None:
            from ipfailover.host.netlink import Netlink

            self._netlink = Netlink(self.ctx.deadline)
        return self._netlink

    def region(self) -> str:
        """The parameter's region, or this instance's; known to botocore or reached through
        the endpoint parameters, and in role_arn's partition (ipfailover.aws.partition)."""
        if self._region is None:
            from ipfailover.aws import instance
            from ipfailover.aws.partition import check_region

            region = self.settings.region or instance.region(self.imds)
            check_region(region, self.settings)
            self._region = region
        return self._region

    def api(self) -> Api:
        if self._api is None:
            from ipfailover.aws.client import connect
            from ipfailover.host.record import state_dir

            # The trimmed EC2 model's cache (botomodel) lives where ocf-shellfuncs keeps state.
            cache = state_dir(self.ctx.environ)
            self._api = connect(
                self.settings, self.region(), self.ctx.deadline, self.ctx.agent, cache_dir=cache
            )
        return self._api

    def assumed_api(self, role_arn: str, external_id: Optional[str], what: str) -> Api:
        """The EC2 API with the credentials of ``role_arn`` (assumed once per action, with this
        node's credentials or role_arn's); ``what`` names the role in reasons."""
        key = (role_arn, external_id)
        api = self._assumed.get(key)
        if api is None:
            api = self._assumed[key] = self.api().assume(role_arn, external_id, what)
        return api

    def require_link(self, name: str) -> Link:
        """The named interface; its absence is a problem of this host only (exit 2)."""
        link = self.netlink.link_by_name(name)
        if link is None:
            raise ArgsError(
                f"network interface {name!r} does not exist on this node (the name 'ip -brief "
                "link' shows; altnames are not looked up)"
            )
        return link

    def api_calls(self) -> int:
        apis = [self._api, *self._assumed.values()] if self._api is not None else []
        return sum(api.calls for api in apis)


def cannot_be_read(exc: OCFError) -> bool:
    """What a monitor's AWS check cannot make up for: the resource does not exist in EC2, or
    the configuration cannot work there (exit 6 from EC2's answer)."""
    from ipfailover.aws.errors import is_not_found

    return is_not_found(exc) or exc.rc == OCF.ERR_CONFIGURED


def aws_check(
    check: Callable[[], T], subject: str, gone: Callable[[OCFError], bool] = cannot_be_read
) -> Optional[T]:
    """The AWS side of a monitor, or None when it could not complete: the OS side decides.

    ``subject`` names what the check reads. When ``gone(exc)``, what is monitored no longer
    exists (or cannot be read at all): an error (1) the OS side cannot make up for. Any other
    failure (EC2 or the metadata service unreachable, throttled, denied) is logged as a warning
    and the monitor goes on from the OS side alone.
    """
    try:
        return check()
    except OCFError as exc:
        if gone(exc):
            raise GenericError(f"{subject} cannot be read in EC2: {exc.reason}") from None
        log.warning(
            "the AWS check of %s could not complete (%s): the OS side decides",
            subject,
            exc.reason,
        )
        return None


def run_parallel(function: Callable[[T], R], items: list[T], workers: int = 8) -> list[R]:
    """``function`` over ``items`` at the same time (in order of ``items``); errors propagate.

    Used for independent EC2 changes (one route per table): failover time must not grow with the
    number of tables.
    """
    if len(items) <= 1:
        return [function(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)))
    try:
        results = list(pool.map(function, items))
    except BaseException:
        # The first error ends the action: the items not started yet never start, and the ones
        # in flight are not waited for (each call is bounded by the deadline; the process ends
        # without joining them: Agent.run).
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results


def together(first: Callable[[], T], second: Callable[[], R]) -> tuple[T, R]:
    """``first()`` here and ``second()`` in a thread at the same time; both results. An error of
    ``first`` propagates at once (``second`` is not waited for: the process ends without it,
    Agent.run), then one of ``second``.

    For work that would otherwise wait in turn: two EC2 reads at once.
    """
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        other = pool.submit(second)
        result = first()
        return result, other.result()
    finally:
        pool.shutdown(wait=False)
