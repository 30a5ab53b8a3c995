"""onnxscript rewrite rules for the graphs ``torch.onnx.export(dynamo=True)`` writes of our blocks.

Used by :func:`nl_lightning.export.fusion.fuse_onnx`; each rule's ``check`` refuses anything it
cannot prove equivalent (a non-causal mask, a RoPE table not starting at position 0, a partial
rotation), so an unmatched graph keeps its plain ops rather than computing something else.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

__all__ = ["gqa_rules", "rms_norm_rules"]

_Match = pattern.MatchResult


def _const(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant content (initializer or folded constant), else None."""
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def _scalar(value: ir.Value | None) -> float | int | None:
    array = _const(value)
    return array.reshape(-1)[0].item() if array is not None and array.size == 1 else None


def _node(value: ir.Value | None, op_type: str) -> ir.Node | None:
    """The node producing ``value`` if it is an ``op_type``."""
    node = value.producer() if value is not None else None
    return node if node is not None and node.op_type == op_type else None


def _attr(node: ir.Node, name: str, default: Any = None) -> Any:
    attribute = node.attributes.get(name)
    return default if attribute is None else attribute.value


class RmsNormLastAxis(pattern.RewriteRuleClassBase):
    """``x * 1/sqrt(mean(x^2, axis=last) + eps) * weight`` -> ``SimplifiedLayerNormalization``.

    ``nn.RMSNorm`` exports its reduction axis as a positive index (2 for (B, T, C)); the stock
    onnxscript rule matches only ``-1``.
    """

    def pattern(self, op, x, axes, epsilon, scale):
        mean_square = op.ReduceMean(op.Pow(x, 2.0), axes, keepdims=1, _allow_other_attributes=True)
        normalized = op.Mul(x, op.Reciprocal(op.Sqrt(op.Add(mean_square, epsilon))))
        return op.Mul(normalized, scale)

    def check(self, context, x, axes, epsilon, scale, **_) -> _Match:
        result = _Match()
        rank = x.shape.rank() if x.shape is not None else None
        axis = _const(axes)
        if rank is None or axis is None or axis.size != 1 or int(axis.reshape(-1)[0]) not in (-1, rank - 1):
            return result.fail("The reduction is not over the last axis.", axes)
        if not isinstance(_scalar(epsilon), float):
            return result.fail("Epsilon is not a float constant.", epsilon)
        if x.dtype != ir.DataType.FLOAT or scale.shape is None or scale.shape.rank() != 1:
            return result.fail("Not an fp32 input with a 1-D weight.", x)
        return result

    def rewrite(self, op, x, epsilon, scale, **_):
        return op.SimplifiedLayerNormalization(
            x, scale, axis=-1, epsilon=float(_scalar(epsilon)), stash_type=ir.DataType.FLOAT.value
        )


def _rope(op, x, cos, sin, name: str):
    """``apply_rope``'s half-split rotation as exported: Split, four Mul, Sub, Add, Concat."""
    x1, x2 = op.Split(x, _outputs=[f"{name}1", f"{name}2"], _allow_other_attributes=True)
    return op.Concat(op.Sub(op.Mul(x1, cos), op.Mul(x2, sin)), op.Add(op.Mul(x1, sin), op.Mul(x2, cos)), axis=-1)


def _repeat_kv(op, x):
    """``x`` itself (MHA) or ``x`` repeated over the query heads of its group (GQA)."""
    repeated = op.Reshape(op.Expand(op.Unsqueeze(x, pattern.ANY_VALUE), pattern.ANY_VALUE), pattern.ANY_VALUE,
                          _allow_other_attributes=True)
    return pattern.OrValue([repeated, x])


class CausalRopeAttention(pattern.RewriteRuleClassBase):
    """``SelfAttention`` with RoPE and a causal mask -> one ``GroupQueryAttention`` (``do_rotary=1``).

    Matches from the q / packed kv projections (B, S, H*D), (B, S, 2*Hkv*D) to the attention
    output reshaped back to (B, S, H*D), after onnxscript's SDPA fusion has replaced the
    scores / softmax / weighted sum by one ``SDPA`` node. Positions start at 0 (no KV cache),
    which is what the GQA kernel assumes for a first prompt.
    """

    def __init__(self) -> None:
        super().__init__("CausalRopeAttention", remove_nodes=False)  # shapes of inner values feed the mask; DCE later

    def pattern(self, op, q_lin, kv_lin, cos, sin, mask, kv_start, kv_end, kv_axes, v_start, v_end, v_axes):
        q = op.Transpose(op.Reshape(q_lin, pattern.ANY_VALUE, _allow_other_attributes=True), perm=[0, 2, 1, 3],
                         _outputs=["q"])
        kv = op.Transpose(op.Reshape(kv_lin, pattern.ANY_VALUE, _allow_other_attributes=True),
                          perm=[2, 0, 3, 1, 4], _outputs=["kv"])
        k = op.Squeeze(op.Slice(kv, kv_start, kv_end, kv_axes), pattern.ANY_VALUE)
        v = op.Squeeze(op.Slice(kv, v_start, v_end, v_axes), pattern.ANY_VALUE)
        q_rot, k_rot = _rope(op, q, cos, sin, "q"), _rope(op, k, cos, sin, "k")
        attn = op.SDPA(q_rot, _repeat_kv(op, k_rot), _repeat_kv(op, v), mask, _domain="ai.onnxruntime._fusion",
                       _allow_other_attributes=True, _outputs=["attn"])
        return op.Reshape(op.Transpose(attn, perm=[0, 2, 1, 3]), pattern.ANY_VALUE, _allow_other_attributes=True)

    def check(self, context, q_lin, q, kv, cos, sin, mask, attn, kv_start, kv_end, kv_axes, v_start, v_end,
              v_axes, q1, k1, **_) -> _Match:
        result = _Match()
        if q.shape is None or kv.shape is None or q.shape.rank() != 4 or kv.shape.rank() != 5:
            return result.fail("Unknown query / key-value shapes.", q)
        heads, head_dim, kv_heads = q.shape[1], q.shape[3], kv.shape[2]
        if not all(isinstance(d, int) for d in (heads, head_dim, kv_heads)) or kv.shape[0] != 2:
            return result.fail("Head counts or head size are not static.", q)
        if head_dim % 16:  # ORT's CPU kernel: "head_size shall be a multiple of 16"
            return result.fail(f"GroupQueryAttention needs a head size that is a multiple of 16, not {head_dim}.", q)
        if [_scalar(kv_start), _scalar(kv_end), _scalar(v_start), _scalar(v_end)] != [0, 1, 1, 2] or any(
                _scalar(a) not in (0, -5) for a in (kv_axes, v_axes)):
            return result.fail("The packed key / value are not split as k = kv[0], v = kv[1].", kv)
        for half in (q1, k1):
            split = half.producer()
            if _attr(split, "axis") not in (-1, 3) or len(split.outputs) != 2 or len(split.inputs) != 1:
                return result.fail("The rotation does not split the head dimension in halves.", half)
        tables = [_rope_table(t, head_dim) for t in (cos, sin)]
        if any(t is None for t in tables):
            return result.fail("The RoPE tables are not constant tables starting at position 0.", cos)
        if not _is_causal(mask):
            return result.fail("The mask is not a plain causal mask.", mask)
        scale = _attr(attn.producer(), "scale")
        self._fused = dict(heads=heads, kv_heads=kv_heads, scale=scale, cos=tables[0], sin=tables[1])
        return result

    def rewrite(self, op, q_lin, kv_lin, **_):
        f = self._fused
        k_lin, v_lin = op.Split(kv_lin, axis=-1, num_outputs=2, _outputs=2)
        seq = op.Shape(q_lin, start=1, end=2)
        total = op.Cast(op.Squeeze(seq), to=ir.DataType.INT32)
        seqlens = op.Cast(op.Expand(op.Sub(seq, op.Constant(value_ints=[1])), op.Shape(q_lin, start=0, end=1)),
                          to=ir.DataType.INT32)
        attrs = dict(num_heads=f["heads"], kv_num_heads=f["kv_heads"], do_rotary=1, rotary_interleaved=0)
        if f["scale"] is not None:
            attrs["scale"] = float(f["scale"])
        # Only the attention output: asking for present_key / present_value (a KV cache nobody reads)
        # makes ORT's CPU kernel 2-3x slower (measured: 0.21 vs 0.60 ms per layer at batch 1).
        return op.GroupQueryAttention(
            q_lin, k_lin, v_lin, None, None, seqlens, total, f["cos"], f["sin"], _domain="com.microsoft", **attrs,
        )


def _rope_table(value: ir.Value, head_dim: int) -> ir.Value | None:
    """The full (max_seq, head_dim / 2) table that ``value`` slices from position 0, else None."""
    node = _node(value, "Slice")
    if node is None or len(node.inputs) < 3:
        return None
    table = node.inputs[0]
    axes = _scalar(node.inputs[3]) if len(node.inputs) > 3 else 0
    steps = _scalar(node.inputs[4]) if len(node.inputs) > 4 and node.inputs[4] is not None else 1
    shape = table.shape if table is not None else None
    if table is None or table.const_value is None or shape is None or shape.rank() != 2:
        return None
    if _scalar(node.inputs[1]) != 0 or axes not in (0, -2) or steps != 1 or shape[1] * 2 != head_dim:
        return None
    return table


def _is_causal(mask: ir.Value) -> bool:
    """``Where(Trilu(ones) == 0, -big, 0)``: the additive causal mask SDPA's ``is_causal`` exports as."""
    where = _node(mask, "Where")
    equal = _node(where.inputs[0], "Equal") if where is not None else None
    trilu = _node(equal.inputs[0], "Trilu") if equal is not None else None
    if trilu is None or _attr(trilu, "upper", 1) != 0 or (len(trilu.inputs) > 1 and trilu.inputs[1] is not None):
        return False
    expand = _node(trilu.inputs[0], "Expand")
    if expand is None or _scalar(expand.inputs[0]) != 1.0 or _scalar(equal.inputs[1]) != 0.0:
        return False
    low, zero = _scalar(where.inputs[1]), _scalar(where.inputs[2])
    return low is not None and zero == 0.0 and (low <= -1e30 or math.isinf(low))


def rms_norm_rules() -> pattern.RewriteRuleSet:
    """RMSNorm over the last axis, written with a positive axis index."""
    return pattern.RewriteRuleSet([RmsNormLastAxis.rule()])


def gqa_rules() -> pattern.RewriteRuleSet:
    """Causal RoPE self-attention (MHA or grouped KV heads) -> ``GroupQueryAttention``."""
    return pattern.RewriteRuleSet([CausalRopeAttention.rule()])
