"""Shared pytest configuration. Keep each part's additions in its own block."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest

from agentkit import OcfTree, ocf_tree_unusable

# -- the lab (tests/lab): fixtures `lab`, `lab_factory`, and the network guard, which fails any
# -- test that tries to reach anything but loopback from the test process ----------------------
pytest_plugins = ("lab.pytest_plugin",)


# -- tiers: every test is in exactly one of unit, lab, cluster, faults (pyproject.toml registers
# -- them; see `make check`). A test's tier is, first match wins:
# --   1. an explicit mark (`pytestmark = pytest.mark.lab`) where no rule below can tell;
# --   2. its file (FILE_TIERS);
# --   3. the fixtures it uses, directly or through other fixtures (FIXTURE_TIERS);
# --   4. otherwise unit: no root, no lab, no namespaces, no cluster.
# -- Tests of the lab, cluster and faults tiers need root (namespaces, mounts): they are skipped,
# -- here and only here, when the test process is not root. `slow` (over ~20 s, or an RPM build,
# -- or a hypothesis test) is orthogonal; `make check` runs `-m "unit and not slow"`.

TIERS = ("unit", "lab", "cluster", "faults")
FILE_TIERS = {
    "test_fault_matrix.py": "faults",
    "test_cluster.py": "cluster",
    "test_failover_scenarios.py": "cluster",
}
FIXTURE_TIERS = {
    "cluster": "cluster",
    "lab": "lab",
    "lab_factory": "lab",
    "shared_lab": "lab",
    "netns_factory": "lab",
    "ocf_tree": "lab",  # tests/agentkit.py OcfTree: private mount namespaces
}
# `slow`: the files that are slow throughout, the fixtures that build an RPM, and every hypothesis
# test (thousands of examples each: 7-35 s apiece on this machine).
SLOW_FILES = {
    "test_bench.py",
    "test_cluster.py",
    "test_failover_scenarios.py",
    "test_fault_matrix.py",
}
SLOW_FIXTURES = {"build", "installed"}  # tests/test_packaging.py: `make rpm` and an install
NEEDS_ROOT = ("lab", "cluster", "faults")


def tier_of(item: pytest.Item) -> str:
    explicit = [name for name in TIERS if item.get_closest_marker(name) is not None]
    if len(explicit) > 1:
        raise pytest.UsageError(f"{item.nodeid}: more than one tier: {', '.join(explicit)}")
    if explicit:
        return explicit[0]
    filename = Path(str(item.fspath)).name
    if filename in FILE_TIERS:
        return FILE_TIERS[filename]
    for fixture, tier in FIXTURE_TIERS.items():
        if fixture in getattr(item, "fixturenames", ()):
            return tier
    return "unit"


def is_slow(item: pytest.Item) -> bool:
    if Path(str(item.fspath)).name in SLOW_FILES:
        return True
    if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    return bool(getattr(getattr(item, "obj", None), "is_hypothesis_test", False))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    is_root = os.geteuid() == 0
    for item in items:
        tier = tier_of(item)
        if item.get_closest_marker(tier) is None:
            item.add_marker(tier)
        if is_slow(item) and item.get_closest_marker("slow") is None:
            item.add_marker("slow")
        if tier in NEEDS_ROOT and not is_root:
            item.add_marker(pytest.mark.skip(reason=f"the {tier} tier needs root (namespaces)"))


# -- shared fixtures --------------------------------------------------------------------------


@pytest.fixture
def netns_factory() -> Iterator[Callable[..., str]]:
    """``netns_factory(role, [ip -batch lines])``: a network namespace of the test's own (the
    lab's naming, so its sweeper removes it if pytest dies), with lo up and set up by the lines;
    every namespace made is deleted after the test."""
    from lab import netns

    with ExitStack() as stack:

        def make(role: str, commands: Sequence[str] = ()) -> str:
            return stack.enter_context(netns.scratch(role, commands))

        yield make


@pytest.fixture
def node_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node's AWS set-up for in-process AWS code: keys in the environment, HOME the test's
    directory, no configuration or credentials files, no profile, CA bundle or data path."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    for name in ("AWS_PROFILE", "AWS_CA_BUNDLE", "AWS_DATA_PATH"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def ocf_tree(tmp_path_factory: pytest.TempPathFactory) -> OcfTree:
    """An OcfTree (tests/agentkit.py) with the checkout's agents as ocf:ipfailover:<agent>;
    skips when it cannot work here (root, unshare and overlayfs needed). One per module."""
    reason = ocf_tree_unusable()
    if reason:
        pytest.skip(reason)
    tree = OcfTree(tmp_path_factory.mktemp("ocf-tree"))
    tree.link_checkout_agents()
    return tree
