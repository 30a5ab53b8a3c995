"""CUDA-only: the flash and memory-efficient SDPA kernels, pinned by name, match the naive reference.

Skipped without CUDA (``benchmarks/gpu.sh`` runs every ``gpu`` test on a GPU machine). The CPU
tests in ``test_attention.py`` cover the kernels torch's CPU build has.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from nl_lightning.nn import SelfAttention, build_attn_mask, naive_attention, scaled_dot_product

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA SDPA kernels")]

B, H, T, D = 2, 8, 128, 64


def _qkv(dtype: torch.dtype, n_kv: int = H) -> tuple[torch.Tensor, ...]:
    g = torch.Generator(device="cuda").manual_seed(0)
    shapes = [(B, H, T, D), (B, n_kv, T, D), (B, n_kv, T, D)]
    return tuple(torch.randn(s, generator=g, device="cuda", dtype=dtype) for s in shapes)


def _reference(q, k, v, mask=None, is_causal=False) -> torch.Tensor:
    return naive_attention(q.float(), k.float(), v.float(), mask, is_causal).to(q.dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", ["flash", "efficient"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_fused_kernels_match_naive_attention(backend, dtype, is_causal):
    q, k, v = _qkv(dtype)
    out = scaled_dot_product(q, k, v, None, is_causal, backend=backend)
    assert_close(out, _reference(q, k, v, is_causal=is_causal), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_efficient_kernel_takes_a_padding_and_causal_mask(dtype):
    q, k, v = _qkv(dtype)
    padding = torch.zeros(B, T, dtype=torch.bool, device="cuda")
    padding[0, -16:] = True
    mask = build_attn_mask(T, T, True, padding, device="cuda")
    out = scaled_dot_product(q, k, v, mask, backend="efficient")
    assert_close(out, _reference(q, k, v, mask), atol=2e-2 if dtype == torch.bfloat16 else 1e-4, rtol=2e-2)


def test_grouped_query_self_attention_on_cuda_matches_the_naive_backend():
    torch.manual_seed(0)
    attn = SelfAttention(H * D, H, n_kv_heads=2, backend="auto").cuda().to(torch.bfloat16)
    x = torch.randn(B, T, H * D, device="cuda", dtype=torch.bfloat16)
    fused = attn(x, is_causal=True)
    attn.backend = "naive"
    assert_close(fused.float(), attn(x, is_causal=True).float(), atol=3e-2, rtol=3e-2)
