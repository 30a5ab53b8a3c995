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


def test_ragged_rows_append_at_their_own_length_and_leave_in_place():
    from nl_lightning.nn import RaggedKVCache

    cache = RaggedKVCache(capacity=3, n_kv_heads=1, max_len=5, head_dim=2)
    a, b, c = (torch.full((1, n, 2), float(i)) for i, n in ((1, 2), (2, 4), (3, 1)))
    assert [cache.add(x, x) for x in (a, b, c)] == [0, 1, 2] and cache.lengths == [2, 4, 1]
    new = torch.stack([torch.full((1, 1, 2), 10.0 + i) for i in range(3)])  # (rows, Hkv, 1, D)
    k, _ = cache.update(new, new)
    assert k.shape == (3, 1, 5, 2) and cache.lengths == [3, 5, 2]
    assert k[0, 0, 2, 0] == 10 and k[1, 0, 4, 0] == 11 and k[2, 0, 1, 0] == 12  # after each row's own end
    cache.remove(0)  # the last row takes row 0's place
    assert cache.lengths == [2, 5] and torch.equal(cache.k[0, 0, :2, 0], torch.tensor([3.0, 12.0]))
    with pytest.raises(ValueError, match=r"RaggedKVCache is full: a row of 5 cached \+ 1 new > max_len=5"):
        cache.update(new[:2], new[:2])
    with pytest.raises(ValueError, match="holds 2 rows but got keys for 3"):
        cache.update(new, new)
