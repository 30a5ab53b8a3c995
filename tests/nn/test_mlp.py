"""Feed-forward blocks: each registered MLP equals its formula written out."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from nl_lightning.nn import MLPS, GluMlp, Mlp, build_mlp
from nl_lightning.nn.mlp import default_hidden


def _silu(x):
    return x * torch.sigmoid(x)


def _gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _lin(layer, x):
    return x @ layer.weight.T + layer.bias


def test_swiglu_formula(seed):
    mlp = build_mlp("swiglu", 8, 12)
    x = torch.randn(2, 5, 8)
    expected = _lin(mlp.down, _silu(_lin(mlp.gate, x)) * _lin(mlp.up, x))
    assert_close(mlp(x), expected)


def test_geglu_formula(seed):
    mlp = build_mlp("geglu", 8, 12)
    x = torch.randn(2, 5, 8)
    expected = _lin(mlp.down, _gelu(_lin(mlp.gate, x)) * _lin(mlp.up, x))
    assert_close(mlp(x), expected)


def test_gelu_mlp_formula(seed):
    mlp = build_mlp("gelu", 8, 12)
    x = torch.randn(2, 5, 8)
    assert_close(mlp(x), _lin(mlp.fc2, _gelu(_lin(mlp.fc1, x))))


@pytest.mark.parametrize("name", MLPS)
@pytest.mark.parametrize("bias", [True, False])
def test_registry_builds_and_respects_options(name, bias):
    mlp = build_mlp(name, 16, 24, bias=bias)
    assert isinstance(mlp, GluMlp if name in ("swiglu", "geglu") else Mlp)
    linears = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert all((lin.bias is not None) == bias for lin in linears)
    assert {lin.out_features for lin in linears} == {24, 16}
    assert mlp(torch.randn(3, 16)).shape == (3, 16)


@pytest.mark.parametrize("name", MLPS)
@pytest.mark.parametrize("d_model", [16, 48, 100])
def test_default_hidden(name, d_model):
    hidden = default_hidden(name, d_model)
    target = 4 * d_model if name == "gelu" else int(8 * d_model / 3)
    assert hidden % 32 == 0 and target <= hidden < target + 32
    mlp = build_mlp(name, d_model)
    assert max(m.out_features for m in mlp.modules() if isinstance(m, torch.nn.Linear)) == hidden


def test_dropout_is_applied_in_training_only(seed):
    mlp = build_mlp("swiglu", 8, 16, dropout=0.5)
    x = torch.randn(4, 8)
    assert torch.equal(mlp.eval()(x), mlp(x))
    assert not torch.equal(mlp.train()(x), mlp.eval()(x))


def test_unknown_mlp():
    with pytest.raises(ValueError, match=r"Unknown mlp 'relu'; choose one of \('gelu', 'swiglu', 'geglu'\)"):
        build_mlp("relu", 8)


def test_act_is_injected():
    mlp = Mlp(4, 8, act=F.relu)
    with torch.no_grad():
        mlp.fc1.weight.copy_(-torch.eye(8, 4)), mlp.fc1.bias.zero_()
    x = torch.ones(1, 4)
    assert_close(mlp(x), mlp.fc2.bias[None].expand(1, 4))  # relu(-x) = 0 for positive x


@pytest.mark.parametrize("name", ["gelu", "geglu"])
def test_gelu_tanh_approximation(name, seed):
    """GPT-2's gelu_new: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    mlp = build_mlp(name, 8, 12, gelu_approximate="tanh")
    x = torch.randn(2, 5, 8)

    def act(h):
        return 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h**3)))

    if name == "gelu":
        expected = _lin(mlp.fc2, act(_lin(mlp.fc1, x)))
    else:
        expected = _lin(mlp.down, act(_lin(mlp.gate, x)) * _lin(mlp.up, x))
    assert_close(mlp(x), expected)
    exact = build_mlp(name, 8, 12)
    exact.load_state_dict(mlp.state_dict())
    assert not torch.allclose(exact(x), mlp(x), atol=1e-6)  # the approximation is really in use


def test_unknown_gelu_approximation():
    with pytest.raises(ValueError, match=r"Unknown gelu_approximate 'fast'; choose one of \('none', 'tanh'\)"):
        build_mlp("gelu", 8, gelu_approximate="fast")
