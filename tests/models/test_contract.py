"""Contract tests generated from the registries: every option combination builds, runs forward
and backward, and gives every parameter a finite gradient.

The option lists come from ``nl_lightning.nn`` (``POSITIONS``, ``MLPS``, ``NORMS``, ``POOLINGS``)
and the config's own ``Literal`` choices, so a newly registered option is covered automatically.
The classifier's inner options are looped inside each test (about 2,300 combinations in all):
one pytest item each would cost more in collection than the models cost to run.
"""

from __future__ import annotations

import itertools
import typing

import pytest
import torch
import torch.nn.functional as F

from nl_lightning.models import CausalLM, SequenceClassifier, TransformerConfig
from nl_lightning.nn import MLPS, NORMS, POOLINGS, POSITIONS

N_HEADS = 4
NORM_STYLES = typing.get_args(typing.get_type_hints(TransformerConfig)["norm_style"])
KV_HEADS = (N_HEADS, 2, 1)  # multi-head, grouped-query, multi-query
BACKBONES = list(itertools.product(POSITIONS, MLPS, NORMS, NORM_STYLES))
INPUTS = ("tokens", "features")


def _config(position, mlp, norm, norm_style, n_kv_heads, causal, inputs="tokens", **extra) -> TransformerConfig:
    values = dict(
        vocab_size=32, input_dim=3 if inputs == "features" else None, n_layers=1, d_model=16,
        n_heads=N_HEADS, n_kv_heads=n_kv_heads, mlp_hidden=32, max_seq_len=16, position=position,
        mlp=mlp, norm=norm, norm_style=norm_style, causal=causal,
    )
    return TransformerConfig(**{**values, **extra})


def _check_grads(model: torch.nn.Module, case: str) -> None:
    named = list(model.named_parameters())
    missing = [name for name, param in named if param.grad is None]
    assert not missing, f"[{case}] no gradient for {missing}"
    if not torch.isfinite(torch.cat([param.grad.flatten() for _, param in named])).all():
        bad = [name for name, param in named if not torch.isfinite(param.grad).all()]
        raise AssertionError(f"[{case}] non-finite gradients in {bad}")
    embed = model.transformer.embed.weight  # the input must actually influence the loss
    assert embed.grad.abs().sum() > 0, f"[{case}] the input embedding's gradient is all zero"


def test_registries_are_what_the_config_accepts():
    hints = typing.get_type_hints(TransformerConfig)
    assert set(typing.get_args(hints["position"])) == set(POSITIONS)
    assert set(typing.get_args(hints["mlp"])) == set(MLPS)
    assert set(typing.get_args(hints["norm"])) == set(NORMS)


@pytest.mark.parametrize("n_kv_heads", KV_HEADS, ids=lambda n: f"kv{n}")
@pytest.mark.parametrize("position, mlp, norm, norm_style", BACKBONES)
def test_causal_lm(position, mlp, norm, norm_style, n_kv_heads, seed):
    model = CausalLM(_config(position, mlp, norm, norm_style, n_kv_heads, causal=True))
    idx = torch.randint(0, 32, (2, 7))
    logits = model(idx)
    assert logits.shape == (2, 7, 32) and torch.isfinite(logits).all()
    F.cross_entropy(logits.flatten(0, 1), idx.flatten()).backward()
    _check_grads(model, f"kv={n_kv_heads}")


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("position, mlp, norm, norm_style", BACKBONES)
def test_sequence_classifier(position, mlp, norm, norm_style, causal, seed):
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[1, 5:] = True
    for n_kv_heads, pooling, inputs in itertools.product(KV_HEADS, POOLINGS, INPUTS):
        if causal and pooling in ("cls", "pooler"):
            continue  # refused: see test_causal_cls_pooling_is_refused
        case = f"n_kv_heads={n_kv_heads} pooling={pooling} inputs={inputs}"
        config = _config(position, mlp, norm, norm_style, n_kv_heads, causal, inputs)
        model = SequenceClassifier(config, 3, pooling)
        x = torch.randint(0, 32, (2, 7)) if inputs == "tokens" else torch.randn(2, 7, 3)
        out = model(x, padding)
        assert out.shape == (2, 3) and torch.isfinite(out).all(), case
        F.cross_entropy(out, torch.tensor([0, 2])).backward()
        _check_grads(model, case)


@pytest.mark.parametrize(
    "extra",
    [dict(layer_scale=1e-2), dict(drop_path=0.2), dict(dropout=0.1, attn_dropout=0.1), dict(tie_embeddings=True),
     dict(bias=False), dict(attn_backend="naive"), dict(attn_backend="math"), dict(n_layers=3, drop_path=0.1)],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()),
)
@pytest.mark.parametrize("position", POSITIONS)
def test_optional_features(extra, position, seed):
    model = CausalLM(_config(position, "swiglu", "rmsnorm", "pre", 2, causal=True, **extra)).train()
    idx = torch.randint(0, 32, (4, 7))
    F.cross_entropy(model(idx).flatten(0, 1), idx.flatten()).backward()
    _check_grads(model, str(extra))


def test_drop_path_schedule_reaches_the_blocks():
    model = CausalLM(_config("rope", "gelu", "layernorm", "pre", 4, causal=True, n_layers=3, drop_path=0.2))
    rates = [getattr(block.drop_path, "p", 0.0) for block in model.transformer.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2])


def test_causal_cls_pooling_is_refused():
    """A causal encoder's first position sees only itself: a [CLS] there would ignore the input."""
    with pytest.raises(ValueError, match=r"pooling='cls' needs a bidirectional encoder \(causal=False\)"):
        SequenceClassifier(_config("rope", "gelu", "layernorm", "pre", 4, causal=True), 3, "cls")


@pytest.mark.parametrize("pooling", ["mean", "attention", "gem"])
@pytest.mark.parametrize("position", POSITIONS)
def test_left_padding_under_causal_attention_stays_finite(position, pooling, seed):
    """Left padding leaves padded queries with no visible key; outputs and gradients stay finite."""
    model = SequenceClassifier(_config(position, "gelu", "layernorm", "pre", 2, causal=True), 3, pooling)
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[0, :3] = True
    x = torch.randint(0, 32, (2, 7))
    out = model(x, padding)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([1, 2])).backward()
    _check_grads(model, f"left padding, pooling={pooling}")
    noisy = x.clone()
    noisy[0, :3] = (x[0, :3] + 5) % 32  # padded tokens must not matter
    torch.testing.assert_close(model(noisy, padding), out)
