"""LoRALinear: the base layer's own parameters plus scaling * B A on its (partial) rows, as written out."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from nl_lightning.nn import LoRALinear


def _trained(layer: LoRALinear) -> LoRALinear:
    """Give B non-zero values, as training would (B starts at zero)."""
    with torch.no_grad():
        layer.lora_b.normal_()
    return layer


def test_wraps_the_base_parameters_and_starts_as_the_base(seed):
    base = nn.Linear(8, 6)
    layer = LoRALinear(base, r=2, alpha=4.0)
    assert layer.weight is base.weight and layer.bias is base.bias  # shared, not copied
    assert set(layer.state_dict()) == {"weight", "bias", "lora_a", "lora_b"}
    assert torch.count_nonzero(layer.lora_a) == layer.lora_a.numel() and not layer.lora_b.any()
    x = torch.randn(3, 5, 8)
    assert torch.equal(layer(x), base(x))  # B = 0: exactly the base layer before training


def test_forward_is_the_formula(seed):
    base = nn.Linear(8, 6)
    layer = _trained(LoRALinear(base, r=3, alpha=6.0))
    x = torch.randn(4, 8)
    expected = x @ base.weight.T + base.bias + 2.0 * (x @ layer.lora_a.T @ layer.lora_b.T)
    assert_close(layer(x), expected)


@pytest.mark.parametrize(("rows", "parts"), [((0, 4), 1), ((4, 8), 1), ((0, 8), 2)], ids=["k", "v", "k+v"])
def test_partial_rows_adapt_only_those_rows_with_one_adapter_per_part(rows, parts, seed):
    """kv_proj's halves: only the adapted rows change; with two parts each half has its own A and B."""
    base = nn.Linear(8, 8, bias=False)
    layer = _trained(LoRALinear(base, r=2, alpha=2.0, rows=rows, parts=parts))
    x = torch.randn(5, 8)
    start, stop = rows
    expected = base(x).detach().clone()
    for i, (a, b) in enumerate(zip(layer.lora_a.chunk(parts), layer.lora_b.chunk(parts))):
        size = (stop - start) // parts
        expected[:, start + i * size: start + (i + 1) * size] += x @ a.T @ b.T
    assert_close(layer(x), expected)
    delta = layer.delta_weight()
    assert delta.shape == (8, 8)
    outside = torch.ones(8, dtype=torch.bool)
    outside[start:stop] = False
    assert not delta[outside].any() and delta[~outside].abs().sum() > 0


@pytest.mark.parametrize("rows", [None, (0, 4), (0, 8)])
def test_merged_layer_computes_the_same_function(rows, seed):
    layer = _trained(LoRALinear(nn.Linear(8, 8), r=4, alpha=8.0, rows=rows, parts=2 if rows == (0, 8) else 1))
    merged = layer.merged()
    assert type(merged) is nn.Linear and merged.bias is layer.bias
    x = torch.randn(3, 7, 8)
    assert_close(merged(x), layer(x), atol=1e-5, rtol=0)
    assert not torch.equal(merged.weight, layer.weight)  # the update really is in the weight


def test_dropout_applies_to_the_adapter_input_only(seed):
    layer = _trained(LoRALinear(nn.Linear(8, 8), r=2, dropout=0.5))
    x = torch.randn(64, 8)
    layer.eval()
    assert_close(layer(x), layer.merged()(x), atol=1e-5, rtol=0)
    layer.train()
    assert not torch.allclose(layer(x), layer.merged()(x), atol=1e-3)


def test_gradients_reach_the_adapters(seed):
    base = nn.Linear(8, 8)
    base.requires_grad_(False)
    layer = LoRALinear(base, r=2)
    layer(torch.randn(4, 8)).sum().backward()
    assert layer.lora_b.grad is not None and layer.lora_b.grad.abs().sum() > 0
    assert base.weight.grad is None


def test_bad_rows_or_rank_are_refused():
    with pytest.raises(ValueError, match=r"rows 0:5 inside 0:8 split into 2 equal parts"):
        LoRALinear(nn.Linear(8, 8), rows=(0, 5), parts=2)
    with pytest.raises(ValueError, match="needs r >= 1"):
        LoRALinear(nn.Linear(8, 8), r=0)
