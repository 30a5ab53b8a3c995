"""batch_flops: the meta-device count equals torch's FlopCounterMode on the real model and batch."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nl_lightning.models import TransformerClassifier, TransformerLM
from nl_lightning.models.flops import batch_flops


def _real_flops(model, *inputs) -> int:
    with FlopCounterMode(display=False) as counter:
        model(*inputs).float().sum().backward()
    return counter.get_total_flops()


# "naive" attention is explicit matmuls, which FlopCounterMode counts on real tensors too (the fused
# CPU SDPA kernel is not counted there, while the meta device's count includes attention).
@pytest.mark.parametrize("position", ["rope", "learned"])
def test_lm_count_matches_flop_counter(tiny_config, position):
    model = TransformerLM(tiny_config(attn_backend="naive", position=position, n_layers=2))
    idx = torch.randint(0, 32, (3, 10))
    assert batch_flops(model, (idx, idx)) == _real_flops(model, idx)


def test_classifier_count_matches_flop_counter(tiny_config):
    model = TransformerClassifier(tiny_config(attn_backend="naive", input_dim=5, causal=False), num_classes=4)
    x = torch.randn(2, 7, 5)
    assert batch_flops(model, {"x": x, "y": torch.zeros(2, dtype=torch.long)}) == _real_flops(model, x)


def test_attention_counted_on_meta_with_fused_sdpa(tiny_config):
    fused = TransformerLM(tiny_config(attn_backend="auto"))
    naive = TransformerLM(tiny_config(attn_backend="naive"))
    idx = torch.randint(0, 32, (2, 8))
    assert batch_flops(fused, (idx, idx)) == batch_flops(naive, (idx, idx))
