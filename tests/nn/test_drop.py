"""Stochastic depth: identity at eval, unbiased in training, linear per-layer schedule."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from nl_lightning.nn import DropPath, drop_path, drop_path_schedule


def test_identity_in_eval_and_at_zero_rate(seed):
    x = torch.randn(8, 5, 4)
    assert torch.equal(DropPath(0.5).eval()(x), x)
    assert torch.equal(DropPath(0.0).train()(x), x)
    assert torch.equal(drop_path(x, 0.5, training=False), x)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_training_drops_whole_samples_and_preserves_expectation(p):
    torch.manual_seed(0)
    n = 20_000
    x = torch.ones(n, 3, 2)
    out = DropPath(p).train()(x)
    per_sample = out.flatten(1)
    # Each sample is either dropped entirely or kept and rescaled by 1 / (1 - p).
    dropped = (per_sample == 0).all(1)
    kept = torch.isclose(per_sample, torch.full_like(per_sample, 1 / (1 - p))).all(1)
    assert bool((dropped | kept).all())
    assert dropped.float().mean().item() == pytest.approx(p, abs=0.02)
    assert out.mean().item() == pytest.approx(1.0, abs=0.03)


def test_gradient_flows_only_through_kept_samples():
    torch.manual_seed(0)
    x = torch.ones(64, 4, requires_grad=True)
    out = drop_path(x, 0.5, training=True)
    out.sum().backward()
    assert torch.equal(x.grad, out.detach())  # d(out)/dx is the same 0 or 1/(1-p) mask


@pytest.mark.parametrize("rate, n_layers", [(0.3, 4), (0.1, 2), (0.2, 7)])
def test_schedule_is_linear_from_zero_to_rate(rate, n_layers):
    schedule = torch.tensor(drop_path_schedule(rate, n_layers))
    assert schedule.shape == (n_layers,)
    assert_close(schedule, torch.linspace(0.0, rate, n_layers))


def test_schedule_for_one_layer_is_the_rate():
    assert drop_path_schedule(0.2, 1) == [0.2]


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_probability_out_of_range(p):
    with pytest.raises(ValueError, match=rf"DropPath probability must be in \[0, 1\), got {p}"):
        DropPath(p)


def test_extra_repr():
    assert "p=0.25" in repr(DropPath(0.25))
