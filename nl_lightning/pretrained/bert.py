"""BERT checkpoints as a classifier's encoder: post-norm blocks with LayerNorm (eps from the config),
learned positions and token-type embeddings summed with the tokens, a LayerNorm on the embeddings,
a GELU MLP, and the pooler (tanh of a Linear on the [CLS] state) feeding the classification head."""

from __future__ import annotations

from typing import Any

from nl_lightning.models.config import TransformerConfig
from nl_lightning.pretrained.errors import PretrainedError
from nl_lightning.pretrained.family import Family, Parts
from nl_lightning.pretrained.fields import ConfigFields
from nl_lightning.pretrained.gpt2 import ACTIVATIONS
from nl_lightning.pretrained.rules import Rule, joined, same

__all__ = ["BERT"]

#: Heads of other BERT tasks a folder may hold; a classifier does not use them.
OTHER_HEADS = ("cls.",)


def read_config(cfg: ConfigFields) -> dict[str, Any]:
    """config.json of a BERT -> TransformerConfig fields of a bidirectional encoder."""
    act = cfg.expect("hidden_act", ACTIVATIONS, "gelu", f"GELU variants {list(ACTIVATIONS)} are supported")
    cfg.expect("position_embedding_type", ("absolute",), "absolute", "learned absolute positions are supported")
    for key in ("is_decoder", "add_cross_attention"):
        cfg.expect(key, (False,), False, f"BERT as an encoder ({key}=false) is supported")
    return dict(
        vocab_size=cfg.integer("vocab_size"), n_layers=cfg.integer("num_hidden_layers"), d_model=cfg.integer("hidden_size"),
        n_heads=cfg.integer("num_attention_heads"), mlp_hidden=cfg.integer("intermediate_size"),
        max_seq_len=cfg.integer("max_position_embeddings", 512), position="learned", mlp="gelu",
        gelu_approximate=ACTIVATIONS[act], norm="layernorm", norm_eps=cfg.number("layer_norm_eps", 1e-12),
        norm_style="post", causal=False, bias=True, embed_norm=True, type_vocab_size=cfg.integer("type_vocab_size", 2),
        dropout=cfg.number("hidden_dropout_prob", 0.1), attn_dropout=cfg.number("attention_probs_dropout_prob", 0.1),
    )


def write_config(config: TransformerConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """TransformerConfig (+ the head's ``num_labels`` / ``problem_type`` in ``extra``) -> config.json
    of a BertForSequenceClassification."""
    wanted = dict(position="learned", norm="layernorm", mlp="gelu", norm_style="post", causal=False, input_dim=None,
                  layer_scale=None, embed_norm=True, sliding_window=None, bias=True, n_kv_heads=config.n_heads)
    differ = {k: getattr(config, k) for k, v in wanted.items() if getattr(config, k) != v}
    differ.update({k: getattr(config, k) for k in ("qkv_bias", "mlp_bias") if getattr(config, k) is False})
    if config.type_vocab_size < 1:
        differ["type_vocab_size"] = config.type_vocab_size
    if differ:
        raise PretrainedError(f"BERT needs {wanted} and type_vocab_size >= 1; this model has {differ}.")
    return {
        "architectures": ["BertForSequenceClassification"], "model_type": "bert", "vocab_size": config.vocab_size,
        "hidden_size": config.d_model, "num_hidden_layers": config.n_layers, "num_attention_heads": config.n_heads,
        "intermediate_size": config.mlp_hidden or 4 * config.d_model,
        "hidden_act": "gelu_new" if config.gelu_approximate == "tanh" else "gelu",
        "max_position_embeddings": config.max_seq_len, "type_vocab_size": config.type_vocab_size,
        "layer_norm_eps": config.norm_eps, "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.attn_dropout, "position_embedding_type": "absolute", **extra,
    }


def rules(config: TransformerConfig, parts: Parts) -> list[Rule]:
    """Tensor names of BertForSequenceClassification (``bert.`` + BertModel's, ``classifier.``)."""
    d, emb = config.d_model, "bert.embeddings."
    found = [same("transformer.embed.weight", emb + "word_embeddings.weight"),
             same("transformer.pos_emb.weight", emb + "position_embeddings.weight")]
    if config.type_vocab_size:
        found.append(same("transformer.type_emb.weight", emb + "token_type_embeddings.weight"))
    found += _pair("transformer.embed_norm", emb + "LayerNorm")
    for i in range(config.n_layers):
        ours, theirs = f"transformer.blocks.{i}.", f"bert.encoder.layer.{i}."
        att = theirs + "attention."
        found += [joined(f"{ours}attn.kv_proj.{kind}", (f"{att}self.key.{kind}", f"{att}self.value.{kind}"), (d, d))
                  for kind in ("weight", "bias")]
        for mine, hf in (("attn.q_proj", "attention.self.query"), ("attn.out_proj", "attention.output.dense"),
                         ("norm1", "attention.output.LayerNorm"), ("mlp.fc1", "intermediate.dense"),
                         ("mlp.fc2", "output.dense"), ("norm2", "output.LayerNorm")):
            found += _pair(ours + mine, theirs + hf)
    if parts.pooler:
        found += _pair("pool.dense", "bert.pooler.dense")
    if parts.head:
        found += _pair("head", "classifier")
    return found


def _pair(ours: str, theirs: str) -> list[Rule]:
    return [same(f"{ours}.{kind}", f"{theirs}.{kind}") for kind in ("weight", "bias")]


def _canonical(name: str) -> str:
    """``BertModel`` saves without the ``bert.`` prefix; old checkpoints name LayerNorm gamma/beta."""
    if name.startswith(("embeddings.", "encoder.", "pooler.")):
        name = f"bert.{name}"
    if ".LayerNorm." in name:
        name = name.replace(".LayerNorm.gamma", ".LayerNorm.weight").replace(".LayerNorm.beta", ".LayerNorm.bias")
    return name


def _unused(name: str, config: TransformerConfig, parts: Parts) -> str | None:
    """Position-id buffers some versions saved (silently); the pooler, a classification head or a
    pretraining head the classifier does not take (with the reason)."""
    if name == "bert.embeddings.position_ids":
        return ""
    if name.startswith("bert.pooler.") and not parts.pooler:
        return "BERT's pooler (used only with pooling='pooler')"
    if name.startswith("classifier.") and not parts.head:
        return "the folder's classification head (it does not fit this task's num_classes / task)"
    if name.startswith(OTHER_HEADS):
        return "a masked-LM / next-sentence head (a classifier does not use it)"
    return None


#: BERT folders (``model_type: bert``): the encoder of a ``TransformerClassifier``, read and written.
BERT = Family(
    name="bert", task="classifier",
    architectures=("BertModel", "BertForSequenceClassification", "BertForMaskedLM", "BertForPreTraining"),
    read_config=read_config, write_config=write_config, rules=rules, canonical=_canonical, unused=_unused,
)
