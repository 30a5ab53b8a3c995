"""Autoregressive sampling from a ``CausalLM`` with its KV cache (prefill once, then one token a step)."""

from __future__ import annotations

import torch
from torch import Tensor

from nl_lightning.errors import ConfigError
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
    generator: torch.Generator | None = None, keep: int | None = None,
) -> Tensor:
    """Extend ``idx`` (B, T) by ``max_new_tokens`` sampled tokens; returns (B, T + max_new_tokens).

    Decoding is incremental (one token per forward, on the KV cache) and never uses a position at
    or past ``max_seq_len`` (never seen in training): when the cache holds ``max_seq_len`` tokens,
    it is re-filled from the last ``keep`` tokens (default half the window) at positions 0..keep-1
    and decoding continues on it. So a generation many windows long costs one short prefill per
    ``max_seq_len - keep`` tokens instead of a full-window forward per token.
    """
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ConfigError(f"generate() needs a non-empty prompt of shape (batch, seq), got {tuple(idx.shape)}.")
    if temperature < 0:
        raise ConfigError(f"temperature={temperature} must be >= 0 (0 = greedy).")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k={top_k} must be >= 1 or None.")
    window = model.config.max_seq_len
    keep = max(1, window // 2) if keep is None else keep
    if not 1 <= keep <= window:
        raise ConfigError(f"keep={keep} must be in [1, max_seq_len={window}] (default: half the window).")
    if max_new_tokens < 1:
        return idx
    caches = model.transformer.new_kv_caches(idx.size(0), min(window, idx.size(1) + max_new_tokens))
    logits = model(idx[:, -window:], kv_caches=caches)[:, -1]  # prefill with at most one window
    out = idx
    for step in range(max_new_tokens):
        token = sample_next(logits, temperature, top_k, generator)  # (B, 1)
        out = torch.cat([out, token], dim=1)
        if step + 1 == max_new_tokens:
            break
        if caches[0].length < caches[0].max_len:
            logits = model(token, kv_caches=caches)[:, -1]
        else:  # the window is full: re-prefill from its last `keep` tokens (the new one included)
            for cache in caches:
                cache.reset()
            logits = model(out[:, -keep:], kv_caches=caches)[:, -1]
    return out
