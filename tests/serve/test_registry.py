"""ModelRegistry: versions on disk (Triton-style folders, Lightning run folders, single files, exports)."""

from __future__ import annotations

import pytest
from model_files import classifier, save

from nl_lightning.serve.registry import ModelRegistry, VersionNotFoundError, natural_key, pick_artifact


def test_versions_sort_naturally_and_the_newest_is_last(tmp_path):
    for name in ("2", "10", "1"):
        (tmp_path / name).mkdir()
        save(classifier(0), tmp_path / name / "m.ckpt")
    save(classifier(0), tmp_path / "11.ckpt")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "notes.txt").write_text("not a version")
    registry = ModelRegistry(tmp_path)
    assert registry.versions() == ["1", "2", "10", "11"] and registry.newest() == "11"
    assert registry.source("10").path == tmp_path / "10" / "m.ckpt"
    assert registry.source().path == tmp_path / "11.ckpt" and registry.source().backend == "torch"


def test_lightning_run_folders_are_versions(tmp_path):
    for n in (0, 1):
        save(classifier(n), tmp_path / "runs" / f"version_{n}" / "checkpoints" / "last.ckpt")
    registry = ModelRegistry(tmp_path / "runs")
    assert registry.versions() == ["version_0", "version_1"]
    single = ModelRegistry(tmp_path / "runs" / "version_1")  # one run: served as one version
    assert single.versions() == ["version_1"]
    assert single.source().path == tmp_path / "runs" / "version_1" / "checkpoints" / "last.ckpt"


def test_missing_things_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_dir '.*nope' does not exist. Point it at a folder of versions"):
        ModelRegistry(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="holds no versions: add one sub-folder"):
        ModelRegistry(tmp_path).versions()
    (tmp_path / "1").mkdir()
    with pytest.raises(FileNotFoundError, match="Version '1' .* has neither a checkpoint nor an export manifest"):
        ModelRegistry(tmp_path).source("1")
    with pytest.raises(VersionNotFoundError, match="Version '3' is not in model_dir .*; available: 1."):
        ModelRegistry(tmp_path).source("3")
    with pytest.raises(FileNotFoundError, match="has no checkpoint for backend='torch'"):
        ModelRegistry(tmp_path, backend="torch").source("1")


def test_natural_key():
    assert sorted(["v10", "v2", "v1b", "v1a"], key=natural_key) == ["v1a", "v1b", "v2", "v10"]


MANIFEST = {"artifacts": [
    {"format": "onnx", "files": [{"path": "model.onnx"}], "parity_ok": True},
    {"format": "onnx_optimized", "files": [{"path": "model.optimized.onnx"}], "parity_ok": False},
    {"format": "onnx_int8_dynamic", "files": [{"path": "model.int8_dynamic.onnx"}], "parity_ok": True},
    {"format": "pt2", "files": [{"path": "model.pt2"}], "parity_ok": True},
]}


def test_auto_picks_the_first_artifact_that_passed_parity(tmp_path):
    assert pick_artifact(MANIFEST, "auto", tmp_path)["format"] == "onnx"  # optimized failed parity
    assert pick_artifact(MANIFEST, "onnx_int8_dynamic", tmp_path)["format"] == "onnx_int8_dynamic"
    with pytest.raises(FileNotFoundError, match=r"onnx_format='onnx_int8_static' is not in the export .* it has "
                                                r"\['onnx', 'onnx_int8_dynamic', 'onnx_optimized'\]"):
        pick_artifact(MANIFEST, "onnx_int8_static", tmp_path)
    failed = {"artifacts": [dict(a, parity_ok=False) for a in MANIFEST["artifacts"]]}
    with pytest.raises(FileNotFoundError, match="has no ONNX artifact that passed its parity check"):
        pick_artifact(failed, "auto", tmp_path)



def test_onnx_backend_on_a_checkpoint_only_version_says_how_to_export(tmp_path):
    save(classifier(0), tmp_path / "1" / "checkpoints" / "last.ckpt")
    with pytest.raises(FileNotFoundError, match=r"Version '1' \(.*\) has no ONNX export for backend='onnx' .*only a "
                                                r"checkpoint\. Export it once, `nl-lightning export --ckpt_path .*`"):
        ModelRegistry(tmp_path, backend="onnx").source("1")


def test_a_sharded_checkpoint_as_model_dir_says_to_consolidate(tmp_path):
    sharded = tmp_path / "last.ckpt"
    sharded.mkdir()
    (sharded / ".metadata").write_bytes(b"")
    (sharded / "__0_0.distcp").write_bytes(b"")
    with pytest.raises(ValueError, match=r"is a sharded \(distributed\) checkpoint.*nl-lightning consolidate "
                                         r".*last\.ckpt --output .*last\.ckpt\.consolidated\.ckpt"):
        ModelRegistry(sharded)
