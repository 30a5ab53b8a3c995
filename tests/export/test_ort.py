from __future__ import annotations

import pytest
import torch

from nl_lightning.export.calibration import DataLoaderCalibrationReader, calibration_reader
from nl_lightning.export.signature import signature_of
from nl_lightning.export.onnx import onnx_files
from nl_lightning.errors import ConfigError
from nl_lightning.export.isa import cpu_isa
from nl_lightning.export.ort import (
    Int8Recipe,
    int8_recipe,
    optimize_onnx,
    ort_runner,
    ort_session,
    quantize_onnx_dynamic,
    quantize_onnx_static,
)
from nl_lightning.export.parity import AgreementTolerance, check_agreement


def _size(path) -> int:
    return sum(p.stat().st_size for p in onnx_files(path))


@pytest.mark.parametrize("name", ["lm", "classifier"])
def test_optimized_graph_is_its_own_model_and_matches(models, onnx_paths, name, tmp_path):
    path = optimize_onnx(onnx_paths[name], tmp_path / "opt.onnx")
    x = signature_of(models[name]).example(3, 9)
    with torch.inference_mode():
        torch.testing.assert_close(ort_runner(ort_session(path))(x), models[name](x), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize(("mode", "min_size_ratio"), [("dynamic", 3.0), ("static", 2.5)])
def test_int8_of_a_trained_model_is_smaller_and_agrees_on_validation_data(trained, mode, min_size_ratio, tmp_path):
    """README: dynamic INT8 is 3.2-3.65x smaller. Static stores a scale and zero point per channel and
    per activation (QDQ pairs), so it is a little larger. Both must keep >= 95% of the trained
    model's top-1 predictions on held-out batches (measured: 99.0-99.8%)."""
    dst = tmp_path / f"{mode}.onnx"
    if mode == "dynamic":
        quantize_onnx_dynamic(trained.onnx, dst)
    else:
        quantize_onnx_static(trained.onnx, dst, DataLoaderCalibrationReader(trained.val[:4], "x", 4))
    assert _size(trained.onnx) / _size(dst) >= min_size_ratio
    assert sorted(p.name for p in tmp_path.iterdir()) == [dst.name]  # pre-processing files cleaned up
    inputs = [x for x, _ in trained.val]
    record = check_agreement(trained.model, ort_runner(ort_session(dst)), inputs, AgreementTolerance(95.0, 0.1))
    assert record["ok"] and record["predictions"] == sum(len(x) for x in inputs), record
    assert record["top1_agreement"] >= 95.0 and record["relative_error"] < 0.1


def test_trained_fixture_learned_the_task(trained):
    assert trained.accuracy > 80  # chance is 33%: its logits have margins the INT8 checks rely on


def test_calibration_reader_stops_after_n_batches():
    batches = ({"x": torch.full((2, 4), i)} for i in range(100))  # lazy: must not be drained
    reader = DataLoaderCalibrationReader(batches, "idx", num_batches=3)
    feeds = list(reader)
    assert [int(f["idx"][0, 0]) for f in feeds] == [0, 1, 2] and feeds[0]["idx"].dtype.name == "int64"


@pytest.mark.parametrize(("num_batches", "match"), [(0, "num_batches=0 must be a positive integer"),
                                                    (True, "num_batches=True must be")])
def test_calibration_reader_errors(num_batches, match):
    with pytest.raises(ValueError, match=match):
        DataLoaderCalibrationReader([], "x", num_batches)


def test_empty_calibration_data_is_an_error():
    with pytest.raises(ValueError, match="calibration data is empty"):
        DataLoaderCalibrationReader([], "x", 2).get_next()


def test_calibration_without_data_is_an_error_unless_random_is_asked_for(models):
    with pytest.raises(ValueError, match=r"Static INT8 needs calibration data and none was given.*random_calibration: true"):
        calibration_reader(signature_of(models["lm"]), None, num_batches=2)
    with pytest.warns(UserWarning, match="calibrated on random inputs"):
        reader = calibration_reader(signature_of(models["lm"]), None, num_batches=2, random_calibration=True)
    assert len(list(reader)) == 2


def test_unknown_quantization_types_are_rejected(onnx_paths, tmp_path):
    with pytest.raises(ConfigError, match=r"Int8Recipe.activation_type='int4' is not supported; choose one of"):
        quantize_onnx_static(onnx_paths["lm"], tmp_path / "q.onnx", None, Int8Recipe(activation_type="int4"))
    with pytest.raises(ValueError, match="calibration method='kl' is not supported"):
        quantize_onnx_static(onnx_paths["lm"], tmp_path / "q.onnx", None, method="kl")
    with pytest.raises(ValueError, match="level='max' is not supported"):
        optimize_onnx(onnx_paths["lm"], tmp_path / "o.onnx", level="max")


def test_static_int8_quantizes_a_rank_1_weight_per_tensor_without_a_warning(tmp_path, caplog):
    """Attention pooling's query is a vector: no channel axis. ORT used to log "Axis 1 is out-of-range"
    on every export of such a model; it is now asked for a per-tensor scale up front."""
    import logging

    import onnx

    from nl_lightning.export.onnx import export_onnx
    from nl_lightning.models import SequenceClassifier, TransformerConfig

    config = TransformerConfig(input_dim=4, n_layers=1, d_model=16, n_heads=2, max_seq_len=8, position="learned")
    model = SequenceClassifier(config, num_outputs=3, pooling="attention").eval()
    src = export_onnx(model, tmp_path / "model.onnx")
    batches = [{"x": torch.randn(4, 8, 4)} for _ in range(2)]
    with caplog.at_level(logging.WARNING):
        quantize_onnx_static(src, tmp_path / "int8.onnx", DataLoaderCalibrationReader(batches, "x", 2))
    assert not [r for r in caplog.records if "out-of-range" in r.getMessage()]
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    scales = {i.name: list(i.dims) for i in graph.initializer if "pool.query" in i.name and i.name.endswith("_scale")}
    assert scales and all(dims == [] for dims in scales.values()), scales  # one scale: per tensor
    x = torch.randn(3, 8, 4)
    with torch.inference_mode():
        torch.testing.assert_close(ort_runner(ort_session(tmp_path / "int8.onnx"))(x), model(x), atol=0.1, rtol=0.1)


@pytest.mark.parametrize(("isa", "reduce_range"), [
    (["avx2", "fma", "avx512f", "avx512_vnni", "amx_int8"], False),
    (["avx2", "fma", "avx_vnni"], False),
    (["avx2", "fma", "avx512f", "avx512bw"], True),  # no VNNI: u8 x s8 pairs are summed in 16 bits
    (["avx2", "fma"], True),
    ([], True),
])
def test_int8_recipe_reduces_the_weight_range_only_without_vnni(isa, reduce_range):
    recipe = int8_recipe(isa)
    assert recipe == Int8Recipe(per_channel=True, reduce_range=reduce_range, activation_type="uint8",
                                weight_type="int8")
    assert int8_recipe() == int8_recipe(cpu_isa())  # default: this machine's CPU
