"""Autoregressive sampling from a ``CausalLM`` with its KV cache (prefill once, then one token a step)."""

from __future__ import annotations

import torch
from torch import Tensor

from nl_lightning.models.transformer import CausalLM


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """(B, V) logits -> (B, 1) token ids. ``temperature=0`` is greedy."""
    if temperature == 0.0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.float().softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


@torch.inference_mode()
def generate(
    model: CausalLM, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Extend ``idx`` (B, T) by ``max_new_tokens`` sampled tokens; returns (B, T + max_new_tokens).

    Uses the KV cache while prompt + new tokens fit in ``max_seq_len``; longer runs slide a window."""
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError(f"generate() needs a non-empty prompt of shape (batch, seq), got {tuple(idx.shape)}.")
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 = greedy).")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k={top_k} must be >= 1 or None.")
    if max_new_tokens < 1:
        return idx
    window = model.config.max_seq_len
    if idx.size(1) + max_new_tokens > window:
        return _generate_windowed(model, idx, max_new_tokens, temperature, top_k, generator)
    caches = model.transformer.new_kv_caches(idx.size(0), idx.size(1) + max_new_tokens)
    logits = model(idx, kv_caches=caches)[:, -1]  # prefill
    out = [idx]
    for step in range(max_new_tokens):
        token = sample_next(logits, temperature, top_k, generator)
        out.append(token)
        if step + 1 < max_new_tokens:
            logits = model(token, kv_caches=caches)[:, -1]
    return torch.cat(out, dim=1)


def _generate_windowed(model: CausalLM, idx: Tensor, max_new_tokens: int, temperature: float,
                       top_k: int | None, generator: torch.Generator | None) -> Tensor:
    """Past ``max_seq_len`` positions (never seen in training) each step re-reads only the last
    ``max_seq_len`` tokens, as nanoGPT does, instead of extrapolating the cache's positions."""
    window = model.config.max_seq_len
    for _ in range(max_new_tokens):
        logits = model(idx[:, -window:])[:, -1]
        idx = torch.cat([idx, sample_next(logits, temperature, top_k, generator)], dim=1)
    return idx
