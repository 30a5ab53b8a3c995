"""AtomicCheckpointIO: a checkpoint killed mid-write leaves the previous one whole, and nl-lightning fit uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from nl_lightning.cli import build_cli
from nl_lightning.models.checkpoint_io import AtomicCheckpointIO, install

PROBE = Path(__file__).with_name("checkpoint_kill_probe.py")
REPO = Path(__file__).resolve().parents[2]


def test_sigkill_mid_save_leaves_the_previous_checkpoint_whole(tmp_path):
    out = tmp_path / "ckpts"
    proc = subprocess.run([sys.executable, str(PROBE), str(out), "--kill-at", "3"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr[-3000:]
    # Saves 1 and 2 completed (steps 1 and 2); save 3 died half-written: step.ckpt is still step 2's, whole.
    checkpoint = torch.load(out / "step.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2
    assert set(checkpoint["state_dict"]) == {"layer.weight", "layer.bias"}
    leftovers = [p for p in out.iterdir() if p.name != "step.ckpt"]
    assert leftovers and all(p.name.startswith(".step.ckpt.tmp-") for p in leftovers)  # hidden, never a .ckpt

    AtomicCheckpointIO().save_checkpoint({"global_step": 3}, out / "step.ckpt")  # the next save cleans up
    assert [p.name for p in out.iterdir()] == ["step.ckpt"]
    assert torch.load(out / "step.ckpt", weights_only=True) == {"global_step": 3}


def test_a_failed_save_keeps_the_old_file(tmp_path):
    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, target)
    with pytest.raises(Exception):
        io.save_checkpoint({"global_step": 2, "bad": lambda: None}, target)  # a lambda cannot be pickled
    loaded = torch.load(target, weights_only=True)
    assert loaded["global_step"] == 1 and torch.equal(loaded["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_remote_urls_are_left_to_lightning():
    with pytest.raises(TypeError, match="storage_options"):
        AtomicCheckpointIO().save_checkpoint({}, "x.ckpt", storage_options={"anon": True})


def test_fit_installs_it_and_keeps_a_users_own(tmp_path):
    cli = build_cli(["--config", str(REPO / "configs" / "classifier.yaml"),
                     f"--trainer.default_root_dir={tmp_path / 'runs' / 'classifier'}"], run=False)
    assert type(cli.trainer.strategy.checkpoint_io) is TorchCheckpointIO
    cli.before_fit()
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)

    class Mine(TorchCheckpointIO):
        pass

    cli.trainer.strategy.checkpoint_io = mine = Mine()
    assert install(cli.trainer) is False and cli.trainer.strategy.checkpoint_io is mine
