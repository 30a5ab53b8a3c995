"""Multi-head self-attention on ``F.scaled_dot_product_attention`` with grouped-query heads.

The SDPA kernel is chosen by name (``auto`` lets torch pick; ``flash`` / ``efficient`` / ``math``
pin one through ``torch.nn.attention.sdpa_kernel``); ``naive`` runs the textbook math and is the
reference the tests compare against.
"""

from __future__ import annotations

import contextlib
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from nl_lightning.errors import ConfigError, SetupError
from nl_lightning.nn.kv_cache import KVCache
from nl_lightning.nn.rope import apply_rope

AttnBackend = Literal["auto", "flash", "efficient", "math", "naive"]
#: Attention implementations: SDPA with its own choice (``auto``) or a forced kernel, or the written-out ``naive``.
ATTN_BACKENDS: tuple[str, ...] = ("auto", "flash", "efficient", "math", "naive")
_SDPA_BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}


def naive_attention(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False,
    dropout_p: float = 0.0, scale: float | None = None,
) -> Tensor:
    """softmax(q k^T * scale + mask) v, written out. Same mask semantics as SDPA.

    ``q``: (B, H, Tq, D); ``k``/``v``: (B, Hkv, Tk, D) with Hkv dividing H (repeated here).
    A boolean ``attn_mask`` is True where attending is allowed; a float mask is added.
    """
    if k.size(1) != q.size(1):
        k, v = repeat_kv(k, q.size(1) // k.size(1)), repeat_kv(v, q.size(1) // v.size(1))
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, Tq, Tk)
    if is_causal:
        scores = scores.masked_fill(~causal_mask(q.size(-2), k.size(-2), q.device), float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    probs = scores.float().softmax(dim=-1).to(q.dtype)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    return probs @ v


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """(B, Hkv, T, D) -> (B, Hkv * n_rep, T, D): each KV head shared by ``n_rep`` query heads."""
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


def causal_mask(t_q: int, t_k: int, device: torch.device | None = None, window: int | None = None) -> Tensor:
    """Bool (Tq, Tk), True where query i may see key j. Queries are the last ``t_q`` positions.

    ``window`` (sliding-window attention, Mistral): a query sees only the ``window`` most recent
    positions, itself included (key j with i - window < j <= i).
    """
    offset = t_k - t_q
    allowed = torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(diagonal=offset)
    if window is not None and t_k > window:
        allowed = allowed.triu(diagonal=offset - window + 1)
    return allowed


def build_attn_mask(
    t_q: int, t_k: int, causal: bool, key_padding_mask: Tensor | None = None,
    bias: Tensor | None = None, device: torch.device | None = None, dtype: torch.dtype = torch.float32,
    window: int | None = None,
) -> Tensor | None:
    """One SDPA mask from causality (with an optional sliding ``window``), key padding (True = pad,
    as ``nn.MultiheadAttention``) and bias.

    Returns None when nothing masks (so SDPA may use its fastest kernel), a bool mask when only
    masking applies, else a float additive mask. A query row whose keys are all masked (a padded
    position under causality) is left unmasked so softmax stays finite; its output is padding anyway.

    >>> build_attn_mask(3, 3, causal=False) is None
    True
    >>> build_attn_mask(3, 3, causal=True)[0, 0]   # True = may attend
    tensor([[ True, False, False],
            [ True,  True, False],
            [ True,  True,  True]])
    """
    allowed = None
    if causal:
        allowed = causal_mask(t_q, t_k, device, window)[None, None]  # (1, 1, Tq, Tk)
    if key_padding_mask is not None:
        keep = ~key_padding_mask.bool()[:, None, None, :]  # (B, 1, 1, Tk)
        allowed = keep if allowed is None else allowed & keep
    if allowed is not None:
        allowed = allowed | ~allowed.any(dim=-1, keepdim=True)
    if bias is None:
        return allowed
    bias = bias.to(dtype)
    if allowed is None:
        return bias
    return bias.masked_fill(~allowed, float("-inf"))


def scaled_dot_product(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False,
    dropout_p: float = 0.0, backend: str = "auto",
) -> Tensor:
    """Attention through the chosen backend; grouped KV heads are handled by SDPA's ``enable_gqa``."""
    if backend not in ATTN_BACKENDS:
        raise ConfigError(f"Unknown attention backend {backend!r}; choose one of {ATTN_BACKENDS}.")
    if backend == "naive":
        return naive_attention(q, k, v, attn_mask, is_causal, dropout_p)
    # A plain bool, never a SymBool (torch.compile with dynamic shapes) nor a tensor (jit.trace).
    gqa = True if k.size(1) != q.size(1) else False
    ctx = sdpa_kernel(_SDPA_BACKENDS[backend]) if backend in _SDPA_BACKENDS else contextlib.nullcontext()
    try:
        with ctx:
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout_p, enable_gqa=gqa
            )
    except RuntimeError as err:
        # torch says "No viable backend ... turning off both the math kernel and the fused kernels",
        # which hides that the pinned kernel simply does not exist for this device / dtype / mask.
        if backend not in _SDPA_BACKENDS or not any(m in str(err) for m in ("No viable backend", "No available kernel")):
            raise
        raise SetupError(
            f"attn_backend={backend!r}: torch has no {backend} SDPA kernel for these inputs on {q.device.type} "
            f"(dtype {q.dtype}, head_dim {q.size(-1)}, {'a mask' if attn_mask is not None else 'no mask'}; the "
            "memory-efficient kernel is CUDA-only). Set attn_backend to 'auto' (torch picks) or 'math'."
        ) from err


class SelfAttention(nn.Module):
    """Self-attention with ``n_kv_heads`` key/value heads (``n_heads`` = MHA, 1 = MQA, else GQA).

    ``bias`` applies to every projection unless ``qkv_bias`` says otherwise for the query/key/value
    ones (Qwen2: biased q/k/v, unbiased output).
    """

    def __init__(
        self, d_model: int, n_heads: int, n_kv_heads: int | None = None, bias: bool = True,
        attn_dropout: float = 0.0, backend: str = "auto", qkv_bias: bool | None = None,
        head_dim: int | None = None,
    ) -> None:
        """``head_dim`` None = ``d_model // n_heads``; set it when the heads do not span ``d_model``
        (a model whose heads were pruned keeps their size)."""
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        derived = head_dim is None
        if n_heads < 1 or n_kv_heads < 1 or (derived and d_model % n_heads) or n_heads % n_kv_heads:
            raise ConfigError(
                f"SelfAttention needs n_heads ({n_heads}) to divide d_model ({d_model}) and "
                f"n_kv_heads ({n_kv_heads}) to divide n_heads."
            )
        if not derived and head_dim < 1:
            raise ConfigError(f"SelfAttention head_dim={head_dim} must be >= 1 (or None for d_model // n_heads).")
        if backend not in ATTN_BACKENDS:
            raise ConfigError(f"Unknown attention backend {backend!r}; choose one of {ATTN_BACKENDS}.")
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = d_model // n_heads if head_dim is None else head_dim
        qkv_bias = bias if qkv_bias is None else qkv_bias
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=qkv_bias)
        self.kv_proj = nn.Linear(d_model, 2 * n_kv_heads * self.head_dim, bias=qkv_bias)
        self.out_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=bias)
        self.attn_dropout, self.backend = attn_dropout, backend

    def forward(
        self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False,
        rope: tuple[Tensor, Tensor] | None = None, kv_cache: KVCache | None = None,
    ) -> Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k, v = self.kv_proj(x).view(B, T, 2, self.n_kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if kv_cache is not None:
            k, v = kv_cache.update(k, v)  # (B, Hkv, T_past + T, D)
        dropout_p = self.attn_dropout if self.training else 0.0
        y = scaled_dot_product(q, k, v, attn_mask, is_causal, dropout_p, self.backend)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, -1))
