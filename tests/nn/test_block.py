"""TransformerBlock wiring: pre-LN and post-LN residuals written out with the injected layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from nl_lightning.nn import LayerScale, LearnedPositionalEmbedding, SelfAttention, TransformerBlock, build_mlp


def _block(norm_style: str, layer_scale: bool = False) -> TransformerBlock:
    return TransformerBlock(
        attn=SelfAttention(16, 4), mlp=build_mlp("gelu", 16, 32),
        norm1=nn.LayerNorm(16), norm2=nn.LayerNorm(16),
        ls1=LayerScale(16, 0.5) if layer_scale else None, ls2=LayerScale(16, 2.0) if layer_scale else None,
        norm_style=norm_style,
    ).eval()


@pytest.mark.parametrize("layer_scale", [False, True])
def test_pre_ln(layer_scale, seed):
    b = _block("pre", layer_scale)
    x = torch.randn(2, 5, 16)
    g1, g2 = (0.5, 2.0) if layer_scale else (1.0, 1.0)
    h = x + g1 * b.attn(b.norm1(x), is_causal=True)
    assert_close(b(x, is_causal=True), h + g2 * b.mlp(b.norm2(h)))


@pytest.mark.parametrize("layer_scale", [False, True])
def test_post_ln(layer_scale, seed):
    b = _block("post", layer_scale)
    x = torch.randn(2, 5, 16)
    g1, g2 = (0.5, 2.0) if layer_scale else (1.0, 1.0)
    h = b.norm1(x + g1 * b.attn(x, is_causal=True))
    assert_close(b(x, is_causal=True), b.norm2(h + g2 * b.mlp(h)))


def test_unknown_norm_style():
    with pytest.raises(ValueError, match=r"Unknown norm_style 'sandwich'; choose 'pre' or 'post'"):
        TransformerBlock(attn=nn.Identity(), mlp=nn.Identity(), norm1=nn.Identity(), norm2=nn.Identity(),
                         norm_style="sandwich")


def test_learned_positions_add_offset_rows(seed):
    pos = LearnedPositionalEmbedding(8, 4)
    x = torch.randn(2, 3, 4)
    assert_close(pos(x, offset=2), x + pos.weight[2:5])
    with pytest.raises(ValueError, match=r"reaches position 9 but learned positions stop at max_seq_len=8"):
        pos(x, offset=6)
