"""Put this folder on ``sys.path``: the tests import ``servers`` and ``model_files``."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.append(HERE)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def regressor_version(tmp_path_factory):
    """Version folder ``1``: a regressor's checkpoint and its ONNX export (``export/``), as a run has them."""
    from model_files import classifier, export, save

    model = classifier(3, task="regression", num_classes=2).eval()
    folder = tmp_path_factory.mktemp("regressor") / "1"
    save(model, folder / "model.ckpt")
    export(model, folder / "export", ["onnx", "onnx_optimized"])
    return model, folder


@pytest.fixture(scope="session")
def lm_export(tmp_path_factory):
    from model_files import export, lm

    model = lm(0).eval()
    return model, export(model, tmp_path_factory.mktemp("lm_export"), ["onnx"])


@pytest.fixture
def client(server):
    """A keep-alive HTTP client of the module's ``server`` fixture, closed after the test."""
    c = server.client()
    yield c
    c.close()
