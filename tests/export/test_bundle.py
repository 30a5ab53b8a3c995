from __future__ import annotations

import json

import pytest

from nl_lightning.export.bundle import ExportConfig, export_formats
from nl_lightning.export.parity import ParityError


@pytest.fixture(scope="module")
def classifier_bundle(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    with pytest.warns(DeprecationWarning, match="deprecated"):  # torch.jit.trace: TorchScript is legacy
        manifest = export_formats(
            models["classifier"], out,
            ExportConfig(formats=["onnx_optimized", "onnx_int8_dynamic", "pt2", "torchscript"],
                         parity_batch_sizes=[1, 3], parity_seq_lens=[5, 16], quantized_atol=0.3),
            source="test",
        )
    return out, manifest


def test_manifest_lists_files_sizes_and_measured_errors(classifier_bundle):
    out, manifest = classifier_bundle
    assert json.loads((out / "manifest.json").read_text()) == manifest
    formats = [a["format"] for a in manifest["artifacts"]]
    assert formats == ["onnx", "onnx_optimized", "onnx_int8_dynamic", "pt2", "torchscript"]  # base ONNX added
    assert manifest["opset"] == 18 and manifest["source"] == "test"
    assert manifest["input"] | {} == manifest["input"] and manifest["input"]["name"] == "x"
    assert manifest["input"]["shape"] == ["batch", "seq", 8] and manifest["input"]["dtype"] == "float32"
    assert manifest["versions"]["onnxruntime"]
    for artifact in manifest["artifacts"]:
        for f in artifact["files"]:
            assert (out / f["path"]).stat().st_size == f["bytes"] > 0
        assert [(r["batch_size"], r["seq_len"]) for r in artifact["parity"]] == [(1, 5), (1, 16), (3, 5), (3, 16)]
        assert artifact["parity_ok"] and artifact["max_abs_err"] == max(r["max_abs_err"] for r in artifact["parity"])
    fp32 = {a["format"]: a for a in manifest["artifacts"]}
    assert fp32["onnx"]["tolerance"] == {"atol": 1e-4, "rtol": 1e-3, "relative": False}
    assert fp32["onnx"]["max_abs_err"] < 1e-5 and fp32["pt2"]["max_abs_err"] < 1e-5
    assert fp32["onnx_int8_dynamic"]["bytes"] < fp32["onnx"]["bytes"]


def test_failed_parity_raises_after_writing_the_manifest(models, tmp_path):
    config = ExportConfig(formats=["onnx_int8_dynamic"], quantized_atol=0.0, parity_batch_sizes=[2],
                          parity_seq_lens=[4])
    with pytest.raises(ParityError, match=r"Parity check failed for \['onnx_int8_dynamic'\]"):
        export_formats(models["lm"], tmp_path, config)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [a["parity_ok"] for a in manifest["artifacts"]] == [True, False]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(formats=["onnx", "coreml"]), r"formats=\['onnx', 'coreml'\]: choose one or more of"),
        (dict(formats=[]), "choose one or more of"),
        (dict(opset=13), "opset=13 is too old for the dynamo exporter"),
        (dict(parity_batch_sizes=[0]), r"parity_batch_sizes=\[0\] must be a non-empty list"),
        (dict(atol=-1.0), "must be >= 0"),
        (dict(calibration_batches=0), "calibration_batches=0 must be >= 1"),
    ],
)
def test_export_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExportConfig(**kwargs)
