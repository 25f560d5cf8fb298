"""The trimmed EC2 model: complete for what the agents call, used only when it matches and
loads ("slower, never wrong"), and built lazily into the cache after a botocore update."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import botocore
import botocore.session
import pytest

from ipfailover.aws import botomodel
from ipfailover.aws.client import Api, connect
from ipfailover.config.params import AwsSettings
from ocf_shim import Deadline

EC2_SOURCE = Path(botomodel.__file__).with_name("ec2.py").read_text()


def test_every_operation_of_the_ec2_layer_is_in_the_trimmed_model() -> None:
    used = set(
        re.findall(r'(?:call|dry_run|_send)\(\s*(?:api,\s*)?"([A-Z][A-Za-z0-9]+)"', EC2_SOURCE)
    )
    assert used, "the pattern found no operation: update this test with ec2.py"
    assert used == set(botomodel.OPERATIONS)


def test_trimmed_model_is_self_contained_and_serves_a_client(tmp_path: Path) -> None:
    path = Path(botomodel.generate(str(tmp_path)))
    session = botocore.session.get_session()
    session.get_component("data_loader").search_paths.insert(
        0, botomodel.version_dir(botocore.__version__, str(tmp_path))
    )
    client = session.create_client(
        "ec2", region_name="eu-central-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    assert sorted(client.meta.service_model.operation_names) == sorted(botomodel.OPERATIONS)
    for name in botomodel.OPERATIONS:
        assert client.meta.service_model.operation_model(name).input_shape is not None
    assert path.stat().st_size < 200_000
    assert "documentation" not in path.read_text()


def test_unknown_operation_is_refused() -> None:
    model = {"operations": {}, "shapes": {}}
    with pytest.raises(ValueError, match="CreateRoute"):
        botomodel.trim(model, ("CreateRoute",))


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, node_env: None) -> Path:
    """An empty package model directory, and this node's AWS set-up (tests/conftest.py)."""
    root = tmp_path / "models"
    root.mkdir()
    monkeypatch.setattr(botomodel, "MODELS_DIR", str(root))
    return root


def ec2_api(cache: Path | None = None, budget: float = 20.0) -> Api:
    settings = AwsSettings(endpoint_url="http://127.0.0.1:9")
    return connect(
        settings, "eu-central-1", Deadline(budget), "test", str(cache) if cache else None
    )


def operations(api: Api) -> set[str]:
    return set(api.client.meta.service_model.operation_names)


def test_search_path_only_for_the_installed_botocore_and_these_operations(models: Path) -> None:
    assert botomodel.search_path() is None
    (models / "botocore-0.0.1" / "ec2").mkdir(parents=True)
    assert botomodel.search_path() is None
    # A model made by older code, with fewer operations, under the old name and under its own.
    model = botomodel.trim(full_model(), botomodel.OPERATIONS[1:])
    for name in (f"botocore-{botocore.__version__}", f"botocore-{botocore.__version__}-ops-0"):
        directory = models / name / "ec2" / "2016-11-15"
        directory.mkdir(parents=True)
        (directory / "service-2.json").write_text(json.dumps(model))
    assert botomodel.search_path() is None
    botomodel.generate(str(models))
    assert botomodel.search_path() == botomodel.version_dir(botocore.__version__, str(models))
    assert operations(ec2_api()) == set(botomodel.OPERATIONS)


def full_model() -> dict[str, object]:
    loader = botocore.session.get_session().get_component("data_loader")
    model: dict[str, object] = loader.load_service_model("ec2", "service-2")
    return model


def damage(models: Path, how: str) -> None:
    path = Path(botomodel.generate(str(models)))
    if how == "truncated":
        path.write_text(path.read_text()[:1000])
    elif how == "shape missing":  # stale: an operation refers to a shape it does not have
        model = json.loads(path.read_text())
        del model["shapes"][model["operations"]["CreateRoute"]["input"]["shape"]]
        path.write_text(json.dumps(model))
    elif how == "no metadata":  # passes our check, fails in botocore
        model = json.loads(path.read_text())
        del model["metadata"]
        path.write_text(json.dumps(model))
    elif how == "not an object":
        path.write_text("[]")


@pytest.mark.parametrize("how", ["truncated", "shape missing", "no metadata", "not an object"])
def test_a_damaged_model_falls_back_to_botocores(models: Path, how: str) -> None:
    damage(models, how)
    api = ec2_api()
    assert operations(api) > set(botomodel.OPERATIONS)  # botocore's full model
    model = api.client.meta.service_model
    assert model.operation_model("CreateRoute").input_shape is not None


def test_the_model_is_built_into_the_cache_after_the_work(models: Path, tmp_path: Path) -> None:
    cache = tmp_path / "rsctmp"
    first = ec2_api(cache)
    assert operations(first) > set(botomodel.OPERATIONS)
    assert not (cache / botomodel.CACHE_SUBDIR).exists()  # nothing before the work is done
    began = time.monotonic()
    first.finish()
    cost = time.monotonic() - began
    [written] = (cache / botomodel.CACHE_SUBDIR).glob("*/ec2/*/service-2.json")
    assert botomodel.model_key(botocore.__version__) in str(written)
    assert written.stat().st_mode & 0o777 == 0o644
    assert not list(written.parent.glob(".service-2.*"))  # no temporary file left
    assert cost < 0.5, f"building the model took {cost:.3f}s"
    second = ec2_api(cache)
    assert operations(second) == set(botomodel.OPERATIONS)
    assert second.deferred == []  # nothing more to build


def test_no_build_without_ample_time_left(models: Path, tmp_path: Path) -> None:
    cache = tmp_path / "rsctmp"
    api = ec2_api(cache, budget=2.5)
    api.finish()
    assert not (cache / botomodel.CACHE_SUBDIR).exists()


def test_a_failing_build_never_fails_the_action(models: Path, tmp_path: Path) -> None:
    cache = tmp_path / "rsctmp"
    cache.write_text("a file where the cache directory should be")
    api = ec2_api(cache)
    api.finish()  # no exception
    assert cache.is_file()


def test_the_package_model_comes_before_the_cache(models: Path, tmp_path: Path) -> None:
    cache = tmp_path / "rsctmp"
    botomodel.generate(str(models))
    assert botomodel.search_path(str(cache)) == botomodel.version_dir(
        botocore.__version__, str(models)
    )
    damage(models, "truncated")
    botomodel.generate(botomodel.cache_root(str(cache)))
    assert botomodel.search_path(str(cache)) == botomodel.version_dir(
        botocore.__version__, botomodel.cache_root(str(cache))
    )
