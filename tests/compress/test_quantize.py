from __future__ import annotations

import io

import pytest
import torch

from nl_lightning.compress.prune import is_pruned, prune_model
from nl_lightning.compress.quantize import QuantizationConfig, module_runner, quantize_model


def _bytes(model: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


@pytest.mark.parametrize(
    ("method", "max_rel_err", "max_size_ratio"),
    [
        ("torchao_int8_dynamic", 0.1, 0.6),  # the fp32 token embedding is a third of this tiny LM
        ("torchao_int8_weight", 0.1, 0.6),
        ("fp16", 0.01, 0.55),
        ("bf16", 0.05, 0.55),
    ],
)
def test_quantize_model_is_close_and_smaller(lm, method, max_rel_err, max_size_ratio):
    x = torch.randint(0, 256, (2, 16))
    with torch.inference_mode():
        ref = lm.eval()(x)
    quantized = quantize_model(lm, method)
    out = module_runner(quantized)(x)
    assert out.dtype == torch.float32
    # Random weights give small logits; the error is stated relative to the largest one.
    assert (out - ref).abs().max() <= max_rel_err * ref.abs().max()
    assert _bytes(quantized) <= max_size_ratio * _bytes(lm)
    assert next(lm.parameters()).dtype == torch.float32  # the input model is untouched


def test_quantize_model_folds_pruning_masks(classifier):
    prune_model(classifier, 0.5)
    quantized = quantize_model(classifier, "bf16")
    assert is_pruned(classifier) and not is_pruned(quantized)
    assert module_runner(quantized)(torch.randn(2, 16, 8)).shape == (2, 3)


def test_quantize_model_rejects_unknown_method(lm):
    with pytest.raises(ValueError, match=r"Quantization methods \['int4'\]: choose one or more of"):
        quantize_model(lm, "int4")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(methods=["ort_int4"]), r"\['ort_int4'\]: choose one or more of"),
        (dict(methods=[]), "choose one or more of"),
        (dict(calibration_batches=0), "calibration_batches=0 must be >= 1"),
        (dict(eval_batches=0), "eval_batches=0 must be >= 1 or None"),
    ],
)
def test_quantization_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantizationConfig(**kwargs)
