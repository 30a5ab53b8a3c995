"""Autoregressive sampling from a ``CausalLM`` with its KV cache (prefill once, then one token a step)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from nl_lightning.errors import ConfigError
from nl_lightning.models.transformer import CausalLM


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None, top_p: float | None = None) -> Tensor:
    """(B, V) logits -> (B, 1) token ids. ``temperature=0`` is greedy; ``top_k`` keeps the k most
    likely tokens, ``top_p`` the smallest set whose probability reaches p (nucleus sampling)."""
    if temperature == 0.0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        probs = ordered.float().softmax(dim=-1)
        beyond = probs.cumsum(dim=-1) - probs > top_p  # mass before this token already reaches p
        logits = logits.scatter(-1, order, ordered.masked_fill(beyond, float("-inf")))
    probs = logits.float().softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


def check_sampling(temperature: float, top_k: int | None, top_p: float | None = None) -> None:
    """Refuse sampling settings ``sample_next`` cannot use, naming the value and the range."""
    if temperature < 0:
        raise ConfigError(f"temperature={temperature} must be >= 0 (0 = greedy).")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k={top_k} must be >= 1 or None.")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ConfigError(f"top_p={top_p} must be in (0, 1] or None.")


@torch.inference_mode()
def generate(
    model: CausalLM, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
    generator: torch.Generator | None = None, keep: int | None = None, top_p: float | None = None,
) -> Tensor:
    """Extend ``idx`` (B, T) by ``max_new_tokens`` sampled tokens; returns (B, T + max_new_tokens).

    Decoding is incremental (one token per forward, on the KV cache) and never uses a position at
    or past ``max_seq_len`` (never seen in training): when the cache holds ``max_seq_len`` tokens,
    it is re-filled from the last ``keep`` tokens (default half the window) at positions 0..keep-1
    and decoding continues on it. So a generation many windows long costs one short prefill per
    ``max_seq_len - keep`` tokens instead of a full-window forward per token.
    """
    tokens = list(generate_tokens(model, idx, max_new_tokens, temperature, top_k, generator, keep, top_p))
    return torch.cat([idx, *tokens], dim=1)


def window_keep(model: CausalLM, keep: int | None) -> tuple[int, int]:
    """The context window (``max_seq_len``) and how many tokens a full cache is re-filled from."""
    window = model.config.max_seq_len
    keep = max(1, window // 2) if keep is None else keep
    if not 1 <= keep <= window:
        raise ConfigError(f"keep={keep} must be in [1, max_seq_len={window}] (default: half the window).")
    return window, keep


@torch.inference_mode()
def generate_tokens(
    model: CausalLM, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
    generator: torch.Generator | None = None, keep: int | None = None, top_p: float | None = None,
) -> Iterator[Tensor]:
    """Yield the (B, 1) tokens of ``generate`` one step at a time (a caller may stop early)."""
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ConfigError(f"generate() needs a non-empty prompt of shape (batch, seq), got {tuple(idx.shape)}.")
    check_sampling(temperature, top_k, top_p)
    window, keep = window_keep(model, keep)
    if max_new_tokens < 1:
        return
    caches = model.transformer.new_kv_caches(idx.size(0), min(window, idx.size(1) + max_new_tokens))
    logits = model(idx[:, -window:], kv_caches=caches)[:, -1]  # prefill with at most one window
    recent = idx[:, -keep:]
    for step in range(max_new_tokens):
        token = sample_next(logits, temperature, top_k, generator, top_p)  # (B, 1)
        yield token
        if step + 1 == max_new_tokens:
            return
        recent = torch.cat([recent, token], dim=1)[:, -keep:]
        if caches[0].length < caches[0].max_len:
            logits = model(token, kv_caches=caches)[:, -1]
        else:  # the window is full: re-prefill from its last `keep` tokens (the new one included)
            for cache in caches:
                cache.reset()
            logits = model(recent, kv_caches=caches)[:, -1]
