"""PyTorch and ONNX Runtime runners compute the same function (outputs and generation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_files import raw_features

from nl_lightning._io import file_sha256
from nl_lightning.export.signature import signature_from_manifest
from nl_lightning.serve.registry import ModelRegistry, resolve_source
from nl_lightning.serve.runners import OnnxRunner, TorchRunner, load_runner


def test_onnx_and_torch_runners_agree_on_outputs(regressor_version):
    model, folder = regressor_version
    torch_runner = load_runner(ModelRegistry(folder, backend="torch").source())
    onnx_runner = load_runner(ModelRegistry(folder, backend="onnx").source(), task="regression")
    assert isinstance(torch_runner, TorchRunner) and isinstance(onnx_runner, OnnxRunner)
    assert onnx_runner.source.onnx_format == "onnx_optimized"
    for steps in (8, 3):
        x = raw_features(5, seed=steps, steps=steps)
        with torch.no_grad():
            eager = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(torch_runner.forward(x), eager, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(onnx_runner.forward(x), eager, rtol=1e-4, atol=1e-4)
    # one signature for the checkpoint and its export (a position-none model too): they swap for each other
    assert torch_runner.signature == onnx_runner.signature and torch_runner.signature.max_seq_len == 8
    assert torch_runner.signature.mismatch(onnx_runner.signature) is None
    assert torch_runner.sha256 == file_sha256(folder / "model.ckpt")
    assert onnx_runner.sha256 == file_sha256(onnx_runner.source.path)


def test_an_export_records_its_task_and_an_older_one_needs_it(regressor_version):
    source = ModelRegistry(regressor_version[1], backend="onnx").source()
    assert source.manifest["task"] == "regression"  # recorded by the export: no checkpoint needed
    signature = OnnxRunner(source).signature
    assert (signature.task, signature.num_outputs) == ("regression", source.manifest["num_outputs"])
    older = {k: v for k, v in source.manifest.items() if k not in ("task", "num_outputs", "source")}
    with pytest.raises(ValueError, match="The export manifest does not record the model's task; set `task: "):
        signature_from_manifest(older, num_outputs=1)


def test_a_task_that_contradicts_the_checkpoint_is_refused(regressor_version):
    source = ModelRegistry(regressor_version[1], backend="torch").source()
    with pytest.raises(ValueError, match="task='classification' contradicts the checkpoint .*, a regression model"):
        load_runner(source, task="classification")


@pytest.mark.parametrize("prompt_len, new", [(5, 10), (10, 40)])  # within the 32-token window, and past it
def test_onnx_generation_matches_torch_greedy(lm_export, prompt_len, new):
    model, folder = lm_export
    runner = OnnxRunner(resolve_source("1", folder, "onnx"))
    prompt = torch.randint(0, 256, (2, prompt_len), generator=torch.Generator().manual_seed(prompt_len))
    expected = model.generate(prompt, new, temperature=0.0, top_k=None)[:, prompt_len:].numpy()
    np.testing.assert_array_equal(runner.generate(prompt.numpy(), new, 0.0, None), expected)


def test_onnx_runs_on_the_cpu_only(lm_export):
    with pytest.raises(ValueError, match="The ONNX backend runs on the CPU here; got device='cuda:0'"):
        load_runner(resolve_source("1", lm_export[1], "onnx"), device="cuda:0")
