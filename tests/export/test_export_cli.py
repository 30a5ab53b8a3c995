"""`nl-lightning export` / `nl-lightning profile` on a checkpoint written by `nl-lightning fit`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("nl-lightning"))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 OpenMP threads on a busy 2-core machine crawl
    result = subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
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
    assert "random inputs" not in result.stderr  # calibrated on the checkpoint's own DataModule
    manifest = json.loads((fitted / "runs/classifier/version_0/export/manifest.json").read_text())
    assert manifest["source"].endswith("runs/classifier/version_0/checkpoints/last.ckpt")
    assert [a["format"] for a in manifest["artifacts"]] == ["onnx", "onnx_int8_static"]
    for artifact in manifest["artifacts"]:
        assert artifact["parity_ok"] and len(artifact["parity"]) == 4  # 2 batch sizes x 2 sequence lengths
    assert "runs/classifier/version_0/export/manifest.json" in result.stdout


@pytest.mark.slow
def test_profile_command_on_a_fit_checkpoint(fitted):
    result = _run(["profile", "--config", str(REPO / "configs/profile.yaml"), "--variants=[eager,ort_int8]",
                   "--batch_sizes=[1,4]", "--warmup=1", "--iters=3", "--threads=1"], fitted)
    assert "ort_int8_dynamic" in result.stdout and "p99 ms" in result.stdout
    data = json.loads((fitted / "runs/classifier/profile.json").read_text())
    assert [(r["name"], r["batch_size"]) for r in data["results"]] == [
        ("eager", 1), ("ort_int8_dynamic", 1), ("eager", 4), ("ort_int8_dynamic", 4),
    ]
    assert (fitted / "runs/classifier/profile.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_user_errors(tmp_path, monkeypatch):
    """Argument errors, in-process (the same `main` the console script calls)."""
    from nl_lightning.commands import export, profile
    from nl_lightning.models.checkpoint import CheckpointError

    with pytest.raises(SystemExit, match="--variants: Unknown variant 'tflite'; choose one of"):
        profile.main(["--ckpt_path", "x.ckpt", "--variants=[tflite]"])
    with pytest.raises(SystemExit, match=r"--onnx file\(s\) not found: \['nope.onnx'\]"):
        profile.main(["--ckpt_path", "x.ckpt", "--onnx=[nope.onnx]"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="Checkpoint not found: missing.ckpt"):
        export.main(["--ckpt_path", "missing.ckpt"])
    with pytest.raises(SystemExit):  # jsonargparse rejects the format name, listing the valid ones
        export.main(["--ckpt_path", "missing.ckpt", "--formats=[tflite]"])
