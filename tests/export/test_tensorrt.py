from __future__ import annotations

import importlib.util

import pytest
import torch

from nl_lightning.export.bundle import ExportConfig, export_formats
from nl_lightning.export.tensorrt import TensorRTUnavailableError, check_tensorrt, export_tensorrt

HAS_TRT = importlib.util.find_spec("torch_tensorrt") is not None and torch.cuda.is_available()


@pytest.mark.skipif(HAS_TRT, reason="torch_tensorrt and CUDA are available here")
def test_clear_error_without_tensorrt_or_cuda(models, tmp_path):
    match = r"needs (torch_tensorrt|a CUDA GPU).*drop 'tensorrt' from formats"
    with pytest.raises(TensorRTUnavailableError, match=match):
        export_tensorrt(models["lm"], tmp_path / "model.trt.ep")


@pytest.mark.skipif(HAS_TRT, reason="torch_tensorrt and CUDA are available here")
def test_bundle_fails_before_writing_anything(models, tmp_path):
    with pytest.raises(TensorRTUnavailableError, match="nl-lightning\\[tensorrt\\]|CUDA"):
        export_formats(models["lm"], tmp_path, ExportConfig(formats=["onnx", "tensorrt"]))
    assert not any(tmp_path.iterdir())


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="needs torch_tensorrt and a CUDA GPU (the `tensorrt` extra)")
def test_tensorrt_export_matches_eager(models, tmp_path):
    check_tensorrt()
    manifest = export_formats(models["lm"], tmp_path, ExportConfig(formats=["tensorrt"], atol=1e-2, rtol=1e-2))
    assert manifest["artifacts"][0]["parity_ok"]
