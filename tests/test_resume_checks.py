"""--ckpt_path resolution: ``last`` and run folders mean the newest last.ckpt across versioned runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nl_lightning.models import CheckpointError
from nl_lightning.resume import resolve_ckpt_path

REPO = Path(__file__).resolve().parents[1]


def _touch(path, mtime):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04")
    os.utime(path, ns=(mtime, mtime))
    return path


def test_last_is_the_newest_last_ckpt_of_any_version(tmp_path):
    root = tmp_path / "runs" / "char_lm"
    _touch(root / "version_0" / "checkpoints" / "last.ckpt", 3_000_000_000)
    newest = _touch(root / "version_1" / "checkpoints" / "last.ckpt", 9_000_000_000)
    _touch(root / "version_2" / "checkpoints" / "last.ckpt", 5_000_000_000)  # a later, shorter run stopped earlier
    _touch(root / "version_1" / "checkpoints" / "best-step=100.ckpt", 9_500_000_000)
    assert resolve_ckpt_path("last", str(root)) == str(newest)
    assert resolve_ckpt_path(str(root), None) == str(newest)  # a run folder means the same
    assert resolve_ckpt_path(str(root / "version_0"), None) == str(root / "version_0" / "checkpoints" / "last.ckpt")


def test_lightning_keywords_pass_through(tmp_path):
    for value in ("hpc", "registry", "registry:model:latest"):
        assert resolve_ckpt_path(value, str(tmp_path)) == value


def test_last_without_any_run_names_the_folder(tmp_path):
    with pytest.raises(CheckpointError, match=r"--ckpt_path last: no last\.ckpt under .*runs.*default_root_dir"):
        resolve_ckpt_path("last", str(tmp_path / "runs"))


def _last_with_best(folder, best_path, monitor="val/acc"):
    """A last.ckpt whose ModelCheckpoint state records ``best_path`` as its best."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    state = {"monitor": monitor, "best_model_path": str(best_path), "best_model_score": torch.tensor(0.9)}
    torch.save({"state_dict": {}, "callbacks": {"ModelCheckpoint{'monitor': 'val/acc'}": state}}, folder / "last.ckpt")
    return folder / "last.ckpt"


def test_best_is_the_monitored_best_that_the_newest_run_records(tmp_path):
    root = tmp_path / "runs" / "classifier"
    folder = root / "version_0" / "checkpoints"
    _last_with_best(folder, "/elsewhere/when/it/trained/best-epoch=3.ckpt")  # the run has moved since
    (folder / "best-epoch=3.ckpt").write_bytes(b"PK\x03\x04")
    assert resolve_ckpt_path("best", str(root)) == str(folder / "best-epoch=3.ckpt")


@pytest.mark.parametrize("monitor, best, match", [
    (None, "best.ckpt", r"--ckpt_path best: .*last\.ckpt records no monitored best checkpoint"),
    ("val/acc", "gone.ckpt", r"--ckpt_path best: the run's best checkpoint \(val/acc\) was gone\.ckpt, which is no longer in"),
])
def test_best_without_a_recorded_best_says_so(monitor, best, match, tmp_path):
    _last_with_best(tmp_path / "run" / "checkpoints", best, monitor)
    with pytest.raises(CheckpointError, match=match):
        resolve_ckpt_path("best", str(tmp_path / "run"))


def test_test_with_ckpt_path_best_logs_into_the_run_and_serve_lists_no_new_version(tmp_path, monkeypatch, capsys):
    """`nl-lightning test --ckpt_path best` after a fit: it resolves (Lightning's own `best` needs a fit in
    the same process), its logs go to the evaluated run, and `serve`'s registry still lists one
    version, whose last.ckpt is the state at the end of the fit."""
    import torch

    from nl_lightning.cli import main
    from nl_lightning.serve.registry import ModelRegistry

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["nl-lightning"])
    config = str(REPO / "configs" / "classifier.yaml")
    quick = ["--trainer.enable_progress_bar=false", "--data.init_args.num_samples=256", "--trainer.limit_val_batches=1"]
    # 3 validations, then 2 more steps: stopped mid-epoch, after the last validation
    assert main(["fit", "--config", config, "--trainer.limit_train_batches=4", "--trainer.max_steps=14", *quick]) == 0
    run = tmp_path / "runs" / "classifier" / "version_0"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 14
    capsys.readouterr()
    assert main(["test", "--config", config, "--ckpt_path", "best", *quick]) == 0
    assert "test/acc" in capsys.readouterr().out
    assert ModelRegistry(tmp_path / "runs" / "classifier").versions() == ["version_0"]
    assert list((run / "test" / "version_0").glob("events.out.tfevents.*"))
    assert main(["validate", "--config", config, *quick]) == 0  # no checkpoint: beside the run, not in it
    assert ModelRegistry(tmp_path / "runs" / "classifier").versions() == ["version_0"]
    assert list((tmp_path / "runs" / "classifier-validate" / "version_0").glob("events.out.tfevents.*"))
