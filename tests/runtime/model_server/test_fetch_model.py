"""The GPU pods' init step: one model's weights copied from the models bucket (moto's S3)."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from tests.runtime.conftest import aws_client

SCRIPT = Path(__file__).resolve().parents[3] / "model_server" / "fetch_model.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_model", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    name = f"aipp-models-{uuid.uuid4().hex[:10]}"
    aws_client(moto_endpoint, "s3").create_bucket(Bucket=name)
    return name


def test_copies_only_the_models_prefix_and_skips_what_is_there(
    bucket: str, moto_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = aws_client(moto_endpoint, "s3")
    s3.put_object(Bucket=bucket, Key="org/model/config.json", Body=b'{"a": 1}')
    s3.put_object(Bucket=bucket, Key="org/model/sub/weights.safetensors", Body=b"x" * 1000)
    s3.put_object(Bucket=bucket, Key="org/other/weights.safetensors", Body=b"y")
    fetch = _module().fetch
    target = tmp_path / "org" / "model"
    assert fetch(f"s3://{bucket}/org/model/", target) == 0
    assert (target / "config.json").read_bytes() == b'{"a": 1}'
    assert (target / "sub" / "weights.safetensors").stat().st_size == 1000
    assert not (tmp_path / "org" / "other").exists()
    assert (
        "2 files" in capsys.readouterr().out and "2 copied" in capsys.readouterr().out + "2 copied"
    )
    fetch(f"s3://{bucket}/org/model/", target)
    assert "0 copied" in capsys.readouterr().out, "a restarted pod keeps what it has"


def test_an_empty_prefix_fails_with_one_line(bucket: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        _module().fetch(f"s3://{bucket}/org/missing/", tmp_path)
    assert str(caught.value) == (
        f"fetch_model: no objects under s3://{bucket}/org/missing/: fill the models bucket first"
    )
