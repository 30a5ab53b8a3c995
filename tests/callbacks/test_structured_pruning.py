from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from nl_lightning.callbacks import StructuredPruningCallback
from nl_lightning.data import CharTextDataModule, SyntheticSequenceDataModule
from nl_lightning.errors import ConfigError
from nl_lightning.models import TransformerClassifier, TransformerLM, load_checkpoint
from nl_lightning.models.checkpoint import read_checkpoint

CONFIG = dict(input_dim=8, n_layers=1, d_model=32, n_heads=4, max_seq_len=16, position="none", causal=False)
LM_CONFIG = dict(n_layers=1, d_model=32, n_heads=4, n_kv_heads=2, mlp="swiglu", norm="rmsnorm", max_seq_len=16)
REPO = Path(__file__).resolve().parents[2]


class _Widths(L.Callback):
    """(n_heads, mlp_hidden) during every training epoch, and whether the optimizer trains the model's parameters."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self.optimizer_holds_model: list[bool] = []

    def on_train_epoch_end(self, trainer, pl_module):
        attn, mlp = pl_module.model.transformer.blocks[0].attn, pl_module.model.transformer.blocks[0].mlp
        self.seen.append((attn.n_heads, (mlp.fc1 if hasattr(mlp, "fc1") else mlp.gate).out_features))
        held = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
        self.optimizer_holds_model.append(held == {id(p) for p in pl_module.parameters()})


def _fit(callbacks, tmp_path, max_epochs=4, ckpt_path=None, model=None):
    L.seed_everything(0, verbose=False)
    model = model or TransformerClassifier(CONFIG, num_classes=3)
    trainer = L.Trainer(
        max_epochs=max_epochs, callbacks=callbacks, logger=False, enable_progress_bar=False,
        enable_model_summary=False, limit_train_batches=3, limit_val_batches=1, default_root_dir=tmp_path,
    )
    trainer.fit(model, SyntheticSequenceDataModule(num_samples=256, batch_size=32), ckpt_path=ckpt_path)
    return model, trainer


def test_schedule_shrinks_the_model_and_the_optimizer_trains_the_smaller_one(tmp_path):
    widths = _Widths()
    pruning = StructuredPruningCallback(heads=0.5, mlp=0.75, start_epoch=1, end_epoch=3, curve="linear")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    model, trainer = _fit([pruning, widths, checkpoint], tmp_path, max_epochs=5)
    # heads: floor(0.5 * [1/3, 2/3, 1] * 4) = 0, 1, 2 removed; channels: 0.75 * [1/3, 2/3, 1] of 128
    assert widths.seen == [(4, 128), (4, 96), (3, 64), (2, 32), (2, 32)]
    assert all(widths.optimizer_holds_model)  # the sliced parameters are the ones being trained
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == trainer.global_step  # the schedule went on
    assert trainer.callback_metrics["structured_pruning/heads_removed"] == 0.5
    assert trainer.callback_metrics["structured_pruning/mlp_removed"] == 0.75
    assert model.hparams["config"]["n_heads"] == 2 and model.hparams["config"]["mlp_hidden"] == 32
    stored = read_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert stored["nl_lightning"]["structured_pruning"]["original"] == dict(n_heads=4, n_kv_heads=4, head_dim=8,
                                                                             mlp_hidden=128)
    loaded = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")  # built from the checkpoint's (pruned) config
    x = torch.randn(5, 16, 8)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert sum(p.numel() for p in loaded.parameters()) < 0.55 * sum(
        p.numel() for p in TransformerClassifier(CONFIG, num_classes=3).parameters())


def test_fine_tuning_updates_the_pruned_weights(tmp_path):
    """Without the optimizer carried over, the sliced parameters would never change after the step."""

    class Snapshot(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.after_step = pl_module.model.transformer.blocks[0].mlp.fc1.weight.detach().clone()

    snapshot = Snapshot()
    model, _ = _fit([StructuredPruningCallback(heads=0.5, mlp=0.5, start_epoch=1), snapshot], tmp_path, max_epochs=2)
    weight = model.model.transformer.blocks[0].mlp.fc1.weight
    assert weight.shape == snapshot.after_step.shape == (64, 32)
    assert not torch.equal(weight, snapshot.after_step)


class _StopAfter(L.Callback):
    """Interrupt a run after ``epochs`` epochs (its LR schedule still planned for the whole run)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = trainer.current_epoch + 1 >= self.epochs


def _lm_fit(tmp_path, stop_after=None, ckpt_path=None, importance="magnitude"):
    L.seed_everything(0, verbose=False)
    model = TransformerLM(LM_CONFIG, optimizer=dict(lr=3e-3))
    pruning = StructuredPruningCallback(heads=0.5, mlp=0.5, start_epoch=1, end_epoch=2, importance=importance)
    stop = [_StopAfter(stop_after)] if stop_after else []
    trainer = L.Trainer(
        max_epochs=4, logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_train_batches=4, limit_val_batches=1, default_root_dir=tmp_path,
        callbacks=[pruning, *stop, ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)],
    )
    trainer.fit(model, CharTextDataModule(seq_len=16, batch_size=8), ckpt_path=ckpt_path)
    return model, pruning


@pytest.mark.parametrize("importance", ["magnitude", "taylor"])
def test_resume_rebuilds_the_pruned_shapes_and_matches_an_uninterrupted_run(tmp_path, importance):
    """GQA + SwiGLU LM: 2 epochs (one step taken, one to come), resume to 4 == 4 epochs straight."""
    straight, _ = _lm_fit(tmp_path / "straight", importance=importance)
    first, pruning = _lm_fit(tmp_path / "resumed", stop_after=2, importance=importance)
    assert first.config.n_kv_heads == 2 and first.config.mlp_hidden < 96  # between the two steps
    if importance == "taylor":
        assert pruning.state_dict()["taylor"]["batches"] == 4  # epoch 1 feeds the step at epoch 2's start
    resumed, _ = _lm_fit(tmp_path / "resumed", ckpt_path=tmp_path / "resumed" / "ckpt" / "last.ckpt",
                         importance=importance)
    assert resumed.config.n_kv_heads == 1 and resumed.config.mlp_hidden == 48
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name} differs after resume")


def test_a_step_the_checkpoint_missed_is_taken_at_the_next_epoch(tmp_path):
    """A dense checkpoint of epoch 1 resumed with a schedule that started at epoch 1: the step comes now."""
    _fit([ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)], tmp_path, max_epochs=2)
    widths = _Widths()
    pruning = StructuredPruningCallback(heads=0.5, mlp=0.5, start_epoch=1)
    _fit([pruning, widths], tmp_path, max_epochs=3, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert widths.seen == [(2, 64)]


def test_errors_and_warnings(tmp_path):
    with pytest.raises(ConfigError, match=r"importance='taylor'.*start_epoch=0 has none; set start_epoch >= 1"):
        StructuredPruningCallback(importance="taylor", start_epoch=0)
    with pytest.raises(ConfigError, match=r"heads=1.5 must be the fraction to remove"):
        StructuredPruningCallback(heads=1.5)
    with pytest.raises(ValueError, match=r"end_epoch=1 is before start_epoch=2"):
        StructuredPruningCallback(start_epoch=2, end_epoch=1)
    with pytest.warns(UserWarning, match=r"reaches its target at the start of epoch 2 but training has max_epochs=2"):
        _fit([StructuredPruningCallback(start_epoch=1, end_epoch=2)], tmp_path, max_epochs=2)


def test_refuses_a_module_without_a_transformer_config(tmp_path):
    class Plain(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = torch.nn.Linear(2, 2)

    with pytest.raises(ConfigError, match="needs an nl_lightning task module with a TransformerConfig.*got Plain"):
        StructuredPruningCallback().setup(L.Trainer(logger=False), Plain(), "fit")


DDP_SCRIPT = textwrap.dedent('''
    import sys, torch, lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from nl_lightning.callbacks import StructuredPruningCallback
    from nl_lightning.data import SyntheticSequenceDataModule
    from nl_lightning.models import TransformerClassifier

    out, ckpt = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    L.seed_everything(0)
    model = TransformerClassifier(dict(input_dim=8, n_layers=1, d_model=32, n_heads=4, max_seq_len=16,
                                       position="none", causal=False), num_classes=3)
    pruning = StructuredPruningCallback(heads=0.5, mlp=0.5, importance="taylor", start_epoch=1, end_epoch=2,
                                        curve="linear")
    trainer = L.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_epochs=4 if ckpt else 2,
                        limit_train_batches=3, limit_val_batches=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=out,
                        callbacks=[pruning, ModelCheckpoint(dirpath=out, save_last=True)])
    trainer.fit(model, SyntheticSequenceDataModule(num_samples=256, batch_size=16), ckpt_path=ckpt)
    torch.save(model.model.state_dict(), f"{out}/rank{trainer.global_rank}.pt")
''')


@pytest.mark.slow
def test_structured_pruning_under_ddp_with_two_cpu_processes_and_resume(tmp_path):
    """Taylor scores come from each rank's own batches' (all-reduced) gradients; the ranks must stay identical."""
    script = tmp_path / "ddp_structured.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for args in ([], [str(tmp_path / "last.ckpt")]):
        result = subprocess.run([sys.executable, str(script), str(tmp_path), *args], capture_output=True, text=True,
                                timeout=300, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
        for key, value in ranks[0].items():
            torch.testing.assert_close(value, ranks[1][key], rtol=0, atol=0, msg=f"{key} differs between ranks")
    loaded = TransformerClassifier.load(tmp_path / "last.ckpt")
    assert (loaded.config.n_heads, loaded.config.mlp_hidden) == (2, 64)


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "nl_lightning", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, f"{args[0]} failed:\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_cli_fit_resume_and_export_of_a_structurally_pruned_model(tmp_path):
    """configs/prune_structured.yaml: prune, resume with --ckpt_path last (the config still describes the
    unpruned model), then `nl-lightning export` builds ONNX fp32 and INT8 of the smaller model with parity."""
    fit = ["fit", "--config", str(REPO / "configs/prune_structured.yaml"), "--trainer.limit_train_batches=4",
           "--trainer.limit_val_batches=2", "--trainer.enable_progress_bar=false", "--data.init_args.num_samples=1024"]
    _cli([*fit, "--trainer.max_epochs=2"], tmp_path)
    _cli([*fit, "--trainer.max_epochs=4", "--ckpt_path=last"], tmp_path)
    ckpt = tmp_path / "runs/prune_structured/version_1/checkpoints/last.ckpt"
    stored = read_checkpoint(ckpt)
    assert stored["epoch"] == 3 and stored["hyper_parameters"]["config"]["n_heads"] == 2
    _cli(["export", "--config", str(REPO / "configs/export.yaml"), f"--ckpt_path={ckpt}",
          "--formats=[onnx,onnx_int8_dynamic]"], tmp_path)
    from nl_lightning.export.manifest import read_manifest

    manifest = read_manifest(ckpt.parents[1] / "export", checkpoint=ckpt)
    assert all(a["parity_ok"] for a in manifest["artifacts"])
