"""`nl-lightning export` / `nl-lightning profile` on a checkpoint written by `nl-lightning fit`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from nl_lightning._io import file_sha256
from nl_lightning.export.manifest import read_manifest

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 OpenMP threads on a busy 2-core machine crawl
    result = subprocess.run([sys.executable, "-m", "nl_lightning", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, f"{args[0]} failed:\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("cli")
    _run(["fit", "--config", str(REPO / "configs/classifier.yaml"), "--trainer.max_epochs=1",
          "--trainer.limit_train_batches=20", "--trainer.limit_val_batches=2", "--trainer.enable_progress_bar=false",
          "--data.init_args.num_samples=1536"], cwd)
    assert (cwd / "runs/classifier/version_0/checkpoints/last.ckpt").is_file()
    return cwd


@pytest.mark.slow
def test_export_command_on_a_fit_checkpoint(fitted):
    result = _run(["export", "--config", str(REPO / "configs/export.yaml"), "--formats=[onnx,onnx_int8_static]"],
                  fitted)
    assert "random inputs" not in result.stderr  # calibrated and checked on the checkpoint's own DataModule
    ckpt = fitted / "runs/classifier/version_0/checkpoints/last.ckpt"
    manifest = read_manifest(fitted / "runs/classifier/version_0/export", checkpoint=ckpt)  # files and source verified
    assert manifest["source"].endswith("runs/classifier/version_0/checkpoints/last.ckpt")
    assert manifest["source_sha256"] == file_sha256(ckpt)
    assert [a["format"] for a in manifest["artifacts"]] == ["onnx", "onnx_int8_static"]
    for artifact in manifest["artifacts"]:
        assert artifact["parity_ok"] and len(artifact["parity"]) == 4  # 2 batch sizes x 2 sequence lengths
    check = manifest["artifacts"][1]["agreement"]
    assert check["data"] == "real" and check["agreement_checked"] and check["top1_agreement"] >= 95.0
    assert "runs/classifier/version_0/export/manifest.json" in result.stdout and "top-1 agreement" in result.stdout


@pytest.mark.slow
def test_profile_command_on_a_fit_checkpoint(fitted):
    result = _run(["profile", "--config", str(REPO / "configs/profile.yaml"), "--variants=[eager,ort_int8]",
                   "--batch_sizes=[1,4]", "--warmup=1", "--iters=2", "--rounds=2"], fitted)
    assert "1 intra-op thread(s), load average" in result.stdout and "p99 ms" in result.stdout
    data = json.loads((fitted / "runs/classifier/profile.json").read_text())
    assert data["threads"] == 1 and data["cores"] == os.cpu_count()
    assert [(r["name"], r["batch_size"], r["iters"], r["threads"]) for r in data["results"]] == [
        ("eager", 1, 4, 1), ("ort_int8_dynamic", 1, 4, 1), ("eager", 4, 4, 1), ("ort_int8_dynamic", 4, 4, 1),
    ]
    assert all(r["load_avg_1m"] is not None for r in data["results"])
    assert (fitted / "runs/classifier/profile.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_user_errors(tmp_path, monkeypatch):
    """Argument errors, in-process (the same `main` the console script calls)."""
    from nl_lightning.commands import export, profile
    from nl_lightning.models.checkpoint import CheckpointError

    with pytest.raises(ValueError, match="nl-lightning profile: Unknown variant 'tflite'; choose one of"):
        profile.main(["--ckpt_path", "x.ckpt", "--variants=[tflite]"])
    with pytest.raises(ValueError, match="nl-lightning profile: profile needs warmup >= 0, iters >= 1 and rounds >= 1"):
        profile.main(["--ckpt_path", "x.ckpt", "--rounds=0"])
    with pytest.raises(ValueError, match="--threads=0 must be >= 1, or null"):
        profile.main(["--ckpt_path", "x.ckpt", "--threads=0"])
    with pytest.raises(FileNotFoundError, match=r"--onnx file\(s\) not found: \['nope.onnx'\]"):
        profile.main(["--ckpt_path", "x.ckpt", "--onnx=[nope.onnx]"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="missing.ckpt"):
        export.main(["--ckpt_path", "missing.ckpt"])
    with pytest.raises(SystemExit):  # jsonargparse rejects the format name, listing the valid ones
        export.main(["--ckpt_path", "missing.ckpt", "--formats=[tflite]"])


@pytest.fixture(scope="module")
def classifier_checkpoint(tmp_path_factory) -> dict:
    """A real `fit` checkpoint of a tiny classifier (its DataModule recorded the way LightningCLI does)."""
    from nl_lightning.data import SyntheticSequenceDataModule
    from nl_lightning.models import TransformerClassifier

    root = tmp_path_factory.mktemp("ckpt")
    config = dict(input_dim=8, n_layers=1, d_model=16, n_heads=2, max_seq_len=16, position="none", causal=False)
    model = TransformerClassifier(config, num_classes=3)
    data = SyntheticSequenceDataModule(num_samples=64, batch_size=16)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=root)
    trainer.fit(model, data)
    trainer.save_checkpoint(root / "good.ckpt")
    return torch.load(root / "good.ckpt", weights_only=True)


@pytest.mark.parametrize(("class_path", "arguments", "match"), [
    ("nl_lightning._io.write_json", {"data": {"pwned": True}},
     r"names the DataModule class 'nl_lightning\._io\.write_json', which is not on nl_lightning's "
     "allow-list"),
    ("os.system", {"command": "touch pwned"}, r"names the DataModule class 'os\.system'"),
    ("not_imported_anywhere.EvilDataModule", {}, r"'not_imported_anywhere\.EvilDataModule', which is not on"),
    ("nl_lightning.data.SyntheticSequenceDataModule", {"path": "x"}, r"the stored arguments do not fit "
     r"nl_lightning\.data\.synthetic\.SyntheticSequenceDataModule"),
])
def test_a_crafted_checkpoint_cannot_choose_code_for_export_to_run(classifier_checkpoint, tmp_path, monkeypatch,
                                                                    class_path, arguments, match):
    """The checkpoint names a callable for its DataModule: refused before it is imported or called."""
    from nl_lightning.commands import export
    from nl_lightning.models.trust import UntrustedClassError

    target = tmp_path / "written_by_the_checkpoint.json"
    arguments = {**arguments, "path": str(target)} if class_path.endswith("write_json") else arguments
    crafted = {**classifier_checkpoint,
               "datamodule_hyper_parameters": {"_class_path": class_path, **arguments}}
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save(crafted, ckpt)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UntrustedClassError, match=match) as refusal:
        export.main(["--ckpt_path", str(ckpt), "--formats=[onnx,onnx_int8_static]"])
    assert "--data" in str(refusal.value)  # the way out is named
    assert "not_imported_anywhere" not in sys.modules
    assert not target.exists() and not (tmp_path / "pwned").exists()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "run", "run/checkpoints", "run/checkpoints/last.ckpt"]  # nothing written: no export, no temp folder


@pytest.fixture(scope="module")
def file_fit(tmp_path_factory) -> Path:
    """`nl-lightning fit` of configs/classifier_hdf5.yaml on a small HDF5 file (FileDataModule)."""
    import h5py
    import numpy as np

    from nl_lightning.cli import main

    cwd = tmp_path_factory.mktemp("file_fit")
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (256, 16, 8)).astype(np.float32)
    with h5py.File(cwd / "train.h5", "w") as f:
        f["x"], f["y"] = x, (x[:, :, 0].mean(1) > 3.0).astype(np.int64) + (x[:, :, 1].mean(1) > 3.0)
    before = os.getcwd()
    os.chdir(cwd)
    try:
        assert main(["fit", "--config", str(REPO / "configs/classifier_hdf5.yaml"), "--data.init_args.train_path=train.h5",
                     "--data.init_args.num_workers=0", "--trainer.max_steps=6", "--trainer.limit_val_batches=2",
                     "--trainer.enable_progress_bar=false", "--model.init_args.config.d_model=16",
                     "--model.init_args.config.n_layers=1"]) == 0
    finally:
        os.chdir(before)
    return cwd


def _export(cwd: Path, *args: str) -> int:
    from nl_lightning.cli import main

    before = os.getcwd()
    os.chdir(cwd)
    try:
        return main(["export", "--ckpt_path", "runs/classifier_hdf5", "--formats=[onnx,onnx_int8_static]",
                     "--check_batches=2", "--calibration_batches=2", *args])
    finally:
        os.chdir(before)


def test_export_of_a_file_datamodule_checkpoint_calibrates_on_its_real_data(file_fit, recwarn):
    """FileDataModule saves its settings, so export rebuilds it (through the allow-list) and calibrates
    static INT8 on its validation split, named in the manifest; not on random inputs."""
    assert _export(file_fit, "--out_dir=export_real") == 0
    assert not [w for w in recwarn if "random inputs" in str(w.message)]
    manifest = read_manifest(file_fit / "export_real")
    assert manifest["data"] == {"datamodule": "nl_lightning.data.file_datamodule.FileDataModule", "split": "val",
                                "files": ["train.h5"]}
    check = manifest["artifacts"][1]["agreement"]
    assert check["data"] == "real" and check["agreement_checked"]


def test_export_without_data_refuses_random_calibration_unless_asked(file_fit, tmp_path, capsys):
    ckpt = next((file_fit / "runs/classifier_hdf5").rglob("last.ckpt"))
    old = torch.load(ckpt, weights_only=True)
    old.pop("datamodule_hyper_parameters")  # as a checkpoint written before DataModules saved their settings
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save(old, tmp_path / "run" / "checkpoints" / "last.ckpt")
    (tmp_path / "runs").symlink_to(tmp_path / "run")
    capsys.readouterr()
    assert _export(tmp_path, "--ckpt_path=run") == 1
    err = capsys.readouterr().err
    assert "records no DataModule to calibrate static INT8 on" in err and "--random_calibration=true" in err, err
    with pytest.warns(UserWarning, match="calibrated on random inputs"):
        assert _export(tmp_path, "--ckpt_path=run", "--random_calibration=true", "--out_dir=export_random") == 0
    assert read_manifest(tmp_path / "export_random")["data"] == "random"


def test_calibration_batches_are_raw_when_the_model_normalizes_inside(file_fit, monkeypatch):
    """normalize: true in fit puts the statistics in the model, which then takes raw features; the
    rebuilt DataModule yields raw features too (z-scored ones would calibrate the wrong ranges),
    without a pass over the training split for statistics the model already holds."""
    from nl_lightning.commands.export import datamodule_from_checkpoint, val_dataloader
    from nl_lightning.models import load_checkpoint

    monkeypatch.chdir(file_fit)
    ckpt = next(Path("runs/classifier_hdf5").rglob("last.ckpt"))
    datamodule = datamodule_from_checkpoint(ckpt)
    assert datamodule.normalize and datamodule.hparams["train_path"] == "train.h5"
    x = next(iter(val_dataloader(datamodule, load_checkpoint(ckpt))))["x"]
    assert 2.5 < float(x.mean()) < 3.5  # the file's raw mean is 3.0 (z-scored: about 0)
    assert datamodule.model_normalizes and not datamodule.normalizer.fitted
