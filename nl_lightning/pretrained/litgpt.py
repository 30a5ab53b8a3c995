"""LitGPT checkpoint folders (``lit_model.pth`` + ``model_config.yaml``), read without litgpt.

The layout follows LitGPT's own ``litgpt/model.py`` and ``scripts/convert_hf_checkpoint.py``:
since 0.5.5 each block's fused ``attn.qkv`` holds all query heads, then all key heads, then all
value heads (so our q projection is its first rows and our kv projection the rest); before, the
same tensor was ``attn.attn`` with the heads interleaved per query group ([q.., k, v] per group),
which is rearranged here as LitGPT's ``qkv_reassemble`` does. ``LLaMAMLP`` is ``fc_1`` (gate),
``fc_2`` (up), ``proj`` (down); ``GptNeoxMLP`` is ``fc`` and ``proj``. Norms are ``norm_1`` /
``norm_2`` / ``ln_f``; the head ``lm_head`` is stored even when the source model tied it.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from nl_lightning.models.config import TransformerConfig
from nl_lightning.pretrained.errors import refuse
from nl_lightning.pretrained.family import Family, Parts
from nl_lightning.pretrained.fields import ConfigFields
from nl_lightning.pretrained.rules import Rule, same, split

__all__ = ["LITGPT", "LITGPT_FILES", "reassemble_legacy_qkv"]

#: The two files that make a folder a LitGPT checkpoint.
LITGPT_FILES = ("lit_model.pth", "model_config.yaml")
MLPS = {"LLaMAMLP": "swiglu", "GptNeoxMLP": "gelu", "GemmaMLP": "geglu"}
NORMS = {"RMSNorm": "rmsnorm", "LayerNorm": "layernorm"}
#: Config fields whose other values change what LitGPT computes in ways we do not.
PLAIN = {"parallel_residual": False, "rotary_percentage": 1.0, "rope_condense_ratio": 1, "rope_interleave": False,
         "lm_head_bias": False, "norm_qk": False, "post_attention_norm": False, "post_mlp_norm": False,
         "scale_embeddings": False, "attention_logit_softcapping": None, "final_logit_softcapping": None,
         "attention_scores_scalar": None, "n_expert": 0, "latent_attention": None, "norm_1": True, "norm_2": True,
         "rope_local_base_freq": None}


def read_config(cfg: ConfigFields) -> dict[str, Any]:
    """model_config.yaml -> TransformerConfig fields."""
    for key, value in PLAIN.items():
        if cfg.values.get(key, value) != value:
            raise refuse(key, cfg.values[key], f"only {key}={value!r} is supported", cfg.where)
    if "gemma" in str(cfg.get("name", "")).lower():
        raise refuse("name", cfg.get("name"), "Gemma's unit-offset RMSNorm is not supported", cfg.where)
    d, heads = cfg.integer("n_embd"), cfg.integer("n_head")
    if cfg.get("head_size", d // heads) != d // heads:
        raise refuse("head_size", cfg.get("head_size"), f"head_size = n_embd / n_head = {d // heads} is supported", cfg.where)
    mlp = MLPS[cfg.expect("mlp_class_name", MLPS, "GptNeoxMLP", f"dense MLPs {list(MLPS)} are supported")]
    approximate = cfg.expect("gelu_approximate", ("none", "tanh"), "none") if mlp != "swiglu" else "none"
    bias = cfg.flag("bias", True)
    qkv_bias = bias or cfg.flag("attn_bias", False)
    return dict(
        vocab_size=cfg.integer("padded_vocab_size", cfg.get("vocab_size")), n_layers=cfg.integer("n_layer"), d_model=d,
        n_heads=heads, n_kv_heads=cfg.integer("n_query_groups", heads), mlp_hidden=cfg.integer("intermediate_size", 4 * d),
        max_seq_len=cfg.integer("block_size"), position="rope", rope_base=cfg.number("rope_base", 10000.0),
        rope_scaling=_rope_scaling(cfg), mlp=mlp, gelu_approximate=approximate,
        norm=NORMS[cfg.expect("norm_class_name", NORMS, "LayerNorm")], norm_eps=cfg.number("norm_eps", 1e-5),
        norm_style="pre", causal=True, bias=bias, qkv_bias=None if qkv_bias == bias else qkv_bias,
        sliding_window=_sliding_window(cfg), dropout=0.0,
    )


def _rope_scaling(cfg: ConfigFields) -> dict[str, Any] | None:
    adjust = cfg.get("rope_adjustments")
    keys = {"factor", "low_freq_factor", "high_freq_factor", "original_max_seq_len"}
    if adjust is None:
        return None
    if not isinstance(adjust, dict) or set(adjust) != keys:
        raise refuse("rope_adjustments", adjust, f"None or Llama 3.1's {sorted(keys)} are supported", cfg.where)
    return {"type": "llama3", **{k: adjust[k] for k in sorted(keys)}}


def _sliding_window(cfg: ConfigFields) -> int | None:
    size = cfg.get("sliding_window_size")
    if size is None:
        return None
    layers = cfg.get("sliding_window_indices")
    if layers is not None and not all(layers):
        raise refuse("sliding_window_indices", layers, "a sliding window in every layer (or none) is supported", cfg.where)
    return cfg.integer("sliding_window_size")


def rules(config: TransformerConfig, parts: Parts) -> list[Rule]:
    """Tensor names of LitGPT's ``GPT`` (0.5.5+ layout; older files are rearranged on reading)."""
    q, kv = config.n_heads * config.head_dim, 2 * config.n_kv_heads * config.head_dim
    qkv_bias = config.bias if config.qkv_bias is None else config.qkv_bias
    norm_kinds = ("weight", "bias") if config.norm == "layernorm" else ("weight",)
    linear_kinds = ("weight", "bias") if config.bias else ("weight",)
    mlp = (("gate", "fc_1"), ("up", "fc_2"), ("down", "proj")) if config.mlp != "gelu" else (("fc1", "fc"), ("fc2", "proj"))
    found = [same("transformer.embed.weight", "transformer.wte.weight"), same("lm_head.weight", "lm_head.weight")]
    found += [same(f"transformer.norm.{k}", f"transformer.ln_f.{k}") for k in norm_kinds]
    for i in range(config.n_layers):
        ours, theirs = f"transformer.blocks.{i}.", f"transformer.h.{i}."
        for kind in ("weight", "bias") if qkv_bias else ("weight",):
            found.append(split((f"{ours}attn.q_proj.{kind}", f"{ours}attn.kv_proj.{kind}"), f"{theirs}attn.qkv.{kind}", (q, kv)))
        found += [same(f"{ours}attn.out_proj.{k}", f"{theirs}attn.proj.{k}") for k in linear_kinds]
        found += [same(f"{ours}mlp.{mine}.{k}", f"{theirs}mlp.{lit}.{k}") for mine, lit in mlp for k in linear_kinds]
        found += [same(f"{ours}{mine}.{k}", f"{theirs}{lit}.{k}") for mine, lit in (("norm1", "norm_1"), ("norm2", "norm_2"))
                  for k in norm_kinds]
    return found


def reassemble_legacy_qkv(state: dict[str, torch.Tensor], config: TransformerConfig) -> dict[str, torch.Tensor]:
    """LitGPT < 0.5.5 ``attn.attn`` ([q.., k, v] per query group) -> ``attn.qkv`` ([all q, all k, all v])."""
    q_per_kv, hd = config.n_heads // config.n_kv_heads, config.head_dim
    out = {}
    for name, tensor in state.items():
        match = re.fullmatch(r"(transformer\.h\.\d+\.attn)\.attn\.(weight|bias)", name)
        if match is None:
            out[name] = tensor
            continue
        groups = [g.split([q_per_kv * hd, hd, hd]) for g in tensor.chunk(config.n_kv_heads)]
        out[f"{match.group(1)}.qkv.{match.group(2)}"] = torch.cat([torch.cat([g[j] for g in groups]) for j in range(3)])
    return out


#: LitGPT folders (``lit_model.pth`` + ``model_config.yaml``) as a ``TransformerLM``; read only.
LITGPT = Family(name="litgpt", task="lm", architectures=(), read_config=read_config, write_config=None, rules=rules)
