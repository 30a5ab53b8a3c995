"""SDPA backends against the naive reference, masks, grouped-query heads and user errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from nl_lightning.nn import ALiBi, SelfAttention, build_attn_mask, naive_attention, repeat_kv, scaled_dot_product

B, H, T, D = 2, 4, 6, 8
MASK_KINDS = ("none", "causal", "padding", "causal_padding", "alibi", "alibi_causal_padding")
HEAD_LAYOUTS = {"mha": H, "gqa": 2, "mqa": 1}
SDPA_BACKENDS = ("auto", "math", "flash", "efficient")


def _padding() -> torch.Tensor:
    """(B, T) bool, True = padding: sample 0 is right-padded, sample 1 left-padded."""
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[0, -2:] = True
    pad[1, :2] = True
    return pad


def _mask(kind: str) -> torch.Tensor | None:
    causal = "causal" in kind
    padding = _padding() if "padding" in kind else None
    bias = ALiBi(H)(T, T) if "alibi" in kind else None
    return build_attn_mask(T, T, causal, padding, bias)


def _qkv(n_kv: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, H, T, D, generator=g, dtype=dtype)
    k = torch.randn(B, n_kv, T, D, generator=g, dtype=dtype)
    v = torch.randn(B, n_kv, T, D, generator=g, dtype=dtype)
    return q, k, v


# Which SDPA kernels this machine has, decided up front from the hardware, not from whether the code
# under test happened to run: a regression that disables a kernel fails instead of turning into a skip.
# These tests run on CPU tensors, where torch has the math and the flash kernel (any mask, GQA); the
# memory-efficient one is CUDA-only, also on a GPU machine (test_attention_cuda.py runs it there).
AVAILABLE = {"auto", "math", "flash"}


def _sdpa_where_available(*args, backend: str, **kwargs) -> torch.Tensor | None:
    """The backend's output where the kernel exists; elsewhere, check that it refuses (and return None)."""
    if backend in AVAILABLE:
        return scaled_dot_product(*args, backend=backend, **kwargs)
    with pytest.raises(RuntimeError, match=f"attn_backend='{backend}': torch has no {backend} SDPA kernel .* "
                                           "Set attn_backend to 'auto'"):
        scaled_dot_product(*args, backend=backend, **kwargs)
    return None


@pytest.mark.parametrize("backend", SDPA_BACKENDS)
@pytest.mark.parametrize("layout", HEAD_LAYOUTS)
@pytest.mark.parametrize("mask_kind", MASK_KINDS)
def test_sdpa_matches_naive(backend, layout, mask_kind):
    q, k, v = _qkv(HEAD_LAYOUTS[layout])
    mask = _mask(mask_kind)
    out = _sdpa_where_available(q, k, v, mask, backend=backend)
    if out is not None:
        assert_close(out, naive_attention(q, k, v, mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", SDPA_BACKENDS)
@pytest.mark.parametrize("layout", HEAD_LAYOUTS)
def test_sdpa_is_causal_flag_matches_naive_and_explicit_mask(backend, layout):
    q, k, v = _qkv(HEAD_LAYOUTS[layout])
    out = _sdpa_where_available(q, k, v, None, True, backend=backend)
    if out is not None:
        assert_close(out, naive_attention(q, k, v, is_causal=True), atol=1e-5, rtol=1e-5)
        assert_close(out, naive_attention(q, k, v, _mask("causal")), atol=1e-5, rtol=1e-5)


def _explicit_attention(q, k, v, allowed=None, bias=None):
    """softmax(q k^T / sqrt(D) + bias, restricted to allowed keys) v, with KV heads indexed explicitly."""
    group = q.size(1) // k.size(1)
    heads = torch.arange(q.size(1)) // group  # query head h reads KV head h // group
    k, v = k[:, heads], v[:, heads]
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.size(-1))
    if bias is not None:
        scores = scores + bias
    if allowed is not None:
        scores = torch.where(allowed, scores, torch.full_like(scores, -math.inf))
    probs = scores.exp() / scores.exp().sum(-1, keepdim=True)
    return torch.einsum("bhqk,bhkd->bhqd", probs, v)


@pytest.mark.parametrize("layout", HEAD_LAYOUTS)
@pytest.mark.parametrize("mask_kind", ["none", "causal_padding", "alibi"])
def test_naive_attention_matches_explicit_einsum(layout, mask_kind):
    q, k, v = _qkv(HEAD_LAYOUTS[layout])
    mask = _mask(mask_kind)
    if mask is None:
        expected = _explicit_attention(q, k, v)
    elif mask.dtype == torch.bool:
        expected = _explicit_attention(q, k, v, allowed=mask)
    else:
        expected = _explicit_attention(q, k, v, bias=mask)
    assert_close(naive_attention(q, k, v, mask), expected, atol=1e-6, rtol=1e-5)


def test_naive_attention_scale_argument():
    q, k, v = _qkv(H)
    out = naive_attention(q, k, v, scale=1.0)
    assert_close(out, _explicit_attention(q * math.sqrt(D), k, v), atol=1e-5, rtol=1e-5)


def test_repeat_kv_shares_each_kv_head_with_consecutive_query_heads():
    x = torch.arange(2 * 3 * 1 * 1, dtype=torch.float32).view(2, 3, 1, 1)
    out = repeat_kv(x, 2)
    assert out.shape == (2, 6, 1, 1)
    for h in range(6):
        assert torch.equal(out[:, h], x[:, h // 2])
    assert repeat_kv(x, 1) is x


@pytest.mark.parametrize("n_kv_heads", [2, 1])
@pytest.mark.parametrize("backend", ["auto", "math", "naive"])
@pytest.mark.parametrize("mask_kind", ["none", "causal_padding", "alibi"])
def test_gqa_equals_mha_with_repeated_kv_heads(n_kv_heads, backend, mask_kind, seed):
    d_model, head_dim = H * D, D
    gqa = SelfAttention(d_model, H, n_kv_heads, backend=backend).eval()
    mha = SelfAttention(d_model, H, H, backend=backend).eval()
    n_rep = H // n_kv_heads

    def repeat_rows(t: torch.Tensor) -> torch.Tensor:  # kv_proj rows are (2, n_kv, head_dim)
        t = t.view(2, n_kv_heads, head_dim, *t.shape[1:])
        return t.repeat_interleave(n_rep, dim=1).reshape(2 * H * head_dim, *t.shape[3:])

    with torch.no_grad():
        mha.q_proj.load_state_dict(gqa.q_proj.state_dict())
        mha.out_proj.load_state_dict(gqa.out_proj.state_dict())
        mha.kv_proj.weight.copy_(repeat_rows(gqa.kv_proj.weight))
        mha.kv_proj.bias.copy_(repeat_rows(gqa.kv_proj.bias))
    x = torch.randn(B, T, d_model)
    mask = _mask(mask_kind)
    assert_close(gqa(x, mask), mha(x, mask), atol=1e-5, rtol=1e-5)
    assert_close(gqa(x, is_causal=True), mha(x, is_causal=True), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_kv_heads", HEAD_LAYOUTS.values())
@pytest.mark.parametrize("backend", SDPA_BACKENDS)
def test_self_attention_backends_agree(n_kv_heads, backend, seed):
    ref = SelfAttention(H * D, H, n_kv_heads, backend="naive").eval()
    attn = SelfAttention(H * D, H, n_kv_heads, backend=backend).eval()
    attn.load_state_dict(ref.state_dict())
    x = torch.randn(B, T, H * D)
    mask = _mask("causal_padding")
    if backend not in AVAILABLE:
        with pytest.raises(RuntimeError, match=f"attn_backend='{backend}': torch has no {backend} SDPA kernel .* "
                                           "Set attn_backend to 'auto'"):
            attn(x, mask)
        return
    assert_close(attn(x, mask), ref(x, mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", SDPA_BACKENDS + ("naive",))
@pytest.mark.parametrize("with_bias", [False, True], ids=["bool", "alibi"])
def test_fully_masked_rows_stay_finite(backend, with_bias):
    """Left padding under causality leaves query 0 of sample 1 with no visible key."""
    q, k, v = _qkv(2)
    pad = _padding()
    mask = build_attn_mask(T, T, True, pad, ALiBi(H)(T, T) if with_bias else None)
    assert not (~pad[1, :1]).any()  # the row really is fully masked before build_attn_mask
    out = _sdpa_where_available(q, k, v, mask, backend=backend) if backend != "naive" else naive_attention(q, k, v, mask)
    assert out is None or torch.isfinite(out).all()


@pytest.mark.parametrize("backend", ["auto", "math", "naive"])
def test_padded_keys_do_not_change_real_rows(backend):
    """Rows with at least one visible key never read padded keys or values."""
    q, k, v = _qkv(2)
    pad = _padding()
    mask = build_attn_mask(T, T, True, pad)
    out = scaled_dot_product(q, k, v, mask, backend=backend)
    k2, v2 = k.clone(), v.clone()
    k2[pad[:, None, :].expand_as(k[..., 0])] = 100.0
    v2[pad[:, None, :].expand_as(v[..., 0])] = -100.0
    out2 = scaled_dot_product(q, k2, v2, mask, backend=backend)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    has_key = (causal[None] & ~pad[:, None, :]).any(-1)  # (B, Tq)
    assert_close(out2.transpose(1, 2)[has_key], out.transpose(1, 2)[has_key])


def test_build_attn_mask_kinds():
    assert build_attn_mask(T, T, causal=False) is None
    causal = build_attn_mask(T, T, causal=True)
    assert causal.dtype == torch.bool and causal.shape == (1, 1, T, T)
    assert torch.equal(causal[0, 0], torch.ones(T, T, dtype=torch.bool).tril())
    # Queries are the last positions of the keys (decoding with a cache): bottom-right aligned.
    decode = build_attn_mask(2, 5, causal=True)
    assert torch.equal(decode[0, 0], torch.ones(5, 5, dtype=torch.bool).tril()[-2:])
    pad = _padding()
    padded = build_attn_mask(T, T, causal=False, key_padding_mask=pad)
    assert padded.shape == (B, 1, 1, T) and torch.equal(padded[:, 0, 0], ~pad)
    bias = ALiBi(H)(T, T)
    assert torch.equal(build_attn_mask(T, T, causal=False, bias=bias), bias)
    combined = build_attn_mask(T, T, causal=True, key_padding_mask=pad, bias=bias)
    assert combined.dtype == torch.float32 and combined.shape == (B, H, T, T)
    allowed = build_attn_mask(T, T, causal=True, key_padding_mask=pad)
    assert torch.equal(torch.isfinite(combined), allowed.expand(B, H, T, T))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(d_model=16, n_heads=3), r"n_heads \(3\) to divide d_model \(16\)"),
        (dict(d_model=16, n_heads=0), r"n_heads \(0\) to divide d_model \(16\)"),
        (dict(d_model=16, n_heads=4, n_kv_heads=3), r"n_kv_heads \(3\) to divide n_heads"),
        (dict(d_model=16, n_heads=4, n_kv_heads=0), r"n_kv_heads \(0\) to divide n_heads"),
        (dict(d_model=16, n_heads=4, n_kv_heads=8), r"n_kv_heads \(8\) to divide n_heads"),
        (dict(d_model=16, n_heads=4, backend="cudnn"), r"Unknown attention backend 'cudnn'; choose one of"),
        (dict(d_model=16, n_heads=2, head_dim=0), r"SelfAttention head_dim=0 must be >= 1"),
    ],
)
def test_self_attention_user_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SelfAttention(**kwargs)


def test_heads_need_not_span_d_model_when_head_dim_is_set():
    """A model whose heads were pruned keeps their size: 2 heads of 8 in a d_model of 32."""
    torch.manual_seed(0)
    attn = SelfAttention(d_model=32, n_heads=2, n_kv_heads=1, head_dim=8)
    assert attn.q_proj.weight.shape == (16, 32) and attn.kv_proj.weight.shape == (16, 32)
    assert attn.out_proj.weight.shape == (32, 16)
    x = torch.randn(2, 5, 32)
    q = attn.q_proj(x).view(2, 5, 2, 8).transpose(1, 2)
    k, v = attn.kv_proj(x).view(2, 5, 2, 1, 8).permute(2, 0, 3, 1, 4)
    expected = attn.out_proj(naive_attention(q, k, v).transpose(1, 2).reshape(2, 5, 16))
    assert_close(attn(x), expected)


def test_scaled_dot_product_rejects_unknown_backend():
    q, k, v = _qkv(H)
    with pytest.raises(ValueError, match=r"Unknown attention backend 'fast'; choose one of"):
        scaled_dot_product(q, k, v, backend="fast")


@pytest.mark.parametrize("t_q, t_k", [(9, 9), (1, 12), (3, 12)])
@pytest.mark.parametrize("window", [1, 4, 20])
def test_sliding_window_mask_sees_the_last_window_positions(t_q, t_k, window):
    """Query i (absolute position t_k - t_q + i) sees keys j with i - window < j <= i (Mistral)."""
    mask = build_attn_mask(t_q, t_k, causal=True, window=window)[0, 0]
    for i in range(t_q):
        pos = t_k - t_q + i
        expected = [pos - window < j <= pos for j in range(t_k)]
        assert mask[i].tolist() == expected


@pytest.mark.parametrize("n_kv_heads", [4, 2])
def test_compiles_in_one_graph_with_dynamic_shapes(n_kv_heads, seed):
    """Grouped-query attention under torch.compile(dynamic=True), head counts symbolic too (as a
    compiled generate needs for its growing KV cache): a SymBool passed as SDPA's enable_gqa broke
    the graph, and every decode step fell back to eager."""
    import torch._dynamo

    attn = SelfAttention(32, 4, n_kv_heads).eval()
    torch._dynamo.reset()
    with torch._dynamo.config.patch(allow_unspec_int_on_nn_module=True):
        compiled = torch.compile(attn, backend="eager", dynamic=True, fullgraph=True)
        for length in (5, 9):
            x = torch.randn(2, length, 32)
            torch.testing.assert_close(compiled(x, is_causal=True), attn(x, is_causal=True))
