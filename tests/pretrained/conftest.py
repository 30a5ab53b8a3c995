"""Tiny random transformers models, built offline and saved as model folders (the parity references)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers (the dev extra) is the parity reference")
logging.getLogger("transformers").setLevel(logging.ERROR)

VOCAB = 96


def llama_config(**overrides: Any) -> "transformers.PretrainedConfig":
    values = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=False)
    return transformers.LlamaConfig(**{**values, **overrides})


def mistral_config(**overrides: Any) -> "transformers.PretrainedConfig":
    values = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128, sliding_window=8)
    return transformers.MistralConfig(**{**values, **overrides})


def qwen2_config(**overrides: Any) -> "transformers.PretrainedConfig":
    values = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128, rope_theta=1e6, tie_word_embeddings=True)
    return transformers.Qwen2Config(**{**values, **overrides})


def gpt2_config(**overrides: Any) -> "transformers.PretrainedConfig":
    values = dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2Config(**{**values, **overrides})


def bert_config(**overrides: Any) -> "transformers.PretrainedConfig":
    values = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                  max_position_embeddings=64, type_vocab_size=2)
    return transformers.BertConfig(**{**values, **overrides})


CAUSAL = {
    "llama": (llama_config, transformers.LlamaForCausalLM),
    "mistral": (mistral_config, transformers.MistralForCausalLM),
    "qwen2": (qwen2_config, transformers.Qwen2ForCausalLM),
    "gpt2": (gpt2_config, transformers.GPT2LMHeadModel),
}


def random_weights(model: torch.nn.Module) -> torch.nn.Module:
    """Norm weights and biases are 1 / 0 after init: randomize every tensor so a mapping that swaps
    or drops one shows in the outputs."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            scale = 0.5 if "norm" in name.lower() or name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) else 0.1
            param.add_(torch.randn_like(param) * scale)
    return model.eval()


@pytest.fixture
def hf_folder(tmp_path: Path) -> Callable[..., tuple[Path, torch.nn.Module]]:
    """``hf_folder(kind, **config)`` -> (folder, the transformers model saved in it)."""
    count = iter(range(1000))

    def make(kind: str, model_class: Any = None, **overrides: Any) -> tuple[Path, torch.nn.Module]:
        torch.manual_seed(0)
        if kind == "bert":
            make_config, default_class = bert_config, transformers.BertModel
        else:
            make_config, default_class = CAUSAL[kind]
        model = random_weights((model_class or default_class)(make_config(**overrides)))
        folder = tmp_path / f"{kind}-{next(count)}"
        model.save_pretrained(folder)
        return folder, model

    return make
