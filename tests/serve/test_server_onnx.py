"""A real regressor server on the ONNX Runtime backend (chosen from an export manifest), behind
LitServe's own API key (``LIT_SERVER_API_KEY``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_files import raw_features
from servers import Client, ServerProcess

pytestmark = pytest.mark.slow
API_KEY = "litserve-api-key-for-tests"


@pytest.fixture(scope="module")
def model(regressor_version):
    net, folder = regressor_version
    return net, folder / "export"


@pytest.fixture(scope="module")
def server(regressor_version, tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("server"), api_key=API_KEY,
                            model_dir=str(regressor_version[1].parent), backend="onnx",
                            task="regression", max_batch_size=4, limits={"max_seq_len": 8})
    try:
        yield process.start()
    finally:
        process.kill()


def test_regressor_values_match_the_eager_model(server, model):
    client = server.client()
    x = raw_features(4, seed=5, steps=6)
    with torch.no_grad():
        expected = model[0](torch.from_numpy(x)).numpy()
    for row, values in zip(x, expected):
        body = client.post("/predict", {"features": row.tolist()}).json()
        np.testing.assert_allclose(body["values"], values, rtol=1e-4, atol=1e-4)
        assert body["version"] == "1" and set(body) == {"values", "version"}


def test_info_names_the_artifact_and_its_manifest(server, model):
    info = server.client().get("/info").json()
    manifest = info["export_manifest"]
    optimized = next(a for a in manifest["artifacts"] if a["format"] == "onnx_optimized")
    assert info["task"] == "regression" and info["backend"] == "onnx"
    assert info["workers"][0]["onnx_format"] == "onnx_optimized"
    assert info["source"] == str(model[1] / optimized["files"][0]["path"])
    assert info["sha256"] == optimized["files"][0]["sha256"]


@pytest.mark.parametrize("path", ["/predict", "/batch_predict", "/info", "/metrics", "/health", "/docs",
                                  "/openapi.json"])
def test_litserves_api_key_guards_every_public_route(server, path):
    method = "POST" if "predict" in path else "GET"
    body = {"rows": [{"features": [[0.0] * 4]}]} if path == "/batch_predict" else {"features": [[0.0] * 4]}
    missing = Client(server.port).request(method, path, body=body)
    assert (missing.status, missing.json()["detail"]) == (401, "Not authenticated")
    wrong = Client(server.port, api_key="wrong-key").request(method, path, body=body)
    assert wrong.status == 401 and "Invalid API Key" in wrong.json()["detail"]
    assert server.client().request(method, path, body=body).status == 200
