"""``read_manifest`` vouches only for a folder whose files are the ones the export wrote."""

from __future__ import annotations

import hashlib
import json

import pytest

from nl_lightning._io import path_sha256
from nl_lightning.export.manifest import (
    ManifestError, artifact_entry, build_manifest, read_manifest, write_manifest,
)


@pytest.fixture
def export_dir(tmp_path):
    """A two-artifact export folder (the files' contents stand in for models)."""
    out = tmp_path / "export"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"graph-v1")
    (out / "model.onnx.data").write_bytes(b"weights-v1")
    (out / "model.pt2").write_bytes(b"program-v1")
    artifacts = [artifact_entry("onnx", [out / "model.onnx", out / "model.onnx.data"], out, None, None),
                 artifact_entry("pt2", [out / "model.pt2"], out, None, None)]
    write_manifest(out, build_manifest(artifacts, {"name": "x"}, 18, "run/last.ckpt", "cd" * 32))
    return out


def test_a_complete_export_reads_back(export_dir):
    manifest = read_manifest(export_dir)
    assert manifest == read_manifest(export_dir / "manifest.json")
    files = manifest["artifacts"][0]["files"]
    assert files[1] == {"path": "model.onnx.data", "bytes": 10, "sha256": hashlib.sha256(b"weights-v1").hexdigest()}


def test_a_file_from_another_export_is_named(export_dir):
    (export_dir / "model.pt2").write_bytes(b"program-v2")  # same size, other bytes: a mixed folder
    with pytest.raises(ManifestError, match=r"model\.pt2 does not match .*manifest\.json \(recorded 10 bytes, "
                                            r"sha256 [0-9a-f]{12}…; found sha256 [0-9a-f]{12}…\)"):
        read_manifest(export_dir)
    (export_dir / "model.onnx.data").write_bytes(b"w")
    with pytest.raises(ManifestError, match=r"model\.onnx\.data does not match .*found 1 bytes"):
        read_manifest(export_dir)
    assert read_manifest(export_dir, verify=False)["opset"] == 18  # opting out reads it as is


def test_a_missing_file_is_named(export_dir):
    (export_dir / "model.onnx.data").unlink()
    with pytest.raises(ManifestError, match=r"model\.onnx\.data is listed in .* but missing"):
        read_manifest(export_dir)


def test_the_source_checkpoint_is_checked_when_given(export_dir, tmp_path):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"checkpoint")
    with pytest.raises(ManifestError, match=rf"was not exported from {ckpt}: its source_sha256 is (cd)+, the "
                                            rf"checkpoint's is {hashlib.sha256(b'checkpoint').hexdigest()}"):
        read_manifest(export_dir, checkpoint=ckpt)
    manifest = json.loads((export_dir / "manifest.json").read_text())
    manifest["source_sha256"] = path_sha256(ckpt)
    write_manifest(export_dir, manifest)
    assert read_manifest(export_dir, checkpoint=ckpt)["source_sha256"] == hashlib.sha256(b"checkpoint").hexdigest()


def test_a_sharded_checkpoint_folder_hashes_names_and_bytes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "__0_0.distcp").write_bytes(b"x")
    first = path_sha256(tmp_path / "a")
    (tmp_path / "a" / "__0_0.distcp").rename(tmp_path / "a" / "__1_0.distcp")
    assert path_sha256(tmp_path / "a") != first  # a renamed shard is another checkpoint


@pytest.mark.parametrize(("edit", "match"), [
    (lambda m: m["artifacts"][0]["files"][0].update(path="../../etc/passwd"), r"lists a file '\.\./\.\./etc/passwd' "
                                                                             "outside its folder"),
    (lambda m: m["artifacts"][0]["files"][0].update(path="/etc/passwd"), "outside its folder"),
    (lambda m: m["artifacts"][0]["files"][0].pop("sha256"), "the entry for model.onnx has no sha256"),
    (lambda m: m.update(manifest_version=1), r"manifest_version 1, which records no checksums"),
    (lambda m: m.update(artifacts="model.onnx"), "has no 'artifacts' list"),
])
def test_malformed_manifests_are_refused(export_dir, edit, match):
    manifest = json.loads((export_dir / "manifest.json").read_text())
    edit(manifest)
    (export_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=match):
        read_manifest(export_dir)


def test_unreadable_or_absent_manifests(tmp_path):
    with pytest.raises(FileNotFoundError, match="No export manifest at .*run `nl-lightning export`"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="is not valid JSON"):
        read_manifest(tmp_path)
