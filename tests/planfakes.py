"""Fakes for the plan tests of all three agents: an EC2 API and a netlink handle that record what
is asked of them, so that a test can show check mode makes DryRun calls only and no change."""

from __future__ import annotations

from typing import Any, Callable, Optional


class RecordingApi:
    """``call`` answers from ``answers`` (operation -> response or function of the arguments);
    ``dry_run`` succeeds. Both record (operation, dry_run, arguments)."""

    def __init__(self, answers: Optional[dict[str, Any]] = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[str, bool, dict[str, Any]]] = []

    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((operation, False, kwargs))
        answer = self.answers.get(operation, {})
        return answer(kwargs) if callable(answer) else answer  # type: ignore[no-any-return]

    def dry_run(self, operation: str, **kwargs: Any) -> None:
        self.calls.append((operation, True, kwargs))

    def changing(self) -> list[str]:
        """Operations called for real that are not reads."""
        reads = ("Describe", "Get")
        return [op for op, dry, _ in self.calls if not dry and not op.startswith(reads)]

    def dry_runs(self) -> list[str]:
        return [op for op, dry, _ in self.calls if dry]


class RecordingNetlink:
    """Every method records its name and arguments and returns ``None``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args))

        return record


class FakeRuntime:
    """What apply() uses of Runtime: ``api()`` and ``netlink``."""

    def __init__(self, api: Optional[RecordingApi] = None) -> None:
        self._api = api or RecordingApi()
        self.netlink = RecordingNetlink()

    def api(self) -> RecordingApi:
        return self._api
