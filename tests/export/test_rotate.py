"""The block-Hadamard rotation of gated MLPs' down-projection input (export/rotate.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_files import outlier_lm

from nl_lightning.errors import ConfigError
from nl_lightning.export.rotate import BlockRotation, hadamard, rotate_glu, rotation_matmuls, validate_block
from nl_lightning.export.smooth import glu_mlps
from nl_lightning.models import CausalLM, TransformerConfig


def tokens(seed: int = 9, batch: int = 4) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 32), generator=torch.Generator().manual_seed(seed))


def test_hadamard_is_orthonormal_and_only_for_powers_of_two():
    for n in (1, 2, 16, 64):
        h = hadamard(n)
        torch.testing.assert_close(h @ h.T, torch.eye(n), rtol=0, atol=1e-6)
        assert torch.allclose(h.abs(), torch.full((n, n), n**-0.5))
    for bad in (0, 3, 24, 48):
        with pytest.raises(ConfigError, match="power of two"):
            hadamard(bad)
    validate_block(None)
    with pytest.raises(ConfigError, match="integer"):
        validate_block(True)


def test_rotation_keeps_the_function_and_spreads_the_outliers():
    model = outlier_lm(every=97, factor=100.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rotated, n = rotate_glu(model, block=32)
    assert n == 2 and rotated is not model
    assert all(isinstance(m.down[0], BlockRotation) for m in glu_mlps_of(rotated))
    x = tokens()
    with torch.no_grad():
        torch.testing.assert_close(rotated(x), model(x), rtol=1e-4, atol=1e-4)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the input model is untouched

    def spread(net, layer) -> float:  # max / median of the per-channel |max| the down Linear sees
        seen = {}
        handle = layer.register_forward_pre_hook(lambda m, a: seen.setdefault("a", a[0].abs().amax((0, 1))))
        with torch.no_grad():
            net(x)
        handle.remove()
        return float(seen["a"].max() / seen["a"].median())

    assert spread(model, glu_mlps(model)[0].down) > 50
    assert spread(rotated, glu_mlps_of(rotated)[0].down[1]) < 0.3 * spread(model, glu_mlps(model)[0].down)


def glu_mlps_of(model):
    from nl_lightning.nn.mlp import GluMlp

    return [m for m in model.modules() if isinstance(m, GluMlp)]


def test_a_block_that_does_not_divide_the_hidden_width_is_refused():
    with pytest.raises(ConfigError, match="does not divide the MLP's hidden width 192"):
        rotate_glu(outlier_lm(every=97, factor=100.0), block=128)


def test_without_a_gated_mlp_the_model_is_returned_as_is():
    config = TransformerConfig(n_layers=1, d_model=32, n_heads=2, mlp="gelu", max_seq_len=16)
    model = CausalLM(config).eval()
    assert rotate_glu(model, 16) == (model, 0)


def test_the_rotation_stays_fp32_in_the_int8_graph_and_rescues_the_down_projections(tmp_path):
    """Only the down projections are quantized here, so the error measured is theirs."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from nl_lightning.export.onnx import export_onnx

    model = outlier_lm(every=97, factor=100.0)
    rotated, _ = rotate_glu(model, block=32)
    x = tokens(batch=2)
    with torch.no_grad():
        reference = model(x).numpy()

    def int8_logits(net, name: str, rotate: bool) -> np.ndarray:
        plain = export_onnx(net, tmp_path / f"{name}.onnx")
        graph = onnx.load(str(plain))
        excluded = rotation_matmuls(graph)
        assert len(excluded) == (2 if rotate else 0)
        if rotate:  # the rotated fp32 graph computes what eager does
            fp32 = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"])
            np.testing.assert_allclose(fp32.run(None, {fp32.get_inputs()[0].name: x.numpy()})[0], reference,
                                       rtol=1e-4, atol=1e-4)
        quantized = tmp_path / f"{name}.int8.onnx"
        constants = {i.name: list(i.dims) for i in graph.graph.initializer}
        downs = [n.name for n in graph.graph.node  # the down projections' (hidden 192 -> d_model 64) weights
                 if n.op_type == "MatMul" and constants.get(n.input[1]) == [192, 64]]
        assert len(downs) == 2
        quantize_dynamic(str(plain), str(quantized), op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8, nodes_to_quantize=downs + excluded, nodes_to_exclude=excluded)
        kept = {n.name for n in onnx.load(str(quantized)).graph.node if n.op_type == "MatMul"}
        assert set(excluded) <= kept  # still fp32 MatMuls, not MatMulInteger
        session = ort.InferenceSession(str(quantized), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]

    plain_error = np.abs(int8_logits(model, "plain", False) - reference).mean()
    rotated_error = np.abs(int8_logits(rotated, "rotated", True) - reference).mean()
    assert rotated_error < 0.5 * plain_error, (rotated_error, plain_error)
