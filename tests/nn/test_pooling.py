"""Pooling: each option against its formula, and padding ignored by all of them."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from nl_lightning.nn import POOLINGS, AttentionPool, ClsPool, GeMPool, MeanPool, build_pooling

B, T, D = 3, 6, 8
LENGTHS = (6, 4, 1)


def _padding() -> torch.Tensor:
    return torch.arange(T)[None, :] >= torch.tensor(LENGTHS)[:, None]  # True = padding (right-padded)


def test_masked_mean_matches_manual(seed):
    x = torch.randn(B, T, D)
    expected = torch.stack([x[b, :n].mean(0) for b, n in enumerate(LENGTHS)])
    assert_close(MeanPool()(x, _padding()), expected)
    assert_close(MeanPool()(x), x.mean(1))


def test_gem_matches_formula(seed):
    x = torch.randn(B, T, D)
    pool = GeMPool(p=2.5, eps=1e-6)
    expected = torch.stack([(x[b, :n].clamp_min(1e-6) ** 2.5).mean(0) ** (1 / 2.5) for b, n in enumerate(LENGTHS)])
    assert_close(pool(x, _padding()), expected)


def test_gem_with_p_one_is_the_mean_of_positive_inputs(seed):
    x = torch.rand(B, T, D) + 0.1
    assert_close(GeMPool(p=1.0)(x, _padding()), MeanPool()(x, _padding()))


def test_gem_p_is_learnable(seed):
    pool = GeMPool()
    pool(torch.rand(B, T, D)).sum().backward()
    assert pool.p.grad is not None and torch.isfinite(pool.p.grad)


def test_attention_pool_matches_manual_softmax(seed):
    pool = AttentionPool(D)
    x = torch.randn(B, T, D)
    expected = []
    for b, n in enumerate(LENGTHS):
        scores = pool.key(x[b, :n]) @ pool.query / D**0.5
        expected.append((scores.softmax(0)[:, None] * x[b, :n]).sum(0))
    assert_close(pool(x, _padding()), torch.stack(expected))


def test_cls_pool_takes_the_first_position(seed):
    x = torch.randn(B, T, D)
    assert torch.equal(ClsPool()(x, _padding()), x[:, 0])
    assert ClsPool.prepends_cls


@pytest.mark.parametrize("name", POOLINGS)
def test_padding_values_are_ignored(name, seed):
    pool = build_pooling(name, D)
    x = torch.randn(B, T, D)
    pad = _padding()
    noisy = torch.where(pad[..., None], torch.randn(B, T, D) * 100, x)
    out = pool(x, pad)
    assert out.shape == (B, D)
    assert_close(pool(noisy, pad), out)


@pytest.mark.parametrize("name", POOLINGS)
def test_truncation_equals_padding(name, seed):
    """A padded sample pools like the same sample without its padding."""
    pool = build_pooling(name, D)
    x = torch.randn(B, T, D)
    out = pool(x, _padding())
    for b, n in enumerate(LENGTHS):
        assert_close(out[b : b + 1], pool(x[b : b + 1, :n]))


@pytest.mark.parametrize("name", POOLINGS)
def test_builds_registry_type(name):
    expected = {"mean": MeanPool, "cls": ClsPool, "attention": AttentionPool, "gem": GeMPool}
    assert set(expected) == set(POOLINGS)
    assert type(build_pooling(name, D)) is expected[name]


def test_unknown_pooling():
    with pytest.raises(ValueError, match=r"Unknown pooling 'max'; choose one of \('mean', "):
        build_pooling("max", D)


def test_attention_pool_all_padding_row_is_finite(seed):
    pool = AttentionPool(8)
    x = torch.randn(2, 5, 8)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[1] = True  # the second sequence is all padding
    out = pool(x, mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], pool(x[:1])[0])  # the real row is unaffected
