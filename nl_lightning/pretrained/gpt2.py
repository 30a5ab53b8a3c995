"""GPT-2 checkpoints: pre-norm decoder with LayerNorm, learned positions, a GELU MLP (tanh
approximation, ``gelu_new``), biases everywhere, and ``Conv1D`` weights stored (in, out) — so each
one is transposed, and the fused ``c_attn`` is split into our q and kv projections."""

from __future__ import annotations

from typing import Any

from nl_lightning.models.config import TransformerConfig
from nl_lightning.pretrained.errors import PretrainedError
from nl_lightning.pretrained.family import Family, Parts
from nl_lightning.pretrained.fields import ConfigFields
from nl_lightning.pretrained.rules import Rule, same, split, transposed

__all__ = ["GPT2"]

#: transformers' activation names -> our ``gelu_approximate``.
ACTIVATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh", "gelu": "none"}


def read_config(cfg: ConfigFields) -> dict[str, Any]:
    """config.json of a GPT-2 -> TransformerConfig fields."""
    act = cfg.expect("activation_function", ACTIVATIONS, "gelu_new", f"GELU variants {list(ACTIVATIONS)} are supported")
    for key, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False), ("add_cross_attention", False)):
        cfg.expect(key, (ok,), ok, f"only {key}={ok} is supported")
    d = cfg.integer("n_embd")
    return dict(
        vocab_size=cfg.integer("vocab_size"), n_layers=cfg.integer("n_layer"), d_model=d, n_heads=cfg.integer("n_head"),
        mlp_hidden=cfg.integer("n_inner", 4 * d), max_seq_len=cfg.integer("n_positions", cfg.get("n_ctx", 1024)),
        position="learned", mlp="gelu", gelu_approximate=ACTIVATIONS[act], norm="layernorm",
        norm_eps=cfg.number("layer_norm_epsilon", 1e-5), norm_style="pre", causal=True, bias=True,
        dropout=cfg.number("resid_pdrop", 0.1), attn_dropout=cfg.number("attn_pdrop", 0.1),
        tie_embeddings=cfg.flag("tie_word_embeddings", True),
    )


def write_config(config: TransformerConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """TransformerConfig -> config.json of a GPT2LMHeadModel, if GPT-2 computes this model."""
    wanted = dict(position="learned", norm="layernorm", mlp="gelu", norm_style="pre", causal=True, input_dim=None,
                  layer_scale=None, type_vocab_size=0, embed_norm=False, sliding_window=None, bias=True,
                  n_kv_heads=config.n_heads)
    have = vars(config)
    differ = {k: have[k] for k, v in wanted.items() if have[k] != v}
    differ.update({k: have[k] for k in ("qkv_bias", "mlp_bias") if have[k] is False})
    if differ:
        raise PretrainedError(f"GPT-2 needs {wanted} (biases everywhere); this model has {differ}.")
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": config.vocab_size,
        "n_embd": config.d_model, "n_layer": config.n_layers, "n_head": config.n_heads,
        "n_inner": config.mlp_hidden or 4 * config.d_model, "n_positions": config.max_seq_len,
        "activation_function": "gelu_new" if config.gelu_approximate == "tanh" else "gelu",
        "layer_norm_epsilon": config.norm_eps, "resid_pdrop": config.dropout, "embd_pdrop": config.dropout,
        "attn_pdrop": config.attn_dropout, "tie_word_embeddings": config.tie_embeddings,
        "scale_attn_weights": True, **extra,
    }


def rules(config: TransformerConfig, parts: Parts) -> list[Rule]:
    """Tensor names of GPT2LMHeadModel."""
    d = config.d_model
    found = [same("transformer.embed.weight", "transformer.wte.weight"),
             same("transformer.pos_emb.weight", "transformer.wpe.weight")]
    for i in range(config.n_layers):
        ours, theirs = f"transformer.blocks.{i}.", f"transformer.h.{i}."
        found += [split((ours + "attn.q_proj.weight", ours + "attn.kv_proj.weight"), theirs + "attn.c_attn.weight",
                        (d, 2 * d), conv1d=True),
                  split((ours + "attn.q_proj.bias", ours + "attn.kv_proj.bias"), theirs + "attn.c_attn.bias", (d, 2 * d))]
        for mine, hf in (("attn.out_proj", "attn.c_proj"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
            found += [transposed(f"{ours}{mine}.weight", f"{theirs}{hf}.weight"), same(f"{ours}{mine}.bias", f"{theirs}{hf}.bias")]
        for mine, hf in (("norm1", "ln_1"), ("norm2", "ln_2")):
            found += [same(f"{ours}{mine}.{kind}", f"{theirs}{hf}.{kind}") for kind in ("weight", "bias")]
    found += [same(f"transformer.norm.{kind}", f"transformer.ln_f.{kind}") for kind in ("weight", "bias")]
    if not config.tie_embeddings:
        found.append(same("lm_head.weight", "lm_head.weight"))
    return found


def _canonical(name: str) -> str:
    """Checkpoints saved from ``GPT2Model`` (as OpenAI's own) lack the ``transformer.`` prefix."""
    return name if name.startswith(("transformer.", "lm_head.")) else f"transformer.{name}"


def _unused(name: str, config: TransformerConfig, parts: Parts) -> str | None:
    """The causal-mask buffers older versions saved, and a tied head's copy of the embedding."""
    buffer = name.endswith((".attn.bias", ".attn.masked_bias"))
    return "" if buffer or (config.tie_embeddings and name == "lm_head.weight") else None


#: GPT-2 folders (``model_type: gpt2``) as a ``TransformerLM``, read and written.
GPT2 = Family(
    name="gpt2", task="lm", architectures=("GPT2LMHeadModel", "GPT2Model"), read_config=read_config,
    write_config=write_config, rules=rules, canonical=_canonical, unused=_unused,
)
