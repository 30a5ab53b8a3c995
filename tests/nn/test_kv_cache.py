"""KVCache bookkeeping, and cached attention equal to attention over the whole sequence."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from nl_lightning.nn import KVCache, RotaryEmbedding, SelfAttention, build_attn_mask


def test_update_appends_and_returns_everything_so_far(seed):
    cache = KVCache(batch_size=2, n_kv_heads=3, max_len=6, head_dim=4)
    k1, v1 = torch.randn(2, 2, 3, 2, 4).unbind(0)
    k2, v2 = torch.randn(2, 2, 3, 1, 4).unbind(0)
    k, v = cache.update(k1, v1)
    assert cache.length == 2 and torch.equal(k, k1) and torch.equal(v, v1)
    k, v = cache.update(k2, v2)
    assert cache.length == 3
    assert torch.equal(k, torch.cat([k1, k2], dim=2)) and torch.equal(v, torch.cat([v1, v2], dim=2))
    cache.reset()
    assert cache.length == 0
    k, _ = cache.update(k2, v2)
    assert torch.equal(k, k2)


def test_cache_is_not_saved_in_state_dict():
    assert KVCache(1, 1, 4, 2).state_dict() == {}


def test_dtype_and_max_len():
    cache = KVCache(1, 2, 5, 4, dtype=torch.bfloat16)
    assert cache.k.dtype == torch.bfloat16 and cache.max_len == 5


def test_overflow_is_an_error_that_says_how_to_fix_it():
    cache = KVCache(1, 1, 4, 2)
    cache.update(torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2))
    with pytest.raises(ValueError, match=r"KVCache is full: 3 cached \+ 2 new > max_len=4\. Allocate a larger cache"):
        cache.update(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    assert cache.length == 3  # a refused update leaves the cache as it was


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("backend", ["auto", "naive"])
@pytest.mark.parametrize("chunks", [(8,), (1,) * 8, (3, 1, 4), (5, 2, 1)], ids=str)
def test_cached_attention_equals_full_attention(n_kv_heads, backend, chunks, seed):
    """Feeding the sequence in chunks through the cache gives the full causal outputs."""
    B, T, d_model, n_heads = 2, sum(chunks), 32, 4
    attn = SelfAttention(d_model, n_heads, n_kv_heads, backend=backend).eval()
    rope = RotaryEmbedding(d_model // n_heads, max_seq_len=T)
    x = torch.randn(B, T, d_model)
    with torch.no_grad():
        full = attn(x, is_causal=True, rope=rope(T))
        cache, outs, start = KVCache(B, n_kv_heads, T, d_model // n_heads), [], 0
        for size in chunks:
            mask = build_attn_mask(size, start + size, causal=True)
            outs.append(attn(x[:, start : start + size], mask, rope=rope(size, start), kv_cache=cache))
            start += size
    assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=1e-5)
