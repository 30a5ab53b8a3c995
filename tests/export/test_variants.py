from __future__ import annotations

import shutil

import pytest

from nl_lightning.export.compare import compare_variants
from nl_lightning.export.evaluate import evaluate
from nl_lightning.export.variants import VariantBuilder, resolve_variant


def test_compare_variants_of_a_trained_model(trained, tmp_path):
    shutil.copy(trained.onnx, tmp_path / "model.onnx")  # the ORT variants reuse the session's export
    builder = VariantBuilder(trained.model, tmp_path, calibration=trained.val, calibration_batches=4, threads=1)
    rows = compare_variants(builder, ["ort_fp32", "ort_int8_dynamic", "bf16"], trained.val, eval_batches=None)
    by_name = {r["variant"]: r for r in rows}
    assert list(by_name) == ["eager", "ort_fp32", "ort_int8_dynamic", "bf16"]
    eager = by_name["eager"]
    assert eager["accuracy"] == pytest.approx(trained.accuracy) and eager["samples"] == 819  # every val sample
    assert eager["loss"] == pytest.approx(evaluate(trained.model, trained.val)["loss"])
    assert (eager["size_ratio"], eager["agreement"], eager["accuracy_delta"]) == (1.0, 100.0, 0.0)
    fp32 = by_name["ort_fp32"]  # the same function: same predictions, loss to float precision
    assert fp32["agreement"] == 100.0 and fp32["accuracy_delta"] == 0.0 and abs(fp32["loss_delta"]) < 1e-5
    int8 = by_name["ort_int8_dynamic"]
    assert int8["size_ratio"] >= 3.0 and int8["agreement"] >= 95.0  # README: 3.2-3.65x smaller
    assert abs(int8["accuracy_delta"]) <= 2.0 and abs(int8["loss_delta"]) < 0.05
    bf16 = by_name["bf16"]
    assert 1.9 < bf16["size_ratio"] <= 2.0 and bf16["agreement"] >= 95.0  # half the bytes, plus torch.save's own
    for row in rows:
        assert (tmp_path / row["path"].rsplit("/", 1)[-1]).is_file()
        assert "latency_ms_b1" not in row  # timing is the profiler's job, not a one-shot comparison's


def test_compare_variants_without_data_reports_size_only(models, tmp_path):
    rows = compare_variants(VariantBuilder(models["classifier"], tmp_path), ["fp16"], None)
    assert [sorted(r) for r in rows] == [["bytes", "path", "size_ratio", "variant"]] * 2
    assert 1.5 < rows[1]["size_ratio"] <= 2.0  # half the tensor bytes; torch.save's headers weigh in a tiny model


def test_aliases_and_unknown_variants():
    assert resolve_variant("ort_int8") == "ort_int8_dynamic" and resolve_variant("fp32") == "eager"
    with pytest.raises(ValueError, match="Unknown variant 'tflite'; choose one of"):
        resolve_variant("tflite")
