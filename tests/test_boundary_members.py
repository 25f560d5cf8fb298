"""More members of issue 12's classes, found in review: each library call on an action's path
maps what it can raise to an OCF code (no "unexpected error"), and nothing there can block."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from ipfailover.aws import botomodel, partition
from ipfailover.aws.imds import Imds
from ipfailover.host.netlink import Netlink
from ocf_shim import OCF, Deadline, OCFError


def test_a_botocore_that_cannot_be_imported_is_missing_software(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken() -> object:
        raise ModuleNotFoundError("No module named 'botocore'")

    monkeypatch.setattr(partition, "_table", broken)
    with pytest.raises(OCFError) as info:
        partition.partition_of("eu-central-1")
    assert info.value.rc == OCF.ERR_INSTALLED


@pytest.mark.parametrize("damage", [KeyError("outputs"), ValueError("Expecting value")])
def test_damaged_partition_data_is_an_ocf_error(
    monkeypatch: pytest.MonkeyPatch, damage: Exception
) -> None:
    def broken() -> object:
        raise damage

    monkeypatch.setattr(partition, "_table", broken)
    with pytest.raises(OCFError) as info:
        partition.partition_of("eu-central-1")
    assert info.value.rc == OCF.ERR_GENERIC


def test_a_pyroute2_that_cannot_be_imported_is_missing_software(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pyroute2", None)  # import raises ImportError
    netlink = Netlink(Deadline(5))
    with pytest.raises(OCFError) as info:
        netlink.prepare_changes()
    assert info.value.rc == OCF.ERR_INSTALLED
    netlink.close()


@pytest.mark.parametrize("url", ["http://169.254.169.254:99999", "http://169.254.169.254:x"])
def test_a_metadata_endpoint_with_a_bad_port_is_this_nodes_problem(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", url)
    with pytest.raises(OCFError) as info:
        Imds(Deadline(5))
    assert info.value.rc == OCF.ERR_ARGS


def test_a_cached_model_that_is_a_fifo_is_not_used_and_does_not_block(tmp_path: Path) -> None:
    directory = tmp_path / "ec2" / "2016-11-15"
    directory.mkdir(parents=True)
    os.mkfifo(directory / "service-2.json")
    began = time.monotonic()
    assert not botomodel.usable(str(tmp_path))
    assert time.monotonic() - began < 2


@pytest.mark.parametrize(
    ("budget", "timeout", "attempts"), [(20.0, 2.0, 3), (8.0, 1.2, 2), (3.0, 1.0, 1)]
)
def test_botocores_credential_fetch_gets_attempts_within_the_budget(
    budget: float, timeout: float, attempts: int
) -> None:
    """botocore's default (one attempt of 1 s) reads a busy metadata service as "no
    credentials"; the agents give it up to 3 attempts of up to 2 s, in a third of the time left."""
    from ipfailover.aws.client import imds_credential_fetch

    deadline = Deadline(budget, clock=lambda: 0.0)
    got = imds_credential_fetch(deadline)
    assert got == (pytest.approx(timeout), attempts)
    assert got[0] * got[1] <= max(1.0, deadline.remaining() / 3)
