"""A real server hot-swaps a model between its checkpoint (PyTorch) and its ONNX export, both ways,
under load: alibi and position-none classifiers, whose exports used to record no max_seq_len and
were refused as "not fitting this server's request schema"."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from model_files import classifier, export, save
from servers import Client, ServerProcess

pytestmark = pytest.mark.slow

# version -> (position, served from): each model's checkpoint and its export folder side by side
VERSIONS = {"1": ("none", "checkpoint"), "2": ("none", "onnx"), "3": ("alibi", "checkpoint"), "4": ("alibi", "onnx")}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    nets = {position: classifier(seed, position=position).eval() for seed, position in enumerate(("none", "alibi"))}
    for version, (position, kind) in VERSIONS.items():
        if kind == "checkpoint":
            save(nets[position], root / version / "model.ckpt")
        else:
            export(nets[position], root / version, ["onnx"])  # an export folder only: served by ONNX Runtime
    return root, nets


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("server"), model_dir=str(models[0]), workers_per_device=2,
                            max_batch_size=8, batch_timeout=0.01)
    try:
        yield process.start()
    finally:
        process.kill()


def test_checkpoint_and_onnx_export_swap_both_ways_under_load(server, models):
    client = server.client()
    assert client.get("/info").json()["version"] == "4"  # the newest: the alibi model's ONNX export
    assert client.admin("/admin/reload", {"version": "3"}).status == 200
    stop, results, errors = threading.Event(), [], []

    def load(seed: int) -> None:
        c, rng = Client(server.port), np.random.default_rng(seed)
        while not stop.is_set():
            x = rng.normal(size=(int(rng.integers(1, 9)), 4))
            try:
                reply = c.post("/predict", {"features": x.tolist()})
                results.append((reply.status, reply.json(), x))
            except Exception as err:  # a dropped connection is a failed request too
                errors.append(repr(err))

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    served = []
    try:
        for version in ("4", "3", "1", "2", "1"):  # alibi: checkpoint -> ONNX -> checkpoint; none: -> ONNX -> back
            time.sleep(0.4)
            reply = client.admin("/admin/reload", {"version": version})
            assert reply.status == 200, reply
            served.append(reply.json()["version"])
        time.sleep(0.4)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert served == ["4", "3", "1", "2", "1"]
    failed = [(status, body) for status, body, _ in results if status != 200]
    assert not errors and not failed and len(results) > 40, (errors[:3], failed[:3])
    assert {body["version"] for _, body, _ in results} == {"1", "2", "3", "4"}
    _, nets = models
    for _, body, x in results:  # every answer is its version's model, on either backend
        position = VERSIONS[body["version"]][0]
        with torch.no_grad():
            expected = nets[position](torch.tensor(x, dtype=torch.float32)[None]).softmax(-1)[0].numpy()
        np.testing.assert_allclose(body["probabilities"], expected, rtol=1e-4, atol=1e-5)
