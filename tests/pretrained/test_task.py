"""The ``pretrained`` argument of the task modules: config overrides, from_pretrained's arguments,
checkpoints that stand alone and record the source folder with its hash."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from nl_lightning._io import path_sha256
from nl_lightning.data import CharTextDataModule
from nl_lightning.models import OptimizerConfig, TransformerClassifier, TransformerConfig, TransformerLM
from nl_lightning.pretrained import PretrainedError


def test_training_fields_may_be_overridden(pretrained_folder):
    folder = pretrained_folder("lm")
    model = TransformerLM.from_pretrained(folder, dropout=0.2, attn_backend="math", max_seq_len=64,
                                          optimizer=OptimizerConfig(lr=1e-5))
    assert (model.config.dropout, model.config.attn_backend, model.config.max_seq_len) == (0.2, "math", 64)
    assert model.optimizer_config.lr == 1e-5
    assert model.hparams["config"]["dropout"] == 0.2


def test_architecture_fields_may_not(pretrained_folder):
    with pytest.raises(PretrainedError, match=r"config differs from the pretrained folder .* in n_layers: folder 1 vs "
                                              r"config 2. Only \['dropout', 'attn_dropout', 'drop_path', 'attn_backend', "
                                              r"'max_seq_len'\] may differ: leave config unset"):
        TransformerLM.from_pretrained(pretrained_folder("lm"), n_layers=2)


def test_a_full_config_beside_pretrained_must_match_the_folder(pretrained_folder):
    """What a YAML with both ``config:`` and ``pretrained:`` builds: every other field must agree."""
    folder = pretrained_folder("lm")
    with pytest.raises(PretrainedError, match=r"in .*norm: folder 'rmsnorm' vs config 'layernorm'"):
        TransformerLM(config=TransformerConfig(vocab_size=256, n_layers=1, d_model=32), pretrained=str(folder))
    same = TransformerLM.from_pretrained(folder).config
    assert TransformerLM(config=same, pretrained=str(folder)).config == same


def test_learned_positions_keep_their_length(pretrained_folder):
    with pytest.raises(PretrainedError, match=r"max_seq_len: folder 128 vs config 64. Only \['dropout', 'attn_dropout', "
                                              r"'drop_path', 'attn_backend'\] may differ"):
        TransformerClassifier.from_pretrained(pretrained_folder("classifier"), num_classes=2, max_seq_len=64)


def test_unknown_arguments_are_named(pretrained_folder):
    with pytest.raises(PretrainedError, match=r"TransformerLM.from_pretrained got unknown argument\(s\) \['num_classes'\]"):
        TransformerLM.from_pretrained(pretrained_folder("lm"), num_classes=3)


def test_checkpoint_stands_alone_and_records_the_folder(pretrained_folder, tmp_path):
    folder = pretrained_folder("lm")
    model = TransformerLM.from_pretrained(folder)
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, CharTextDataModule(seq_len=16, batch_size=2))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    checkpoint = torch.load(tmp_path / "m.ckpt", weights_only=True)
    assert checkpoint["nl_lightning"]["pretrained"] == {"path": str(folder.resolve()), "sha256": path_sha256(folder)}
    assert checkpoint["hyper_parameters"]["pretrained"] is None
    for file in folder.iterdir():  # the folder may be gone when the checkpoint is served
        file.unlink()
    reloaded = TransformerLM.load(tmp_path / "m.ckpt")
    idx = torch.randint(0, 256, (1, 10))
    with torch.no_grad():
        assert torch.equal(reloaded(idx), model.eval()(idx))


def test_the_folders_tokenizer_goes_to_a_model_that_takes_one(tmp_path, trained_tokenizer):
    """``from_pretrained`` hands the folder's ``tokenizer.json`` to ``TransformerLM(tokenizer=...)``: the
    model then speaks the folder's tokens (and stores them in its checkpoints), not bytes."""
    from nl_lightning.data.tokenizer import load_codec

    folder = tmp_path / "lm"
    config = TransformerConfig.from_preset("llama", n_layers=1, d_model=32, n_heads=4, n_kv_heads=2, vocab_size=512)
    TransformerLM(config).save_pretrained(folder, extra_files={"tokenizer.json": Path(trained_tokenizer)})
    model = TransformerLM.from_pretrained(folder)
    assert model.codec.to_json() == load_codec(trained_tokenizer).to_json()
    text = "def main():\n    return 0\n"
    assert model.codec.decode(model.codec.encode(text)) == text and len(model.codec.encode(text)) < len(text.encode())

    class WithoutTokenizer(TransformerLM):
        def __init__(self, config=None, pretrained: str | None = None) -> None:
            super().__init__(config=config, pretrained=pretrained)

    assert WithoutTokenizer.from_pretrained(folder).codec.to_json() is None  # a class without the argument: bytes


def test_a_module_without_pretrained_says_so(pretrained_folder):
    from nl_lightning.models.distill import DistillationModule

    with pytest.raises(PretrainedError, match=r"DistillationModule does not start from a model folder"):
        DistillationModule.from_pretrained(pretrained_folder("lm"))


def test_a_lora_run_on_a_pretrained_folder_saves_adapters_only_and_rebuilds_from_the_folder(pretrained_folder, tmp_path):
    """``pretrained=`` + ``lora=``: the checkpoint holds the trainable tensors and the folder's record;
    loading rebuilds the frozen base from the folder (same outputs), a changed folder is refused, and
    a merged model stands alone (its checkpoint needs no folder)."""
    from nl_lightning.models import load_checkpoint
    from nl_lightning.models.lora_checkpoint import LoRAStateError

    folder = pretrained_folder("lm")
    model = TransformerLM(pretrained=str(folder), lora={"r": 4, "targets": ["q_proj", "v_proj"]})
    data = CharTextDataModule(seq_len=16, batch_size=4, seed=0)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(model, data)
    trainer.save_checkpoint(tmp_path / "adapters.ckpt")
    stored = torch.load(tmp_path / "adapters.ckpt", weights_only=True)
    assert set(stored["state_dict"]) == {k for k, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in k for k in stored["state_dict"])
    assert stored["nl_lightning"]["lora_base"] == {"path": str(folder.resolve()), "sha256": path_sha256(folder)}
    idx = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        want = model.eval()(idx)
        torch.testing.assert_close(load_checkpoint(tmp_path / "adapters.ckpt")(idx), want, rtol=0, atol=0)
        merged = load_checkpoint(tmp_path / "adapters.ckpt", merge_lora=True)
        torch.testing.assert_close(merged(idx), want, atol=1e-5, rtol=0)
    assert merged.hparams["pretrained"] is None and merged.hparams["lora"] is None
    trainer.strategy.connect(merged)
    trainer.save_checkpoint(tmp_path / "merged.ckpt")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + bytes(8))  # the base changes after training
    with pytest.raises(LoRAStateError, match="were trained on the base"):
        load_checkpoint(tmp_path / "adapters.ckpt")
    weights.unlink()  # the merged checkpoint needs no folder at all
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(tmp_path / "merged.ckpt")(idx), want, atol=1e-5, rtol=0)
