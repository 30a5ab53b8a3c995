"""RoPE: relative-position scores, rotation math, norm preservation and table extension."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from nl_lightning.nn import RotaryEmbedding, apply_rope, rope_cache

HEAD_DIM = 16


def _at(x: torch.Tensor, pos: int, tables: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate a (1, 1, 1, D) vector as if it sat at position ``pos``."""
    cos, sin = tables
    return apply_rope(x, cos[pos : pos + 1], sin[pos : pos + 1])


@pytest.mark.parametrize("m, n", [(0, 0), (3, 1), (1, 7), (10, 2)])
@pytest.mark.parametrize("shift", [1, 5, 40])
def test_scores_depend_only_on_relative_offset(m, n, shift, seed):
    tables = rope_cache(64, HEAD_DIM)
    q, k = torch.randn(2, 1, 1, 1, HEAD_DIM).unbind(0)
    score = (_at(q, m, tables) * _at(k, n, tables)).sum()
    shifted = (_at(q, m + shift, tables) * _at(k, n + shift, tables)).sum()
    assert_close(shifted, score, atol=1e-5, rtol=1e-5)


def test_scores_do_change_with_the_offset(seed):
    """Guards the invariance test against a RoPE that rotates nothing."""
    tables = rope_cache(64, HEAD_DIM)
    q, k = torch.randn(2, 1, 1, 1, HEAD_DIM).unbind(0)
    scores = torch.stack([(_at(q, m, tables) * _at(k, 0, tables)).sum() for m in range(4)])
    assert (scores[1:] - scores[0]).abs().min() > 1e-4


def test_matches_complex_rotation_reference(seed):
    """Half-split layout: pair (x_j, x_{j+D/2}) is the complex number x_j + i x_{j+D/2} times e^{i m theta_j}."""
    T = 9
    x = torch.randn(2, 3, T, HEAD_DIM)
    theta = 10000.0 ** (-torch.arange(0, HEAD_DIM, 2, dtype=torch.float64) / HEAD_DIM)
    angles = torch.arange(T, dtype=torch.float64)[:, None] * theta[None, :]  # (T, D/2)
    z = torch.complex(*x.double().chunk(2, dim=-1)) * torch.polar(torch.ones_like(angles), angles)
    expected = torch.cat([z.real, z.imag], dim=-1).float()
    assert_close(apply_rope(x, *rope_cache(T, HEAD_DIM)), expected, atol=1e-5, rtol=1e-5)


def test_base_changes_frequencies():
    cos, _ = rope_cache(4, HEAD_DIM, base=100.0)
    assert_close(cos[1, 1], torch.cos(torch.tensor(100.0 ** (-2 / HEAD_DIM))))


def test_position_zero_is_identity_and_norms_are_preserved(seed):
    x = torch.randn(2, 4, 12, HEAD_DIM)
    out = apply_rope(x, *rope_cache(12, HEAD_DIM))
    assert_close(out[:, :, 0], x[:, :, 0])
    assert_close(out.norm(dim=-1), x.norm(dim=-1))
    half = HEAD_DIM // 2  # each rotated pair keeps its own length
    assert_close(out[..., :half] ** 2 + out[..., half:] ** 2, x[..., :half] ** 2 + x[..., half:] ** 2)


def test_keeps_input_dtype(seed):
    x = torch.randn(1, 2, 5, HEAD_DIM, dtype=torch.bfloat16)
    out = apply_rope(x, *rope_cache(5, HEAD_DIM))
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), apply_rope(x.float(), *rope_cache(5, HEAD_DIM)), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("build", [lambda: rope_cache(8, 7), lambda: RotaryEmbedding(7, 8)], ids=["rope_cache", "module"])
def test_odd_head_dim_is_rejected(build):
    with pytest.raises(ValueError, match=r"RoPE needs an even head_dim, got 7"):
        build()


def test_module_slices_cached_tables():
    rope = RotaryEmbedding(HEAD_DIM, max_seq_len=16)
    cos, sin = rope(5, offset=3)
    ref_cos, ref_sin = rope_cache(16, HEAD_DIM)
    assert torch.equal(cos, ref_cos[3:8]) and torch.equal(sin, ref_sin[3:8])


@pytest.mark.parametrize("seq_len, offset", [(12, 0), (4, 6), (1, 30)])
def test_tables_extend_beyond_max_seq_len(seq_len, offset):
    rope = RotaryEmbedding(HEAD_DIM, max_seq_len=8, base=500.0)
    cos, sin = rope(seq_len, offset)
    fresh_cos, fresh_sin = rope_cache(offset + seq_len, HEAD_DIM, base=500.0)
    assert_close(cos, fresh_cos[offset:])
    assert_close(sin, fresh_sin[offset:])
    assert rope.cos.size(0) == 8  # forward never writes module state
    assert_close(rope(8)[0], rope_cache(8, HEAD_DIM, base=500.0)[0])


def test_tables_stay_fp32_after_a_bf16_cast():
    """A model cast to bf16 keeps rotating with fp32 tables (angles lose precision in bf16)."""
    rope = RotaryEmbedding(head_dim=8, max_seq_len=64).to(torch.bfloat16)
    cos, sin = rope(16, offset=40)
    ref_cos, ref_sin = rope_cache(56, 8)
    assert cos.dtype == torch.float32
    torch.testing.assert_close(cos, ref_cos[40:56])
    torch.testing.assert_close(sin, ref_sin[40:56])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_cast_under_inference_mode_then_training(dtype):
    """A model cast (and run) under inference_mode, then cast back, must still train: tables
    rebuilt or extended inside inference mode would be inference tensors that autograd cannot save."""
    rope = RotaryEmbedding(HEAD_DIM, max_seq_len=16)
    q = torch.randn(1, 2, 12, HEAD_DIM)
    with torch.inference_mode():
        rope.to(dtype)
        rope(24)  # past the cached length, and after the cast
    rope.float()
    assert not rope.cos.is_inference() and not rope.sin.is_inference()
    q.requires_grad_(True)
    apply_rope(q, *rope(12)).sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
