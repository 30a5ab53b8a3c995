"""Gradient accumulation and norm clipping set from the CLI or a YAML take effect.

The CLI runs in-process (``build_cli``, what ``nl-lightning fit`` calls) so the probe callback's
records can be read back directly.
"""

from __future__ import annotations

import sys

import pytest

from strategy_cli import fit_args, spec, write_override
from nl_lightning.cli import build_cli

CLIP, ACCUMULATE, BATCHES = 0.05, 2, 8
SETTINGS = {"accumulate_grad_batches": ACCUMULATE, "gradient_clip_val": CLIP}


@pytest.mark.parametrize("source", ["flags", "yaml"])
def test_accumulation_and_clipping_take_effect(tmp_path, monkeypatch, source):
    monkeypatch.setattr(sys, "argv", ["nl-lightning"])  # pytest's own argv would draw a CLI warning
    trainer = {"logger": False, "callbacks": [spec("strategy_probes.GradNormProbe")]}
    flags = [f"--trainer.{k}={v}" for k, v in SETTINGS.items()]
    if source == "yaml":
        trainer, flags = {**trainer, **SETTINGS}, []
    override = write_override(tmp_path / "override.yaml", trainer)
    cli = build_cli(fit_args(
        override, *flags, f"--trainer.limit_train_batches={BATCHES}", "--trainer.max_epochs=1",
        "--trainer.max_steps=-1", "--trainer.limit_val_batches=0", "--trainer.check_val_every_n_epoch=1",
        "--trainer.val_check_interval=1.0", "--trainer.enable_checkpointing=false",
        f"--trainer.default_root_dir={tmp_path}",
    ))
    probe = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "GradNormProbe")

    assert (cli.trainer.accumulate_grad_batches, cli.trainer.gradient_clip_val) == (ACCUMULATE, CLIP)
    assert cli.trainer.global_step == BATCHES // ACCUMULATE
    assert probe.batch_ends_with_step == [False, True] * (BATCHES // ACCUMULATE)  # a step every 2nd batch
    assert len(probe.before) == len(probe.after) == BATCHES // ACCUMULATE
    assert min(probe.before) > 10 * CLIP, "unclipped norms must exceed the limit for the test to mean anything"
    for before, after in zip(probe.before, probe.after):  # torch scales by CLIP / (norm + 1e-6)
        assert after == pytest.approx(CLIP, rel=1e-4), (before, after)
