"""Llama, Mistral and Qwen2 folders: our network computes transformers' logits and greedy tokens,
and save_pretrained writes folders transformers loads as the same model."""

from __future__ import annotations

import json

import pytest
import torch
from torch.testing import assert_close

from hf_models import VOCAB, hf_greedy, hf_logits, transformers
from nl_lightning.models import TransformerConfig, TransformerLM
from nl_lightning.pretrained import PretrainedError

LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}
VARIANTS = {
    "llama": ("llama", {}),
    "llama-biases": ("llama", dict(attention_bias=True, mlp_bias=True)),
    "llama-tied": ("llama", dict(tie_word_embeddings=True)),
    "llama3-rope": ("llama", dict(rope_scaling=LLAMA3, rope_theta=500000.0)),
    "linear-rope": ("llama", dict(rope_scaling={"rope_type": "linear", "factor": 4.0})),
    "mistral-window": ("mistral", dict(sliding_window=8)),
    "qwen2": ("qwen2", {}),
}


def _tokens(batch: int = 2, length: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_equal_transformers(variant, hf_folder):
    kind, overrides = VARIANTS[variant]
    folder, reference = hf_folder(kind, **overrides)
    ours = TransformerLM.from_pretrained(folder).eval()
    idx = _tokens(length=40)  # longer than the sliding window and the llama3 original context
    with torch.no_grad():
        assert_close(ours(idx), hf_logits(reference, idx), atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", ["llama", "llama3-rope", "mistral-window", "qwen2"])
@pytest.mark.parametrize("batch", [1, 3])
def test_greedy_generation_equals_transformers_generate(variant, batch, hf_folder):
    kind, overrides = VARIANTS[variant]
    folder, reference = hf_folder(kind, **overrides)
    ours = TransformerLM.from_pretrained(folder)
    prompt = _tokens(batch, 7)
    expected = hf_greedy(reference, prompt, 32)
    assert torch.equal(ours.generate(prompt, 32, temperature=0.0, top_k=None), expected)


def test_mapping_reads_each_config_field(hf_folder):
    folder, _ = hf_folder("qwen2", rope_theta=123456.0, rms_norm_eps=1e-5)
    config = TransformerLM.from_pretrained(folder).config
    assert (config.d_model, config.n_heads, config.n_kv_heads, config.mlp_hidden) == (32, 4, 2, 48)
    assert (config.rope_base, config.norm_eps, config.tie_embeddings) == (123456.0, 1e-5, True)
    assert (config.bias, config.qkv_bias, config.mlp_bias, config.sliding_window) == (False, True, None, None)


@pytest.mark.parametrize("variant", ["llama3-rope", "qwen2"])
def test_transformers_4x_config_json_reads_the_same(variant, hf_folder):
    """4.x wrote ``rope_theta`` + ``rope_scaling`` and ``torch_dtype``; 5.x ``rope_parameters`` and ``dtype``."""
    kind, overrides = VARIANTS[variant]
    folder, reference = hf_folder(kind, **overrides)
    config = json.loads((folder / "config.json").read_text())
    params = config.pop("rope_parameters")
    config["rope_theta"] = params.pop("rope_theta")
    config["rope_scaling"] = None if params["rope_type"] == "default" else {"type": params.pop("rope_type"), **params}
    config["torch_dtype"] = config.pop("dtype")
    (folder / "config.json").write_text(json.dumps(config))
    ours = TransformerLM.from_pretrained(folder).eval()
    assert ours.config.rope_base == reference.config.rope_parameters["rope_theta"]
    idx = _tokens(length=40)
    with torch.no_grad():
        assert_close(ours(idx), hf_logits(reference, idx), atol=1e-4, rtol=0)


EXPORTS = {
    "llama": dict(bias=False),
    "llama-biases": dict(bias=True),
    "llama-tied-llama3": dict(bias=False, tie_embeddings=True, rope_base=5e5, rope_scaling={
        "type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_seq_len": 16}),
    "mistral": dict(bias=False, sliding_window=6),
    "qwen2": dict(bias=False, qkv_bias=True),
}


@pytest.mark.parametrize("name", EXPORTS)
def test_save_pretrained_loads_in_transformers_with_equal_logits(name, tmp_path, seed):
    config = TransformerConfig.from_preset("llama", n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, vocab_size=VOCAB,
                                           max_seq_len=64, **EXPORTS[name])
    ours = TransformerLM(config).eval()
    with torch.no_grad():
        for param in ours.parameters():
            param.add_(torch.randn_like(param) * 0.1)  # norms and biases off their 1 / 0 init
    ours.save_pretrained(tmp_path / "out")
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["model_type"] == name.split("-")[0] and "rope_parameters" in written
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    idx = _tokens(length=30)
    with torch.no_grad():
        assert_close(hf_logits(reference, idx), ours(idx), atol=1e-4, rtol=0)
    again = TransformerLM.from_pretrained(tmp_path / "out").eval()  # and back: the same network
    with torch.no_grad():
        assert torch.equal(again(idx), ours(idx))


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}),
         r"rope_parameters.rope_type='yarn' is not supported; supported RoPE types are 'default', 'linear' and 'llama3'"),
        (dict(head_dim=16), r"head_dim=16 is not supported; head_dim = hidden_size / num_attention_heads \(8 here\)"),
        (dict(hidden_act="gelu"), r"hidden_act='gelu' is not supported; the SwiGLU MLP \(hidden_act='silu'\)"),
        (dict(num_local_experts=8), r"num_local_experts=8 is not supported; mixture-of-experts MLPs"),
    ],
)
def test_fields_we_cannot_compute_are_refused(overrides, match, hf_folder):
    folder, _ = hf_folder("llama")
    config = json.loads((folder / "config.json").read_text())
    config.update(overrides)
    if "rope_scaling" in overrides:
        config["rope_parameters"].update(overrides["rope_scaling"])
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PretrainedError, match=match):
        TransformerLM.from_pretrained(folder)


def test_qwen2_sliding_window_is_refused(hf_folder):
    folder, _ = hf_folder("qwen2")
    config = json.loads((folder / "config.json").read_text())
    config.update(use_sliding_window=True, sliding_window=4)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PretrainedError, match=r"use_sliding_window=True is not supported; Qwen2 with full attention"):
        TransformerLM.from_pretrained(folder)


@pytest.mark.parametrize(
    "config, match",
    [
        (TransformerConfig(vocab_size=VOCAB, n_layers=1, d_model=32, n_heads=4),  # our char-LM default
         r"No transformers architecture computes this lm model.*llama: Llama/Mistral/Qwen2 need .* this model has "
         r"\{'norm': 'layernorm', 'mlp': 'gelu'\}.*gpt2: GPT-2 needs .* this model has \{'position': 'rope'\}"),
        (TransformerConfig.from_preset("llama", n_layers=1, d_model=32, qkv_bias=True, bias=False, mlp_bias=True),
         r"qkv_bias=True with an output-projection bias=False and mlp_bias=True"),
        (TransformerConfig.from_preset("llama", n_layers=1, d_model=32, sliding_window=4, bias=True),
         r"sliding_window=4 is Mistral's, which has no biases"),
    ],
    ids=["layernorm-rope", "mixed-biases", "window-with-biases"],
)
def test_models_no_architecture_computes_are_not_written(config, match, tmp_path):
    with pytest.raises(PretrainedError, match=match):
        TransformerLM(config).save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()
