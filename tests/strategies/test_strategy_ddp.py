"""DDP with two CPU processes (gloo), started the way users start it: ``nl-lightning fit``."""

from __future__ import annotations

import pytest
import torch

from strategy_cli import fit_args, read_reports, run_cli, spec, train_batches_per_rank, write_override
from nl_lightning.models import TransformerLM


@pytest.mark.slow
def test_ddp_two_processes_fit_checkpoint_and_reload(tmp_path):
    override = write_override(tmp_path / "ddp.yaml", {
        "logger": spec("lightning.pytorch.loggers.CSVLogger", save_dir=str(tmp_path / "logs"), name="char_lm"),
        "callbacks": [
            spec("lightning.pytorch.callbacks.ModelCheckpoint", dirpath=str(tmp_path / "checkpoints"),
                 monitor="val/loss", save_last=True),
            spec("nl_lightning.callbacks.TextSampleCallback", max_new_tokens=8),  # rank-zero side effect
            spec("strategy_probes.RankReport", out_dir=str(tmp_path / "report")),
        ],
    })
    proc = run_cli(fit_args(
        override, "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.max_steps=1000",
        "--trainer.max_epochs=1", "--trainer.check_val_every_n_epoch=1", "--trainer.val_check_interval=1.0",
        "--trainer.limit_val_batches=2", f"--trainer.default_root_dir={tmp_path}",
    ))

    assert (proc.stdout + proc.stderr).count("[final sample step") == 1  # rank 0 only
    reports = read_reports(tmp_path / "report")
    expected = train_batches_per_rank(world_size=2)  # one process alone would take twice as many
    assert [r["rank"] for r in reports] == [0, 1]
    assert all(r["world_size"] == 2 and r["strategy"] == "DDPStrategy" for r in reports)
    assert [(r["batches"], r["global_step"]) for r in reports] == [(expected, expected)] * 2

    weights = [torch.load(tmp_path / "report" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)  # DDP kept the replicas identical

    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file()
    model = TransformerLM.load(last)
    torch.testing.assert_close(model.state_dict(), weights[0], rtol=0, atol=0)
    logits = model(torch.randint(0, 256, (2, 16)))
    assert logits.shape == (2, 16, 256) and torch.isfinite(logits).all()
