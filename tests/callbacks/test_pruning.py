from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from nl_lightning.callbacks import PruningCallback
from nl_lightning.compress.prune import is_pruned, prunable_parameters
from nl_lightning.compress.sparsity import layer_sparsity, sparsity
from nl_lightning.data import SyntheticSequenceDataModule
from nl_lightning.models import TransformerClassifier

CONFIG = dict(input_dim=8, n_layers=1, d_model=32, n_heads=4, max_seq_len=16, position="none", causal=False)


def _fit(callbacks, tmp_path, max_epochs=4, ckpt_path=None, model=None):
    L.seed_everything(0, verbose=False)
    model = model or TransformerClassifier(CONFIG, num_classes=3)
    trainer = L.Trainer(
        max_epochs=max_epochs, callbacks=callbacks, logger=False, enable_progress_bar=False,
        enable_model_summary=False, limit_train_batches=2, limit_val_batches=1, default_root_dir=tmp_path,
    )
    trainer.fit(model, SyntheticSequenceDataModule(num_samples=256, batch_size=32), ckpt_path=ckpt_path)
    return model, trainer


class _Record(L.Callback):
    """Sparsity after every training epoch (after pruning ran)."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.seen.append(float(trainer.callback_metrics["pruning/sparsity"]))


def test_iterative_global_schedule_reaches_target_and_checkpoint_loads_plain(tmp_path):
    record = _Record()
    pruning = PruningCallback(amount=0.6, scope="global", start_epoch=0, end_epoch=2, curve="linear")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    model, trainer = _fit([pruning, record, checkpoint], tmp_path)
    assert record.seen == pytest.approx([0.2, 0.4, 0.6, 0.6], abs=1e-3)  # training continues in between
    assert trainer.callback_metrics["pruning/target"] == pytest.approx(0.6)
    assert any(k.startswith("pruning/sparsity/transformer.blocks.0.mlp.fc1") for k in trainer.callback_metrics)
    params = prunable_parameters(model.model)
    total = sum(m.weight.numel() for m, _ in params)
    assert not is_pruned(model)  # permanent at fit end
    assert sparsity(params) == pytest.approx(0.6, abs=1 / total)  # requested == measured
    loaded = TransformerClassifier.load(tmp_path / "ckpt" / "last.ckpt")  # strict load into a plain model
    assert sparsity(prunable_parameters(loaded.model)) == pytest.approx(0.6, abs=1 / total)


def test_layerwise_structured_pruning_zeros_whole_rows_and_spares_the_head(tmp_path):
    pruning = PruningCallback(amount=0.5, method="ln_structured", scope="layer", norm=1, dim=0)
    model, _ = _fit([pruning], tmp_path, max_epochs=2)
    layers = layer_sparsity(model.model, prunable_parameters(model.model))
    assert layers.pop("head.weight") == 0.0  # include_head=None: heads are kept for structured pruning
    assert set(layers.values()) == {0.5}
    fc1 = model.model.transformer.blocks[0].mlp.fc1.weight
    assert (fc1 == 0).all(dim=1).sum() == fc1.size(0) // 2


def test_random_pruning_and_exclusions(tmp_path):
    pruning = PruningCallback(amount=0.25, method="random_unstructured", scope="layer", exclude=["embed", "fc2"])
    model, _ = _fit([pruning], tmp_path, max_epochs=2)
    layers = layer_sparsity(model.model, pruning._parameters_to_prune)
    assert not any("fc2" in name for name in layers) and set(layers.values()) == {0.25}


def test_resume_continues_from_the_checkpoint_sparsity(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _fit([PruningCallback(amount=0.5, start_epoch=0, end_epoch=3, curve="linear"), ckpt], tmp_path, max_epochs=2)
    record = _Record()
    pruning = PruningCallback(amount=0.5, start_epoch=0, end_epoch=3, curve="linear")
    _fit([pruning, record], tmp_path, max_epochs=4, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert record.seen == pytest.approx([0.375, 0.5], abs=1e-3)


def test_warns_when_the_last_step_gets_no_fine_tuning(tmp_path):
    with pytest.warns(UserWarning, match="reaches its target at epoch 1 but training has max_epochs=2"):
        _fit([PruningCallback(amount=0.3, end_epoch=1)], tmp_path, max_epochs=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(amount=1.2), r"amount=1.2 must be a sparsity fraction in \[0, 1\)"),
        (dict(method="l2"), "method='l2' is not supported; choose one of"),
        (dict(method="ln_structured", scope="global"), "use scope='layer'"),
        (dict(start_epoch=2, end_epoch=1), "end_epoch=1 is before start_epoch=2"),
        (dict(curve="exp"), "curve='exp' is not supported"),
    ],
)
def test_pruning_callback_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PruningCallback(**kwargs)


DDP_SCRIPT = textwrap.dedent('''
    import sys, torch, lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from nl_lightning.callbacks import PruningCallback
    from nl_lightning.data import SyntheticSequenceDataModule
    from nl_lightning.models import TransformerClassifier

    class RankSeed(L.Callback):
        """Different RNG streams per rank, so unsynchronized random masks would differ."""

        def on_train_epoch_start(self, trainer, pl_module):
            torch.manual_seed(100 * trainer.current_epoch + trainer.global_rank)

    out = sys.argv[1]
    L.seed_everything(0)
    model = TransformerClassifier(dict(input_dim=8, n_layers=1, d_model=32, n_heads=4, max_seq_len=16,
                                       position="none", causal=False), num_classes=3)
    pruning = PruningCallback(amount=0.5, method="random_unstructured", scope="global", start_epoch=0, end_epoch=1)
    trainer = L.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_epochs=3, limit_train_batches=2,
                        limit_val_batches=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[RankSeed(), pruning, ModelCheckpoint(dirpath=out, save_last=True)],
                        default_root_dir=out)
    trainer.fit(model, SyntheticSequenceDataModule(num_samples=256, batch_size=16))
    torch.save(model.model.state_dict(), f"{out}/rank{trainer.global_rank}.pt")
''')


@pytest.mark.slow
def test_pruning_under_ddp_with_two_cpu_processes(tmp_path):
    script = tmp_path / "ddp_prune.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in ranks[0].items():
        torch.testing.assert_close(value, ranks[1][key], rtol=0, atol=0, msg=f"{key} differs between ranks")
    loaded = TransformerClassifier.load(tmp_path / "last.ckpt")
    params = prunable_parameters(loaded.model)
    total = sum(m.weight.numel() for m, _ in params)
    assert sparsity(params) == pytest.approx(0.5, abs=1 / total)
