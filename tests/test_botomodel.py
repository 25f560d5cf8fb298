"""The trimmed EC2 model: complete for what the agents call, used only when it matches."""

from __future__ import annotations

import re
from pathlib import Path

import botocore
import botocore.session
import pytest

from ipfailover import botomodel

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
        0, str(tmp_path / f"botocore-{botocore.__version__}")
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


def test_search_path_only_for_the_installed_botocore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(botomodel, "MODELS_DIR", str(tmp_path))
    assert botomodel.search_path() is None
    (tmp_path / "botocore-0.0.1" / "ec2").mkdir(parents=True)
    assert botomodel.search_path() is None
    botomodel.generate(str(tmp_path))
    assert botomodel.search_path() == str(tmp_path / f"botocore-{botocore.__version__}")
