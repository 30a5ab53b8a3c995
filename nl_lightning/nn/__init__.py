"""Pure-torch transformer building blocks (no lightning import)."""

from nl_lightning.nn.alibi import ALiBi, alibi_bias, alibi_slopes
from nl_lightning.nn.attention import (
    ATTN_BACKENDS,
    SelfAttention,
    build_attn_mask,
    naive_attention,
    repeat_kv,
    scaled_dot_product,
)
from nl_lightning.nn.block import TransformerBlock
from nl_lightning.nn.drop import DropPath, drop_path, drop_path_schedule
from nl_lightning.nn.kv_cache import KVCache, RaggedKVCache
from nl_lightning.nn.layer_scale import LayerScale
from nl_lightning.nn.lora import LoRALinear
from nl_lightning.nn.mlp import MLPS, GluMlp, Mlp, build_mlp
from nl_lightning.nn.norm import NORMS, build_norm
from nl_lightning.nn.normalize import FeatureNorm
from nl_lightning.nn.pooling import POOLINGS, AttentionPool, ClsPool, FirstTokenPooler, GeMPool, MeanPool, build_pooling
from nl_lightning.nn.position import POSITIONS, LearnedPositionalEmbedding
from nl_lightning.nn.rope import RotaryEmbedding, apply_rope, rope_cache
from nl_lightning.nn.rope_scaling import ROPE_SCALINGS, scale_inv_freq, validate_rope_scaling

__all__ = [
    "ALiBi", "ATTN_BACKENDS", "AttentionPool", "ClsPool", "DropPath", "FeatureNorm", "FirstTokenPooler", "GeMPool",
    "GluMlp", "KVCache", "LayerScale", "LearnedPositionalEmbedding", "LoRALinear", "MLPS", "MeanPool", "Mlp", "NORMS",
    "POOLINGS", "POSITIONS", "ROPE_SCALINGS", "RaggedKVCache", "RotaryEmbedding", "SelfAttention", "TransformerBlock",
    "alibi_bias", "alibi_slopes", "apply_rope", "build_attn_mask", "build_mlp", "build_norm", "build_pooling", "drop_path",
    "drop_path_schedule", "naive_attention", "repeat_kv", "rope_cache", "scale_inv_freq",
    "scaled_dot_product", "validate_rope_scaling",
]
