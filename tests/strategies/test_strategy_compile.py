"""``TransformerLM(compile=True)``: ``configure_model`` compiles in place and changes no numbers.

Inductor on CPU generates C++ and builds it with the system compiler, hence the tiny model.
Tolerance: rtol=1e-4, atol=1e-5 in fp32 (fused kernels reorder the sums in norms and softmax);
gradients get atol=1e-4 as they accumulate over the sequence.
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters

from nl_lightning.models import TransformerConfig, TransformerLM

TINY = TransformerConfig(vocab_size=256, n_layers=1, d_model=32, n_heads=2, max_seq_len=32)


def loss_and_grads(model: TransformerLM, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    logits = model(idx)
    F.cross_entropy(logits.flatten(0, 1), idx.roll(-1, 1).flatten()).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("gcc") is None, reason="inductor needs a C++ compiler")
def test_compiled_model_matches_eager(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # cold, private cache
    torch.manual_seed(0)
    eager = TransformerLM(TINY)
    compiled = TransformerLM(TINY, compile=True)
    compiled.load_state_dict(eager.state_dict())
    compiled.configure_model()  # what the Trainer calls before fitting
    idx = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(1))

    assert compiled.model._compiled_call_impl is not None
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # no "_orig_mod." prefixes
    counters.clear()
    logits, grads = loss_and_grads(compiled, idx)
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]  # one graph, no fallback
    ref_logits, ref_grads = loss_and_grads(eager, idx)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads, ref_grads, rtol=1e-4, atol=1e-4)
    torch._dynamo.reset()
