from __future__ import annotations

import pytest
import torch

from nl_lightning.export.compare import compare_variants
from nl_lightning.export.inputs import input_spec
from nl_lightning.export.variants import VariantBuilder, resolve_variant


def test_compare_variants_measures_size_latency_and_metric(models, tmp_path):
    model = models["classifier"]
    spec = input_spec(model)
    batches = [(spec.example(16, 12, seed=i), torch.randint(0, 3, (16,))) for i in range(3)]
    builder = VariantBuilder(model, tmp_path, calibration=batches, calibration_batches=2, threads=1)
    rows = compare_variants(builder, ["ort_fp32", "ort_int8_static", "bf16"], batches, latency_batch_sizes=[1, 4],
                            seq_len=12, warmup=1, iters=2)
    by_name = {r["variant"]: r for r in rows}
    assert list(by_name) == ["eager", "ort_fp32", "ort_int8_static", "bf16"]
    assert by_name["eager"]["size_ratio"] == 1.0 and by_name["eager"]["accuracy_delta"] == 0.0
    assert by_name["ort_fp32"]["accuracy_delta"] == 0.0  # same function, same predictions
    assert by_name["ort_int8_static"]["size_ratio"] > 1.5 and by_name["bf16"]["size_ratio"] > 1.5
    for row in rows:
        assert row["latency_ratio_b1"] > 0 and row["latency_ratio_b4"] > 0 and row["loss"] > 0
        assert row["path"] is None or (tmp_path / row["path"].rsplit("/", 1)[-1]).exists()


def test_aliases_and_unknown_variants():
    assert resolve_variant("ort_int8") == "ort_int8_dynamic" and resolve_variant("fp32") == "eager"
    with pytest.raises(ValueError, match="Unknown variant 'tflite'; choose one of"):
        resolve_variant("tflite")
