"""Pooling: each option against its formula, and padding ignored by all of them."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from nl_lightning.nn import POOLINGS, AttentionPool, ClsPool, FirstTokenPooler, GeMPool, MeanPool, build_pooling

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
    x = torch.randn(B, T, D)  # signed, like transformer states
    pool = GeMPool(p=2.5, eps=1e-6)
    s = torch.nn.functional.softplus(x) + 1e-6
    expected = torch.stack([(s[b, :n] ** 2.5).mean(0) ** (1 / 2.5) for b, n in enumerate(LENGTHS)])
    assert_close(pool.p, torch.tensor(2.5))
    assert_close(pool(x, _padding()), expected)


def test_gem_near_p_one_is_the_mean_of_softplus(seed):
    x = torch.randn(B, T, D)
    s = torch.nn.functional.softplus(x)
    assert_close(GeMPool(p=1.0 + 1e-6)(x, _padding()), MeanPool()(s, _padding()), atol=1e-4, rtol=1e-4)


def test_gem_sees_negative_states(seed):
    """Clamping at eps made every all-negative input pool to eps, with zero gradient."""
    pool = GeMPool()
    x = -torch.rand(2, T, D) - 0.5
    x.requires_grad_(True)
    out = pool(x)
    assert not torch.allclose(out[0], out[1])  # different negative inputs, different outputs
    out.sum().backward()
    assert (x.grad.abs() > 0).all()


def test_gem_p_gradient_matches_finite_difference(seed):
    pool = GeMPool(p=3.0).double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    pool(x, _padding()).sum().backward()
    grad = pool.p_raw.grad.item()
    h = 1e-6
    with torch.no_grad():
        pool.p_raw += h
        up = pool(x, _padding()).sum().item()
        pool.p_raw -= 2 * h
        down = pool(x, _padding()).sum().item()
    assert grad == pytest.approx((up - down) / (2 * h), rel=1e-5)
    assert grad != 0


def test_gem_p_stays_at_least_one(seed):
    pool = GeMPool()
    with torch.no_grad():
        pool.p_raw.fill_(-50.0)  # an optimizer pushing p down hard
    assert 1.0 <= float(pool.p.detach()) < 1.0 + 1e-6
    assert torch.isfinite(pool(torch.randn(B, T, D))).all()
    with pytest.raises(ValueError, match=r"GeMPool p=0.5 must be > 1"):
        GeMPool(p=0.5)


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
    expected = {"mean": MeanPool, "cls": ClsPool, "attention": AttentionPool, "gem": GeMPool, "pooler": FirstTokenPooler}
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
