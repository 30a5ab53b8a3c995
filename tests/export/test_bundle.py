from __future__ import annotations

import hashlib
import json
import multiprocessing
import signal
import time

import pytest
import torch

from nl_lightning.export.bundle import ExportConfig, export_formats
from nl_lightning._io import file_sha256
from nl_lightning.export.fusion import fused_op_counts
from nl_lightning.export.isa import cpu_isa
from nl_lightning.export.manifest import read_manifest
from nl_lightning.export.ort import int8_recipe
from nl_lightning.export.parity import ParityError
from nl_lightning.models import CausalLM, TransformerConfig


@pytest.fixture(scope="module")
def classifier_bundle(trained):
    """The trained classifier's session export (conftest's EXPORT_CONFIG, with validation batches)."""
    return trained.export_dir, trained.manifest


def test_manifest_lists_files_sizes_hashes_and_measured_errors(classifier_bundle):
    out, manifest = classifier_bundle
    assert read_manifest(out) == manifest == json.loads((out / "manifest.json").read_text())
    formats = [a["format"] for a in manifest["artifacts"]]
    assert formats == ["onnx", "onnx_optimized", "onnx_int8_dynamic", "pt2", "torchscript"]  # base ONNX added
    assert (manifest["manifest_version"], manifest["opset"]) == (2, 18)
    assert (manifest["source"], manifest["source_sha256"]) == ("test", "ab" * 32)
    assert manifest["input"] == {"name": "x", "vocab_size": None, "feature_dim": 8, "max_seq_len": 16,
                                 "output_name": "logits", "dtype": "float32", "shape": ["batch", "seq", 8]}
    assert manifest["versions"]["onnxruntime"]
    assert manifest["isa"] == cpu_isa()  # INT8 speed and its recipe depend on the exporting CPU
    assert manifest["int8_recipe"] == ExportConfig().int8_recipe().to_dict() == int8_recipe().to_dict()
    assert manifest["fusions"] == {"sdpa": 2, "mha2": 2, "skip_layer_normalization": 4, "erf_gelu": 2, "bias_gelu": 2}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json", "model.onnx", "model.optimized.onnx", "model.int8_dynamic.onnx", "model.pt2",
         "model.torchscript.pt"])
    for artifact in manifest["artifacts"]:
        for f in artifact["files"]:
            data = (out / f["path"]).read_bytes()
            assert f["bytes"] == len(data) > 0 and f["sha256"] == hashlib.sha256(data).hexdigest()
        assert [(r["batch_size"], r["seq_len"]) for r in artifact["parity"]] == [(1, 5), (1, 16), (3, 5), (3, 16)]
        assert artifact["parity_ok"] and artifact["max_abs_err"] == max(r["max_abs_err"] for r in artifact["parity"])
    by_format = {a["format"]: a for a in manifest["artifacts"]}
    assert by_format["onnx"]["tolerance"] == {"atol": 1e-4, "rtol": 1e-3, "relative": False}
    assert by_format["onnx"]["max_abs_err"] < 1e-5 and by_format["pt2"]["max_abs_err"] < 1e-5


def test_optimized_and_int8_formats_start_from_the_fused_graph(classifier_bundle, models, tmp_path):
    out, _ = classifier_bundle
    fused = {"MultiHeadAttention": 2, "SkipLayerNormalization": 4, "BiasGelu": 2}
    assert fused_op_counts(out / "model.optimized.onnx") == fused
    assert fused_op_counts(out / "model.int8_dynamic.onnx") == fused
    assert fused_op_counts(out / "model.onnx") == {}  # the portable graph stays plain ONNX
    plain = export_formats(models["classifier"], tmp_path / "plain", ExportConfig(
        formats=["onnx_optimized"], fuse=False, parity_batch_sizes=[1], parity_seq_lens=[4]))
    assert "fusions" not in plain and "int8_recipe" not in plain
    assert "MultiHeadAttention" not in fused_op_counts(tmp_path / "plain" / "model.optimized.onnx")


def test_int8_is_checked_by_top1_agreement_on_the_validation_batches(classifier_bundle):
    _, manifest = classifier_bundle
    int8 = {a["format"]: a for a in manifest["artifacts"]}["onnx_int8_dynamic"]
    assert int8["tolerance"] == {"min_agreement": 95.0, "max_relative_error": 0.2}
    check = int8["agreement"]
    assert (check["data"], check["batches"], check["predictions"], check["agreement_checked"]) == ("real", 4, 128, True)
    assert check["top1_agreement"] >= 95.0 and check["relative_error"] < 0.1 and check["ok"]
    assert "agreement" not in {a["format"]: a for a in manifest["artifacts"]}["onnx"]  # fp32: elementwise only


def test_without_data_int8_is_checked_on_random_inputs_and_a_failed_check_raises_after_writing(models, tmp_path):
    config = ExportConfig(formats=["onnx_int8_dynamic"], min_agreement=100.0, max_relative_error=1e-6,
                          parity_batch_sizes=[1], parity_seq_lens=[4], check_batches=2)
    with pytest.warns(UserWarning, match="checked on random inputs because no data was given"):
        with pytest.raises(ParityError, match=r"Parity check failed for \['onnx_int8_dynamic'\]"):
            export_formats(models["lm"], tmp_path / "export", config)
    manifest = read_manifest(tmp_path / "export")  # written, complete, and saying what failed
    assert [a["parity_ok"] for a in manifest["artifacts"]] == [True, False]
    check = manifest["artifacts"][1]["agreement"]
    assert (check["data"], check["batches"], check["agreement_checked"]) == ("random", 2, False)
    assert check["relative_error"] > 1e-6 and not check["ok"]  # the error bound failed, not the agreement


def test_an_export_never_replaces_a_folder_it_did_not_write(models, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    with pytest.raises(ValueError, match=r"holds \['checkpoints'\], which no export wrote there"):
        export_formats(models["lm"], tmp_path, ExportConfig(formats=["onnx"]))
    assert (tmp_path / "checkpoints" / "last.ckpt").read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]  # no temporary folder left


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(formats=["onnx", "coreml"]), r"formats=\['onnx', 'coreml'\]: choose one or more of"),
        (dict(formats=[]), "choose one or more of"),
        (dict(opset=13), "opset=13 is too old for the dynamo exporter"),
        (dict(parity_batch_sizes=[0]), r"parity_batch_sizes=\[0\] must be a non-empty list"),
        (dict(atol=-1.0), "must be >= 0"),
        (dict(calibration_batches=0), "calibration_batches=0 must be >= 1"),
        (dict(check_batches=0), "check_batches=0 must be >= 1"),
        (dict(min_agreement=95.5 * 2), r"min_agreement=191.0 is a percentage"),
        (dict(max_relative_error=-0.1), r"max_relative_error=-0.1 must be > 0"),
    ],
)
def test_export_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExportConfig(**kwargs)


def _export(out, seed: int) -> dict:
    """Export a tiny LM with weights from ``seed`` as a .pt2 program."""
    torch.manual_seed(seed)
    model = CausalLM(TransformerConfig(n_layers=1, d_model=32, n_heads=4, max_seq_len=32)).eval()
    return export_formats(model, out, ExportConfig(formats=["pt2"], parity_batch_sizes=[1], parity_seq_lens=[8]))


def _artifacts(manifest: dict) -> list[tuple[str, list[tuple[str, str]]]]:
    return [(a["format"], [(f["path"], f["sha256"]) for f in a["files"]]) for a in manifest["artifacts"]]


@pytest.mark.slow
def test_a_re_export_killed_mid_build_leaves_the_old_export_whole(tmp_path):
    """SIGKILL while the new export is half built: the folder is still the old, complete export;
    the next export cleans up the killed one's leftovers and equals an uninterrupted run."""
    work = tmp_path / "work"
    old = _export(work / "export", seed=1)
    new = _export(tmp_path / "reference", seed=2)  # the uninterrupted run of the new weights
    assert _artifacts(old) != _artifacts(new)  # (exports are byte-for-byte reproducible)

    # A forked child (modules already imported: no second start-up cost), killed with SIGKILL as
    # soon as its new model.pt2 is complete wherever it builds it, while it checks it against eager.
    new_pt2 = new["artifacts"][0]["files"][0]["sha256"]

    def new_pt2_written() -> bool:
        return any(p.parent.name in ("build", "export") and file_sha256(p) == new_pt2 for p in work.rglob("model.pt2"))

    child = multiprocessing.get_context("fork").Process(target=_export, args=(work / "export", 2))
    child.start()
    deadline = time.monotonic() + 120
    while child.is_alive() and time.monotonic() < deadline and not new_pt2_written():
        time.sleep(0.002)
    child.kill()
    child.join()
    assert child.exitcode == -signal.SIGKILL, "the export finished before it could be killed"
    assert read_manifest(work / "export") == old  # every file verified against the old manifest's hashes
    assert [p.name for p in work.glob(".export.tmp-*")]  # the kill's debris, for the next run to clean

    _export(work / "export", seed=2)
    assert _artifacts(read_manifest(work / "export")) == _artifacts(new)
    assert [p.name for p in work.iterdir()] == ["export"]  # no hidden folder left behind


@pytest.mark.parametrize("kind", ["lm", "regressor", "bare_network"])
def test_manifest_records_the_task_a_server_needs(kind, models, tmp_path):
    from nl_lightning.models import TransformerClassifier

    if kind == "lm":
        model, expected = models["lm"], {"task": "lm", "num_outputs": 256}  # the byte vocabulary
    elif kind == "regressor":
        model = TransformerClassifier(TransformerConfig(input_dim=8, n_layers=1, d_model=16, n_heads=2, max_seq_len=8),
                                      num_classes=2, task="regression")
        expected = {"task": "regression", "num_outputs": 2}
    else:  # a bare SequenceClassifier cannot tell classification from regression: nothing is claimed
        model, expected = models["classifier"], {}
    config = ExportConfig(formats=["onnx"], parity_batch_sizes=[1], parity_seq_lens=[4])
    manifest = export_formats(model, tmp_path / "export", config)
    assert {k: manifest[k] for k in ("task", "num_outputs") if k in manifest} == expected
    assert read_manifest(tmp_path / "export") == manifest


def test_an_lm_export_carries_its_tokenizer_listed_and_hashed(trained_tokenizer, tmp_path):
    """The server of an export must encode text as the model was trained: the tokenizer (and chat
    template) sit beside the graph, listed in the manifest like the artifacts and verified on read."""
    import json
    import shutil

    from nl_lightning.data.tokenizer import load_codec
    from nl_lightning.export.manifest import ManifestError, read_manifest
    from nl_lightning.models import TransformerLM

    folder = tmp_path / "hf"
    folder.mkdir()
    shutil.copy(trained_tokenizer, folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages[0]['content'] }}"}))
    model = TransformerLM(TransformerConfig(vocab_size=512, n_layers=1, d_model=32, n_heads=4, max_seq_len=16),
                          tokenizer=str(folder))
    manifest = export_formats(model, tmp_path / "export", ExportConfig(formats=["onnx"], parity_batch_sizes=[1]))
    assert [f["path"] for f in manifest["tokenizer"]["files"]] == ["tokenizer/tokenizer.json",
                                                                   "tokenizer/tokenizer_config.json"]
    codec = load_codec(tmp_path / "export" / "tokenizer")
    assert codec.to_json() == model.codec.to_json() and codec.chat_template == model.codec.chat_template
    (tmp_path / "export" / "tokenizer" / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ManifestError, match=r"tokenizer_config\.json does not match"):
        read_manifest(tmp_path / "export")
    byte_lm = export_formats(TransformerLM(TransformerConfig(n_layers=1, d_model=32, n_heads=4, max_seq_len=16)),
                             tmp_path / "bytes", ExportConfig(formats=["onnx"], parity_batch_sizes=[1]))
    assert "tokenizer" not in byte_lm  # the byte vocabulary needs no file
