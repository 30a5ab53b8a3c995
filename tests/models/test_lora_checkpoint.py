"""Adapter-only LoRA state: round trips, the base-hash check, and TaskModule checkpoints that hold
adapters only when the model records its base (``lora_base``), through load and resume."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.testing import assert_close

from nl_lightning.data import CharTextDataModule
from nl_lightning.models import (
    TransformerConfig,
    TransformerLM,
    base_record,
    load_checkpoint,
    load_lora_state_dict,
    lora_state_dict,
)
from nl_lightning.models.lora_checkpoint import LoRAStateError

CONFIG = dict(vocab_size=256, n_layers=1, d_model=32, n_heads=4, n_kv_heads=2, max_seq_len=32, mlp="swiglu")
LORA = {"r": 4, "targets": ["q_proj", "v_proj"]}


class BaseLM(TransformerLM):
    """Stands in for ``pretrained=<folder>`` (the other half of issue 18): frozen weights read from
    ``base`` and ``lora_base`` recorded, which is all it takes for checkpoints to hold adapters only."""

    def __init__(self, base: str = "", config: dict | None = None, lora: dict | None = None, **kwargs) -> None:
        super().__init__(config=config, lora=lora, **kwargs)
        missing, unexpected = self.model.load_state_dict(torch.load(base, weights_only=True), strict=False)
        assert not unexpected and all("lora_" in k for k in missing)
        self.lora_base = base_record(base)


def _write_base(path: Path, seed: int) -> str:
    torch.manual_seed(seed)
    torch.save(TransformerLM(TransformerConfig(**CONFIG)).model.state_dict(), path)
    return str(path)


def _perturb(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("lora_b"):
                param.normal_()


def _fit(model: L.LightningModule, tmp_path: Path, steps: int, ckpt_path: str | None = None,
         callbacks: list[L.Callback] | None = None) -> L.Trainer:
    text = tmp_path / "text.txt"
    text.write_text("a tiny corpus for a tiny model. " * 50)
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=bool(callbacks),
                        callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(model, CharTextDataModule(str(text), seq_len=16, batch_size=4, seed=0), ckpt_path=ckpt_path)
    return trainer


# ---- the function pair ---------------------------------------------------------------------------
def test_adapter_state_round_trips_onto_the_same_base(tmp_path, seed):
    base = _write_base(tmp_path / "base.pt", seed=1)
    model = BaseLM(base, CONFIG, LORA).eval()
    _perturb(model.model)
    state = lora_state_dict(model.model, base_record(base), LORA)
    assert set(state["state_dict"]) == {k for k, p in model.model.named_parameters() if p.requires_grad}
    assert len(state["state_dict"]) == 4  # A and B of q_proj and of kv_proj's value half
    torch.save(state, tmp_path / "adapter.pt")
    fresh = BaseLM(base, CONFIG, LORA).eval()
    load_lora_state_dict(fresh.model, torch.load(tmp_path / "adapter.pt", weights_only=True), fresh.lora_base)
    idx = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        assert_close(fresh(idx), model(idx), rtol=0, atol=0)


def test_adapters_on_another_base_are_refused_naming_both_hashes(tmp_path, seed):
    base = _write_base(tmp_path / "base.pt", seed=1)
    model = BaseLM(base, CONFIG, LORA)
    state = lora_state_dict(model.model, model.lora_base)
    other = BaseLM(_write_base(tmp_path / "other.pt", seed=2), CONFIG, LORA)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(LoRAStateError) as refused:
        load_lora_state_dict(other.model, state, other.lora_base)
    message = str(refused.value)
    assert model.lora_base["sha256"] in message and other.lora_base["sha256"] in message
    assert "Load them onto the base they were trained on" in message
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())  # nothing was loaded


@pytest.mark.parametrize(("change", "match"), [
    ({"format": "peft"}, r"Not an nl_lightning adapter state \(format 'peft'"),
    ({"base": {"path": "x"}}, r"record no base model \(base\.sha256 is missing\)"),
])
def test_malformed_adapter_states_are_refused(change, match, tmp_path):
    base = _write_base(tmp_path / "base.pt", seed=1)
    model = BaseLM(base, CONFIG, LORA)
    state = {**lora_state_dict(model.model, model.lora_base), **change}
    with pytest.raises(LoRAStateError, match=match):
        load_lora_state_dict(model.model, state, model.lora_base)


@pytest.mark.parametrize(("lora", "match"), [
    ({"r": 4, "targets": ["q_proj"]}, r"unexpected \['transformer\.blocks\.0\.attn\.kv_proj\.lora_a'"),
    ({"r": 2, "targets": ["q_proj", "v_proj"]}, r"Adapter tensor transformer\.blocks\.0\.attn\.(kv|q)_proj\.lora_a has "
                                                r"shape \(4, 32\) but the model's is \(2, 32\)"),
])
def test_adapters_of_another_lora_layout_are_refused(lora, match, tmp_path):
    base = _write_base(tmp_path / "base.pt", seed=1)
    state = lora_state_dict(BaseLM(base, CONFIG, LORA).model, base_record(base))
    model = BaseLM(base, CONFIG, lora)
    with pytest.raises(LoRAStateError, match=match):
        load_lora_state_dict(model.model, state, model.lora_base)


# ---- TaskModule checkpoints with a recorded base --------------------------------------------------
def test_checkpoint_of_a_model_with_a_base_holds_adapters_only_and_reloads(tmp_path, seed):
    base = _write_base(tmp_path / "base.pt", seed=1)
    model = BaseLM(base, CONFIG, LORA)
    trainer = _fit(model, tmp_path, steps=3)
    trainer.save_checkpoint(tmp_path / "adapters.ckpt")
    stored = torch.load(tmp_path / "adapters.ckpt", weights_only=True)
    assert stored["nl_lightning"]["lora_base"] == base_record(base)
    assert set(stored["state_dict"]) == {k for k, p in model.named_parameters() if p.requires_grad}
    idx = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        want = model.eval()(idx)
        assert_close(load_checkpoint(tmp_path / "adapters.ckpt", expected=BaseLM)(idx), want, rtol=0, atol=0)
        merged = load_checkpoint(tmp_path / "adapters.ckpt", expected=BaseLM, merge_lora=True)
        assert_close(merged(idx), want, atol=1e-5, rtol=0)


def test_adapter_checkpoint_refuses_a_changed_base_on_load_and_resume(tmp_path, seed):
    base = _write_base(tmp_path / "base.pt", seed=1)
    trainer = _fit(BaseLM(base, CONFIG, LORA), tmp_path, steps=2)
    trainer.save_checkpoint(tmp_path / "adapters.ckpt")
    recorded = base_record(base)["sha256"]
    _write_base(tmp_path / "base.pt", seed=3)  # the folder's weights changed since training
    with pytest.raises(LoRAStateError, match=f"SHA-256 {recorded}.*has SHA-256 {base_record(base)['sha256']}"):
        load_checkpoint(tmp_path / "adapters.ckpt", expected=BaseLM)
    with pytest.raises(LoRAStateError, match="were trained on the base"):
        _fit(BaseLM(base, CONFIG, LORA), tmp_path, steps=3, ckpt_path=str(tmp_path / "adapters.ckpt"))


def test_training_resumes_from_an_adapter_checkpoint_exactly(tmp_path, seed):
    """A checkpoint written mid-run (adapters only) resumes to the same weights as the run itself."""
    base = _write_base(tmp_path / "base.pt", seed=1)
    reference = BaseLM(base, CONFIG, LORA)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=2, save_top_k=-1)
    _fit(reference, tmp_path, steps=4, callbacks=[saver])
    middle = tmp_path / "ckpts" / "epoch=0-step=2.ckpt"
    assert set(torch.load(middle, weights_only=True)["state_dict"]) == {
        k for k, p in reference.named_parameters() if p.requires_grad}
    resumed = BaseLM(base, CONFIG, LORA)  # other random adapters: the checkpoint's must replace them
    _fit(resumed, tmp_path, steps=4, ckpt_path=str(middle))
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
