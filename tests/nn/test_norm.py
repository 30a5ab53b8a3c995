"""Norms by name are torch's own modules; LayerScale is a per-channel gain."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from nl_lightning.nn import NORMS, LayerScale, build_norm


def test_rmsnorm_is_torch_rmsnorm_and_matches_formula(seed):
    norm = build_norm("rmsnorm", 8, eps=1e-6)
    assert type(norm) is nn.RMSNorm and norm.eps == 1e-6
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 5, 8)
    assert_close(norm(x), x / (x.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt() * norm.weight)


def test_layernorm_is_torch_layernorm(seed):
    norm = build_norm("layernorm", 8, eps=1e-3)
    assert type(norm) is nn.LayerNorm and norm.eps == 1e-3
    x = torch.randn(2, 5, 8)
    assert_close(norm(x), F.layer_norm(x, (8,), norm.weight, norm.bias, 1e-3))


@pytest.mark.parametrize("name", NORMS)
def test_registry(name):
    norm = build_norm(name, 12)
    assert isinstance(norm, NORMS[name]) and norm.normalized_shape == (12,)


def test_unknown_norm():
    with pytest.raises(ValueError, match=r"Unknown norm 'batchnorm'; choose one of \('rmsnorm', 'layernorm'\)"):
        build_norm("batchnorm", 8)


def test_layer_scale(seed):
    ls = LayerScale(4, init_value=0.1)
    assert_close(ls.gamma, torch.full((4,), 0.1))
    x = torch.randn(3, 4)
    assert_close(ls(x), x * 0.1)
    ls(x).sum().backward()
    assert_close(ls.gamma.grad, x.sum(0))
