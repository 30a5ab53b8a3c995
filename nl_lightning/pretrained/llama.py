"""Llama 2/3, Mistral and Qwen2 checkpoints: pre-norm decoders with RMSNorm, SwiGLU, RoPE (half-split
layout, as our ``apply_rope``) and grouped-query attention. They differ only in biases (Llama's
``attention_bias`` / ``mlp_bias``; Qwen2's biased q/k/v and unbiased output) and Mistral's sliding window.
"""

from __future__ import annotations

from typing import Any

from nl_lightning.models.config import TransformerConfig
from nl_lightning.nn.mlp import default_hidden
from nl_lightning.pretrained.errors import PretrainedError, refuse
from nl_lightning.pretrained.family import Family, Parts
from nl_lightning.pretrained.fields import ConfigFields
from nl_lightning.pretrained.rules import Rule, joined, same

__all__ = ["LLAMA"]

ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}


def read_config(cfg: ConfigFields) -> dict[str, Any]:
    """config.json of a Llama / Mistral / Qwen2 -> TransformerConfig fields."""
    model_type = cfg.require("model_type")
    d, heads = cfg.integer("hidden_size"), cfg.integer("num_attention_heads")
    if cfg.get("head_dim", d // heads) != d // heads:
        raise refuse("head_dim", cfg.get("head_dim"), f"head_dim = hidden_size / num_attention_heads ({d // heads} "
                     "here) is supported", cfg.where)
    cfg.expect("hidden_act", ("silu",), "silu", "the SwiGLU MLP (hidden_act='silu') is supported")
    cfg.expect("pretraining_tp", (1,), 1, "pretraining_tp=1 is supported")
    for moe in ("num_local_experts", "num_experts"):
        if cfg.get(moe):
            raise refuse(moe, cfg.get(moe), "mixture-of-experts MLPs are not supported (dense only)", cfg.where)
    max_seq_len = cfg.integer("max_position_embeddings", 4096)
    theta, scaling = cfg.rope(max_seq_len)
    return dict(
        vocab_size=cfg.integer("vocab_size"), n_layers=cfg.integer("num_hidden_layers"), d_model=d, n_heads=heads,
        n_kv_heads=cfg.integer("num_key_value_heads", heads), mlp_hidden=cfg.integer("intermediate_size"),
        max_seq_len=max_seq_len, position="rope", rope_base=theta, rope_scaling=scaling, mlp="swiglu",
        norm="rmsnorm", norm_eps=cfg.number("rms_norm_eps", 1e-6), norm_style="pre", causal=True,
        attn_dropout=cfg.number("attention_dropout", 0.0), dropout=0.0,
        tie_embeddings=cfg.flag("tie_word_embeddings", False), **_variant(cfg, model_type),
    )


def _variant(cfg: ConfigFields, model_type: str) -> dict[str, Any]:
    """Biases and sliding window, by model type."""
    if model_type == "qwen2":
        if cfg.flag("use_sliding_window", False):
            raise refuse("use_sliding_window", True, "Qwen2 with full attention in every layer is supported", cfg.where)
        _full_attention_only(cfg)
        return dict(bias=False, qkv_bias=True)
    if model_type == "mistral":
        window = cfg.get("sliding_window")
        return dict(bias=False, sliding_window=None if window is None else cfg.integer("sliding_window"))
    _full_attention_only(cfg)
    return dict(bias=cfg.flag("attention_bias", False), mlp_bias=cfg.flag("mlp_bias", False))


def _full_attention_only(cfg: ConfigFields) -> None:
    kinds = sorted(set(cfg.get("layer_types", [])) - {"full_attention"})
    if kinds:
        raise refuse("layer_types", kinds, "only 'full_attention' layers are supported", cfg.where)


def write_config(config: TransformerConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """TransformerConfig -> config.json of the one of Llama / Mistral / Qwen2 that computes it
    (5.x keys, plus 4.x's ``rope_theta`` / ``rope_scaling`` / ``torch_dtype`` for older readers)."""
    _check_shape(config)
    model_type = _model_type(config)
    out: dict[str, Any] = {
        "architectures": [ARCHITECTURES[model_type]], "model_type": model_type, "vocab_size": config.vocab_size,
        "hidden_size": config.d_model, "intermediate_size": config.mlp_hidden or default_hidden("swiglu", config.d_model),
        "num_hidden_layers": config.n_layers, "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads, "head_dim": config.head_dim, "hidden_act": "silu",
        "max_position_embeddings": config.max_seq_len, "rms_norm_eps": config.norm_eps,
        "attention_dropout": config.attn_dropout, "tie_word_embeddings": config.tie_embeddings,
        **rope_keys(config), **extra,
    }
    if model_type == "llama":
        out.update(attention_bias=config.bias, mlp_bias=_mlp_bias(config))
    elif model_type == "mistral":
        out.update(sliding_window=config.sliding_window)
    else:
        out.update(use_sliding_window=False, sliding_window=None, max_window_layers=config.n_layers,
                   layer_types=["full_attention"] * config.n_layers)
    return out


def rope_keys(config: TransformerConfig) -> dict[str, Any]:
    """RoPE settings as transformers 5.x (``rope_parameters``) and 4.x (``rope_theta``, ``rope_scaling``) read them."""
    scaling = dict(config.rope_scaling or {"type": "default"})
    kind = scaling.pop("type")
    if "original_max_seq_len" in scaling:
        scaling["original_max_position_embeddings"] = scaling.pop("original_max_seq_len")
    return {
        "rope_parameters": {"rope_type": kind, "rope_theta": config.rope_base, **scaling},
        "rope_theta": config.rope_base,
        "rope_scaling": None if kind == "default" else {"rope_type": kind, **scaling},
    }


def _check_shape(config: TransformerConfig) -> None:
    wanted = dict(position="rope", norm="rmsnorm", mlp="swiglu", norm_style="pre", causal=True, input_dim=None,
                  layer_scale=None, type_vocab_size=0, embed_norm=False)
    differ = {k: getattr(config, k) for k, v in wanted.items() if getattr(config, k) != v}
    if differ:
        raise PretrainedError(f"Llama/Mistral/Qwen2 need {wanted}; this model has {differ}.")


def _mlp_bias(config: TransformerConfig) -> bool:
    return config.bias if config.mlp_bias is None else config.mlp_bias


def _model_type(config: TransformerConfig) -> str:
    qkv = config.bias if config.qkv_bias is None else config.qkv_bias
    out, mlp = config.bias, _mlp_bias(config)
    if config.sliding_window is not None:
        if qkv or out or mlp:
            raise PretrainedError(
                f"sliding_window={config.sliding_window} is Mistral's, which has no biases; this model has qkv_bias="
                f"{qkv}, bias={out}, mlp_bias={mlp}. Set sliding_window=None or train without biases."
            )
        return "mistral"
    if qkv and not out and not mlp:
        return "qwen2"
    if qkv != out:
        raise PretrainedError(
            f"qkv_bias={qkv} with an output-projection bias={out} and mlp_bias={mlp}: Llama biases q/k/v and output "
            "together (attention_bias), Qwen2 biases only q/k/v (no MLP bias). Make the biases match one of them."
        )
    return "llama"


def rules(config: TransformerConfig, parts: Parts) -> list[Rule]:
    """Tensor names of LlamaForCausalLM (Mistral and Qwen2 use the same names)."""
    kv = config.n_kv_heads * config.head_dim
    qkv_bias = config.bias if config.qkv_bias is None else config.qkv_bias
    found = [same("transformer.embed.weight", "model.embed_tokens.weight")]
    for i in range(config.n_layers):
        ours, theirs = f"transformer.blocks.{i}.", f"model.layers.{i}."
        att = theirs + "self_attn."
        found += [same(ours + "norm1.weight", theirs + "input_layernorm.weight"),
                  same(ours + "norm2.weight", theirs + "post_attention_layernorm.weight")]
        for kind in ("weight", "bias") if qkv_bias else ("weight",):
            found += [same(f"{ours}attn.q_proj.{kind}", f"{att}q_proj.{kind}"),
                      joined(f"{ours}attn.kv_proj.{kind}", (f"{att}k_proj.{kind}", f"{att}v_proj.{kind}"), (kv, kv))]
        found += _linear(ours + "attn.out_proj", att + "o_proj", config.bias)
        for mine, hf in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
            found += _linear(f"{ours}mlp.{mine}", f"{theirs}mlp.{hf}", _mlp_bias(config))
    found.append(same("transformer.norm.weight", "model.norm.weight"))
    if not config.tie_embeddings:
        found.append(same("lm_head.weight", "lm_head.weight"))
    return found


def _linear(ours: str, theirs: str, bias: bool) -> list[Rule]:
    kinds = ("weight", "bias") if bias else ("weight",)
    return [same(f"{ours}.{kind}", f"{theirs}.{kind}") for kind in kinds]


def _canonical(name: str) -> str:
    """A bare ``LlamaModel``'s names lack the ``model.`` prefix."""
    return name if name.startswith(("model.", "lm_head.")) else f"model.{name}"


def _unused(name: str, config: TransformerConfig, parts: Parts) -> str | None:
    """RoPE tables some checkpoints saved, and a tied head's copy of the embedding."""
    return "" if name.endswith(".rotary_emb.inv_freq") or (config.tie_embeddings and name == "lm_head.weight") else None


#: Llama-like folders (Llama 2/3, Mistral, Qwen2) as a ``TransformerLM``, read and written.
LLAMA = Family(
    name="llama", task="lm", architectures=tuple(ARCHITECTURES.values()), read_config=read_config,
    write_config=write_config, rules=rules, canonical=_canonical, unused=_unused,
)
