from __future__ import annotations

import pytest
import torch
from model_files import outlier_lm

from nl_lightning.errors import ConfigError, DataError
from nl_lightning.export.bundle import ExportConfig, export_formats
from nl_lightning.export.manifest import read_manifest
from nl_lightning.export.ort import Int8Recipe
from nl_lightning.export.smooth import glu_mlps, smooth_glu
from nl_lightning.export.variants import VariantBuilder
from nl_lightning.models import CausalLM, TransformerConfig


def batches(n: int = 4, seed: int = 1) -> list[tuple[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 256, (4, 32), generator=g),) for _ in range(n)]


def down_input_range(model: CausalLM, x: torch.Tensor) -> float:
    """max / median of the per-channel |max| of the first down projection's input."""
    seen = {}
    mlp = glu_mlps(model)[0]
    handle = mlp.down.register_forward_pre_hook(lambda m, a: seen.setdefault("a", a[0].abs().amax((0, 1))))
    with torch.no_grad():
        model(x)
    handle.remove()
    return float(seen["a"].max() / seen["a"].median())


def test_smoothing_keeps_the_function_and_flattens_the_down_projection_input():
    model = outlier_lm()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    smoothed, n = smooth_glu(model, batches(), alpha=0.7)
    assert n == 2 and smoothed is not model
    x = batches(1, seed=9)[0][0]
    with torch.no_grad():
        torch.testing.assert_close(smoothed(x), model(x), rtol=1e-4, atol=1e-4)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the input model is untouched
    assert down_input_range(model, x) > 50
    assert down_input_range(smoothed, x) < 0.2 * down_input_range(model, x)


def test_smoothing_makes_dynamic_int8_agree_with_fp32(tmp_path):
    model, calibration, held_out = outlier_lm(), batches(4), batches(4, seed=5)

    def int8_error(recipe: Int8Recipe, name: str) -> float:
        builder = VariantBuilder(model, tmp_path / name, calibration=calibration, threads=1, recipe=recipe)
        run = builder.build("ort_int8_dynamic").run
        with torch.no_grad():
            errors = [(run(x) - model(x)).pow(2).mean() / model(x).var() for (x,) in held_out]
        return float(torch.stack(errors).mean().sqrt())

    plain = int8_error(Int8Recipe(smooth_alpha=None, token_scale=False), "plain")  # SmoothQuant's share alone
    smoothed = int8_error(Int8Recipe(token_scale=False), "smoothed")
    assert (tmp_path / "smoothed" / "model.smoothed.fused.onnx").is_file()
    assert not (tmp_path / "plain" / "model.smoothed.fused.onnx").exists()
    assert smoothed < 0.5 * plain, (smoothed, plain)


def test_without_calibration_data_or_a_gated_mlp_int8_quantizes_the_plain_graph(tmp_path):
    unscaled = Int8Recipe(token_scale=False)
    builder = VariantBuilder(outlier_lm(), tmp_path / "no_data", recipe=unscaled)
    assert builder.int8_source() == builder.fused_path()
    # per-token scaling (on by default) needs no data: it is all smoothing is skipped for
    assert VariantBuilder(outlier_lm(), tmp_path / "scaled").int8_source().name == "model.token_scaled.fused.onnx"
    gelu = CausalLM(TransformerConfig(n_layers=1, d_model=32, n_heads=4, max_seq_len=16)).eval()
    assert smooth_glu(gelu, batches()) == (gelu, 0)
    builder = VariantBuilder(gelu, tmp_path / "gelu", calibration=batches())
    assert builder.int8_source() == builder.fused_path()


def test_export_records_the_smoothing_and_leaves_no_intermediate(tmp_path):
    config = ExportConfig(formats=["onnx_int8_dynamic"], parity_batch_sizes=[1], parity_seq_lens=[16], check_batches=2)
    manifest = export_formats(outlier_lm(), tmp_path / "export", config, calibration=batches())
    assert manifest["int8_smoothed_mlps"] == 2 and manifest["int8_recipe"]["smooth_alpha"] == 0.7
    assert read_manifest(tmp_path / "export")["int8_smoothed_mlps"] == 2
    assert not list((tmp_path / "export").glob("*smoothed*")) and not list((tmp_path / "export").glob("*fused*"))
    entry = next(a for a in manifest["artifacts"] if a["format"] == "onnx_int8_dynamic")
    assert entry["agreement"]["ok"]


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5, -0.2])
def test_bad_alpha_is_a_config_error(alpha):
    with pytest.raises(ConfigError, match="smooth_alpha"):
        Int8Recipe(smooth_alpha=alpha)
    with pytest.raises(ConfigError, match="smooth_alpha"):
        smooth_glu(outlier_lm(), batches(), alpha=alpha)
    with pytest.raises(ConfigError, match="smooth_alpha"):
        ExportConfig(smooth_alpha=alpha)


def test_empty_calibration_data_is_a_data_error():
    with pytest.raises(DataError, match="calibration data is empty"):
        smooth_glu(outlier_lm(), [])
