"""A flavor or backend whose library is missing names the pip extra that installs it."""

from __future__ import annotations

import sys

import pytest

from relevo.errors import MissingExtraError
from relevo.registry.flavors import get_flavor


@pytest.mark.parametrize(
    ("flavor", "module", "extra"),
    [
        ("xgboost", "xgboost", "xgboost"),
        ("lightgbm", "lightgbm", "lightgbm"),
        ("onnx", "onnxruntime", "onnx"),
        ("skops", "skops", "skops"),
        ("mlflow", "mlflow", "mlflow"),
    ],
)
def test_missing_flavor_library_names_its_extra(flavor, module, extra, monkeypatch, tmp_path):
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    artifact = {
        "xgboost": "model.json",
        "lightgbm": "model.txt",
        "onnx": "model.onnx",
        "skops": "model.skops",
        "mlflow": "mlmodel",
    }[flavor]
    path = tmp_path / artifact
    if flavor == "mlflow":
        path.mkdir()
        (path / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    else:
        path.write_bytes(b"\0" * 16)
    with pytest.raises(MissingExtraError) as info:
        get_flavor(flavor).load(path, {})
    assert f"relevo[{extra}]" in str(info.value)


def test_missing_postgres_driver_names_its_extra(monkeypatch):
    from relevo.store.engine import create_store_engine

    for name in list(sys.modules):
        if name == "psycopg" or name.startswith("psycopg."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingExtraError, match=r"relevo\[postgres\]"):
        create_store_engine("postgresql://nobody@127.0.0.1:1/x")
