"""Tiny random transformers models built offline: the parity references of tests/pretrained."""

from __future__ import annotations

import logging
from typing import Any

import torch
import transformers  # the dev extra: `make test` installs it

logging.getLogger("transformers").setLevel(logging.ERROR)
transformers.utils.logging.disable_progress_bar()

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


def hf_logits(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(idx).logits


def hf_greedy(model: torch.nn.Module, idx: torch.Tensor, new: int = 32) -> torch.Tensor:
    """transformers' own greedy ``generate`` (its KV cache), never stopping early; the explicit
    attention mask keeps it from reading token 0 in a prompt as padding."""
    with torch.no_grad():
        return model.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=new, min_new_tokens=new,
                              do_sample=False, eos_token_id=None, pad_token_id=0)
