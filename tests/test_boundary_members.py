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
