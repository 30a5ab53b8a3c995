"""LoRA on the task modules: targets and aliases, freezing, merge parity, fine-tunes that change only
adapters (LM and classifier), checkpoints and the paths that merge (export, serving loads)."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.testing import assert_close

from nl_lightning.data import CharTextDataModule, SyntheticSequenceDataModule
from nl_lightning.errors import ConfigError
from nl_lightning.models import (
    LoRAConfig,
    TransformerClassifier,
    TransformerConfig,
    TransformerLM,
    apply_lora,
    load_checkpoint,
    lora_parameter_counts,
    merge_lora,
)
from nl_lightning.nn import LoRALinear

LLAMA = dict(vocab_size=256, n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, max_seq_len=32, mlp="swiglu",
             norm="rmsnorm", bias=False)
GPT = dict(vocab_size=256, n_layers=1, d_model=32, n_heads=4, max_seq_len=32, mlp_hidden=64)


def _adapted(module: torch.nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in module.named_modules() if isinstance(m, LoRALinear)}


def _perturb_adapters(module: torch.nn.Module) -> None:
    """B starts at zero (the model is unchanged); give it values, as a fine-tune would."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("lora_b"):
                param.normal_(std=0.5)


def _trainer(tmp_path: Path, steps: int = 4, **kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                     num_sanity_val_steps=0, limit_val_batches=0, **kwargs)


def _text(tmp_path: Path) -> str:
    path = tmp_path / "text.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    return str(path)


# ---- which layers get adapters -------------------------------------------------------------------
@pytest.mark.parametrize(("targets", "expected"), [
    (["q_proj", "v_proj"], {"attn.q_proj": None, "attn.kv_proj": ((16, 32), 1)}),
    (["k_proj"], {"attn.kv_proj": ((0, 16), 1)}),
    (["k_proj", "v_proj"], {"attn.kv_proj": ((0, 32), 2)}),
    (["kv_proj", "o_proj"], {"attn.kv_proj": ((0, 32), 1), "attn.out_proj": None}),
    (["gate_proj", "up", "down_proj"], {"mlp.gate": None, "mlp.up": None, "mlp.down": None}),
    (["all-linear"], {"attn.q_proj": None, "attn.kv_proj": ((0, 32), 1), "attn.out_proj": None, "mlp.gate": None,
                      "mlp.up": None, "mlp.down": None}),
])
def test_targets_and_hugging_face_aliases_pick_these_layers(targets, expected):
    """Names per block (two blocks); k_proj / v_proj adapt the halves of the fused kv_proj (16 rows each)."""
    model = TransformerLM(TransformerConfig(**LLAMA), lora=LoRAConfig(r=2, targets=targets))
    adapted = _adapted(model.model)
    want = {f"transformer.blocks.{i}.{name}" for i in range(2) for name in expected}
    assert set(adapted) == want
    for name, layer in adapted.items():
        rows = expected[name.split(".", 3)[3]]
        assert (layer.rows, layer.parts) == (rows or ((0, layer.out_features), 1))


def test_only_adapters_train_in_the_lm_and_the_classifier_keeps_its_new_head_trainable():
    lm = TransformerLM(TransformerConfig(**LLAMA), lora={"targets": ["q_proj"]})
    assert {n.rsplit(".", 1)[1] for n, p in lm.named_parameters() if p.requires_grad} == {"lora_a", "lora_b"}
    clf = TransformerClassifier(TransformerConfig(**GPT), num_classes=3, pooling="attention", lora={"targets": ["fc1"]})
    trainable = {n for n, p in clf.named_parameters() if p.requires_grad}
    assert {n for n in trainable if "lora_" not in n} == {"model.head.weight", "model.head.bias", "model.pool.query",
                                                           "model.pool.key.weight", "model.pool.key.bias"}
    assert not any(p.requires_grad for n, p in clf.named_parameters() if ".blocks." in n and "lora_" not in n)


def test_trainable_share_is_counted_and_reported(tmp_path, caplog):
    model = TransformerLM(TransformerConfig(**LLAMA), lora={"r": 4, "targets": ["q_proj"]})
    trainable, total = lora_parameter_counts(model)
    assert trainable == 2 * (4 * 32 + 32 * 4)  # two blocks, A (4, 32) and B (32, 4) each
    assert total == sum(p.numel() for p in model.parameters())
    with caplog.at_level(logging.INFO):
        _trainer(tmp_path, steps=1).fit(model, CharTextDataModule(_text(tmp_path), seq_len=16, batch_size=4))
    share = f"({trainable / total:.2%})"
    assert f"LoRA: {trainable:,} of {total:,} parameters train {share}" in caplog.text


@pytest.mark.parametrize(("targets", "match"), [
    (["qkv"], r"'qkv' matches no linear layer of this model\. Its linear layers are named \['down', 'gate', "
              r"'kv_proj', 'lm_head', 'out_proj', 'q_proj', 'up'\]"),
    (["q_proj", "fc1"], r"'fc1' matches no linear layer"),  # one typo among good names is not ignored
    (["kv_proj", "v_proj"], r"adapts transformer\.blocks\.0\.attn\.kv_proj twice"),
])
def test_targets_that_match_nothing_or_twice_are_refused(targets, match):
    with pytest.raises(ConfigError, match=match):
        TransformerLM(TransformerConfig(**LLAMA), lora={"targets": targets})


def test_tied_lm_head_is_refused_as_a_target():
    with pytest.raises(ConfigError, match=r"lm_head shares its weight with transformer\.embed \(tied embeddings\)"):
        TransformerLM(TransformerConfig(**{**GPT, "tie_embeddings": True}), lora={"targets": ["lm_head"]})


@pytest.mark.parametrize(("values", "match"), [
    ({"r": 0}, r"LoRAConfig\.r=0 must be a positive integer"),
    ({"alpha": 0}, r"LoRAConfig\.alpha=0 must be > 0"),
    ({"dropout": 1.0}, r"LoRAConfig\.dropout=1\.0 must be in \[0, 1\)"),
    ({"targets": "q_proj"}, r"must be a non-empty list of layer names"),
    ({"rank": 4}, r"Unknown LoRAConfig key\(s\) \['rank'\]"),
])
def test_bad_lora_settings_name_the_field(values, match):
    with pytest.raises(ConfigError, match=match):
        TransformerLM(TransformerConfig(**GPT), lora=values)


def test_adapters_cannot_be_stacked():
    model = TransformerLM(TransformerConfig(**GPT), lora={"targets": ["q_proj"]})
    with pytest.raises(ConfigError, match="has LoRA adapters already; merge them"):
        apply_lora(model.model, LoRAConfig(targets=["fc1"]))


# ---- merge ---------------------------------------------------------------------------------------
MERGE_CASES = {
    "lm-q-v": lambda: TransformerLM(TransformerConfig(**LLAMA), lora={"r": 4, "targets": ["q_proj", "v_proj"]}),
    "lm-k-v-o": lambda: TransformerLM(TransformerConfig(**LLAMA),
                                      lora={"r": 4, "targets": ["k_proj", "v_proj", "o_proj"]}),
    "lm-all": lambda: TransformerLM(TransformerConfig(**LLAMA), lora={"r": 4, "targets": ["all-linear"]}),
    "classifier-all": lambda: TransformerClassifier(TransformerConfig(**GPT), num_classes=3,
                                                    lora={"targets": ["all-linear"]}),
}


@pytest.mark.parametrize("case", sorted(MERGE_CASES))
def test_merged_model_equals_unmerged_within_1e_5(case, seed):
    model = MERGE_CASES[case]().eval()
    _perturb_adapters(model)
    x = torch.randint(0, 256, (2, 24))
    with torch.no_grad():
        before = model(x)
        model.merge_lora()
        assert_close(model(x), before, atol=1e-5, rtol=0)
    assert not _adapted(model) and model.hparams["lora"] is None and model.lora_config is None
    assert all(p.requires_grad for p in model.parameters())  # an ordinary model again


def test_the_adapters_change_the_model_once_trained(seed):
    """Guards the parity tests: without the merge, the perturbed adapters' effect would be lost."""
    model = TransformerLM(TransformerConfig(**LLAMA), lora={"targets": ["q_proj"]}).eval()
    idx = torch.randint(0, 256, (1, 16))
    with torch.no_grad():
        plain = model(idx)
        _perturb_adapters(model)
        assert (model(idx) - plain).abs().max() > 1e-2
    merge_lora(model.model)
    with torch.no_grad():
        assert (model(idx) - plain).abs().max() > 1e-2


# ---- fine-tunes change only adapters ------------------------------------------------------------
def test_lm_fine_tune_changes_only_the_adapters(tmp_path, seed):
    model = TransformerLM(TransformerConfig(**LLAMA), optimizer={"lr": 1e-2, "weight_decay": 0.1},
                          lora={"r": 4, "targets": ["all-linear"]})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _trainer(tmp_path, steps=5).fit(model, CharTextDataModule(_text(tmp_path), seq_len=16, batch_size=4))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    adapters = {k for k in before if k.endswith(("lora_a", "lora_b"))}
    assert changed == adapters  # every adapter moved (weight decay moves A too); nothing else did


def test_classifier_fine_tune_changes_only_adapters_and_its_head(tmp_path, seed):
    model = TransformerClassifier(TransformerConfig(**{**GPT, "vocab_size": 16}), num_classes=2,
                                  optimizer={"lr": 1e-2}, lora={"targets": ["q_proj", "fc2"]})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = SyntheticSequenceDataModule(kind="tokens", num_samples=64, seq_len=12, vocab_size=16, num_classes=2, batch_size=8)
    _trainer(tmp_path, steps=5).fit(model, data)
    changed = {k for k in before if not torch.equal(before[k], model.state_dict()[k])}
    expected = {k for k in before if k.endswith(("lora_a", "lora_b"))} | {"model.head.weight", "model.head.bias"}
    assert changed == expected


# ---- checkpoints, export and serving loads -------------------------------------------------------
def test_lora_checkpoint_holds_the_config_and_reloads_unmerged_or_merged(tmp_path, seed):
    model = TransformerLM(TransformerConfig(**LLAMA), lora={"r": 4, "alpha": 8.0, "targets": ["q_proj", "k_proj"]})
    trainer = _trainer(tmp_path, steps=3)
    trainer.fit(model, CharTextDataModule(_text(tmp_path), seq_len=16, batch_size=4))
    trainer.save_checkpoint(tmp_path / "lora.ckpt")
    stored = torch.load(tmp_path / "lora.ckpt", weights_only=True)
    assert stored["hyper_parameters"]["lora"] == {"r": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["q_proj", "k_proj"]}
    idx = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        want = model.eval()(idx)
        unmerged = load_checkpoint(tmp_path / "lora.ckpt")
        assert len(_adapted(unmerged)) == 4 and unmerged.lora_config.r == 4
        assert_close(unmerged(idx), want, rtol=0, atol=0)
        merged = load_checkpoint(tmp_path / "lora.ckpt", merge_lora=True)
        assert not _adapted(merged) and merged.hparams["lora"] is None
        assert_close(merged(idx), want, atol=1e-5, rtol=0)


def test_export_command_merges_a_lora_checkpoint(tmp_path, seed):
    import json

    from nl_lightning.cli import main

    model = TransformerLM(TransformerConfig(**{**GPT, "max_seq_len": 16}), lora={"targets": ["q_proj"]})
    _perturb_adapters(model)
    trainer = _trainer(tmp_path, steps=1)
    trainer.fit(model, CharTextDataModule(_text(tmp_path), seq_len=16, batch_size=4))
    trainer.save_checkpoint(tmp_path / "lora.ckpt")
    out = tmp_path / "export"
    assert main(["export", "--ckpt_path", str(tmp_path / "lora.ckpt"), "--out_dir", str(out),
                 "--formats", "[pt2]"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    [artifact] = manifest["artifacts"]
    assert artifact["max_abs_err"] < 1e-4  # the merged graph against the eager LoRA model's own outputs
    program = torch.export.load(out / artifact["files"][0]["path"])
    assert not any("lora" in name for name in program.state_dict)  # merged: no adapter tensors in the graph
    idx = torch.randint(0, 256, (1, 16))
    with torch.no_grad():
        assert_close(program.module()(idx), model.eval()(idx), atol=1e-5, rtol=0)


def test_resuming_with_other_lora_settings_is_refused_as_another_architecture(tmp_path):
    from types import SimpleNamespace

    from nl_lightning.models import CheckpointError
    from nl_lightning.resume import check_checkpoint_against_config

    model = TransformerLM(TransformerConfig(**GPT), lora={"r": 4, "targets": ["q_proj"]})
    trainer = _trainer(tmp_path, steps=1)
    trainer.fit(model, CharTextDataModule(_text(tmp_path), seq_len=16, batch_size=4))
    trainer.save_checkpoint(tmp_path / "lora.ckpt")
    config = SimpleNamespace(class_path="nl_lightning.models.TransformerLM",
                             init_args={"lora": {"r": 8, "targets": ["q_proj"]}})
    with pytest.raises(CheckpointError, match=r"different architecture than the config \(lora\.r: config 8 vs checkpoint 4\)"):
        check_checkpoint_against_config(str(tmp_path / "lora.ckpt"), config, "fit")


def test_the_serving_runner_loads_a_lora_checkpoint_merged(tmp_path, seed):
    import numpy as np

    from nl_lightning.serve.registry import ModelSource
    from nl_lightning.serve.runners import TorchRunner

    model = TransformerLM(TransformerConfig(**GPT), lora={"targets": ["q_proj", "fc1"]})
    _perturb_adapters(model)
    trainer = _trainer(tmp_path, steps=1)
    trainer.fit(model, CharTextDataModule(_text(tmp_path), seq_len=16, batch_size=4))
    trainer.save_checkpoint(tmp_path / "lora.ckpt")
    runner = TorchRunner(ModelSource("v1", "torch", tmp_path / "lora.ckpt"))
    assert not _adapted(runner.model)  # served as one plain weight per layer: no extra matmuls per request
    idx = np.random.default_rng(0).integers(0, 256, (2, 12))
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(idx)).numpy()
    np.testing.assert_allclose(runner.forward(idx), want, atol=1e-5, rtol=0)
