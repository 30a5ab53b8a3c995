"""Per-token scaling of gated MLPs' down-projection input (export/token_scale.py, export/prepare.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_files import outlier_lm
from torch import nn

from nl_lightning.errors import ConfigError
from nl_lightning.export.bundle import ExportConfig, export_formats
from nl_lightning.export.ort import Int8Recipe, ort_session, quantize_onnx_dynamic
from nl_lightning.export.smooth import glu_mlps
from nl_lightning.export.token_scale import TokenScaledLinear, scale_tokens
from nl_lightning.export.variants import VariantBuilder
from nl_lightning.models import CausalLM, TransformerConfig
from nl_lightning.nn.mlp import GluMlp

pytest.importorskip("onnxruntime")


def tokens(seed: int = 9, batch: int = 4) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 32), generator=torch.Generator().manual_seed(seed))


def test_scaling_keeps_the_function_and_leaves_the_model_alone():
    model = outlier_lm()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scaled, n = scale_tokens(model)
    assert n == 2 and scaled is not model
    assert all(isinstance(m.down, TokenScaledLinear) for m in scaled.modules() if isinstance(m, GluMlp))
    x = tokens()
    with torch.no_grad():
        torch.testing.assert_close(scaled(x), model(x), rtol=1e-5, atol=1e-5)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert len(glu_mlps(model)) == 2  # the original's down projections are still plain Linear layers


def test_a_model_without_a_gated_mlp_is_returned_as_is():
    gelu = CausalLM(TransformerConfig(n_layers=1, d_model=32, n_heads=2, mlp="gelu", max_seq_len=16)).eval()
    assert scale_tokens(gelu) == (gelu, 0)


def test_each_token_is_rounded_on_its_own_range_in_dynamic_int8(tmp_path):
    """A down projection fed tokens 1000x apart in size: with one scale per tensor the small ones lose their
    digits; scaled per token, each token's INT8 error is relative to itself."""
    torch.manual_seed(0)
    down = nn.Linear(64, 32).eval()
    sizes = torch.logspace(-1.5, 1.5, 16)  # per token, 0.03 .. 30
    a = torch.randn(2, 16, 64) * sizes[None, :, None]
    with torch.no_grad():
        ref = down(a)

    def worst_token_error(net: nn.Module, name: str) -> float:
        plain = tmp_path / f"{name}.onnx"
        torch.onnx.export(net, (a,), str(plain), input_names=["a"], dynamo=True)
        quantize_onnx_dynamic(plain, tmp_path / f"{name}.int8.onnx", Int8Recipe(smooth_alpha=None))
        out = torch.from_numpy(ort_session(tmp_path / f"{name}.int8.onnx", threads=1).run(None, {"a": a.numpy()})[0])
        return float(((out - ref).norm(dim=-1) / ref.norm(dim=-1)).max())

    plain, scaled = worst_token_error(down, "plain"), worst_token_error(TokenScaledLinear(down), "scaled")
    assert scaled < 0.02, scaled
    assert scaled < 0.1 * plain, (scaled, plain)


def test_the_recipe_prepares_the_graph_int8_quantizes(tmp_path):
    onnx = pytest.importorskip("onnx")
    model, calibration = outlier_lm(), [(tokens(seed),) for seed in range(4)]
    builder = VariantBuilder(model, tmp_path, calibration=calibration, threads=1)  # the default recipe scales
    source = builder.int8_source()
    assert source.name == "model.smoothed.token_scaled.fused.onnx"
    ops = [node.op_type for node in onnx.load(str(source)).graph.node]
    assert ops.count("ReduceMax") == 2
    plain = tmp_path / "model.smoothed.token_scaled.onnx"  # the prepared fp32 graph computes the model's function
    x = tokens(seed=11)
    got = ort_session(plain, threads=1).run(None, {"idx": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-4)
    builder.build("ort_int8_dynamic")
    off = VariantBuilder(model, tmp_path / "off", calibration=calibration, recipe=Int8Recipe(token_scale=False))
    assert off.int8_source().name == "model.smoothed.fused.onnx"


def test_export_records_token_scaling_and_leaves_no_intermediate(tmp_path):
    config = ExportConfig(formats=["onnx_int8_dynamic"], parity_batch_sizes=[1], parity_seq_lens=[16],
                          check_batches=2)  # token_scale is on by default
    calibration = [(tokens(s),) for s in range(4)]
    manifest = export_formats(outlier_lm(), tmp_path / "export", config, calibration=calibration)
    assert manifest["int8_token_scaled_mlps"] == 2 and manifest["int8_smoothed_mlps"] == 2
    assert manifest["int8_recipe"]["token_scale"] is True
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["manifest.json", "model.int8_dynamic.onnx",
                                                                       "model.onnx"]
    config = ExportConfig(formats=["onnx_int8_dynamic"], parity_batch_sizes=[1], parity_seq_lens=[16], check_batches=2,
                          token_scale=False)
    off = export_formats(outlier_lm(), tmp_path / "off", config, calibration=calibration)
    assert off["int8_token_scaled_mlps"] == 0 and off["int8_recipe"]["token_scale"] is False


def test_token_scale_must_be_a_bool():
    with pytest.raises(ConfigError, match="token_scale='yes' must be true or false"):
        Int8Recipe(token_scale="yes")
    with pytest.raises(ConfigError, match="token_scale='yes' must be true or false"):
        ExportConfig(token_scale="yes")  # when the config is made, before any export work


def test_an_all_zero_token_stays_finite():
    """Padding rows are all zeros: their scale is clamped, so they give the layer's bias, not 0 / 0 = NaN."""
    down = nn.Linear(8, 4)
    a = torch.randn(2, 3, 8)
    a[0, 1] = 0.0
    with torch.no_grad():
        out = TokenScaledLinear(down)(a)
        torch.testing.assert_close(out, down(a), rtol=1e-5, atol=1e-6)
    assert torch.equal(out[0, 1], down.bias.detach())
