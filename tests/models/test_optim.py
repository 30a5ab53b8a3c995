"""Weight-decay groups by parameter identity, each scheduler's LR curve, optimizer settings."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from nl_lightning.models import CausalLM, OptimizerConfig, SchedulerConfig, SequenceClassifier, build_optimizer
from nl_lightning.models import build_scheduler, param_groups
from nl_lightning.models.optim import SCHEDULERS
from nl_lightning.nn import AttentionPool, GeMPool, LayerScale, LearnedPositionalEmbedding


def _expected_no_decay(model: nn.Module) -> set[int]:
    """Biases, norm weights, embeddings (token, position, [CLS]) and per-channel gains: by identity."""
    ids = set()
    for module in model.modules():
        if isinstance(module, (nn.LayerNorm, nn.RMSNorm, LayerScale, GeMPool)):
            ids |= {id(p) for p in module.parameters(recurse=False)}
        if isinstance(module, (nn.Embedding, LearnedPositionalEmbedding)):
            ids.add(id(module.weight))
        if isinstance(module, AttentionPool):
            ids.add(id(module.query))
        if isinstance(module, nn.Linear) and module.bias is not None:
            ids.add(id(module.bias))
    if getattr(model, "cls_token", None) is not None:
        ids.add(id(model.cls_token))
    return ids


def _models(tiny_config):
    yield "lm-learned-layerscale", CausalLM(tiny_config(position="learned", layer_scale=0.1))
    yield "lm-rmsnorm-tied", CausalLM(tiny_config(norm="rmsnorm", tie_embeddings=True))
    yield "clf-cls", SequenceClassifier(tiny_config(causal=False, position="learned"), 3, "cls")
    yield "clf-attention", SequenceClassifier(tiny_config(causal=False), 3, "attention")
    yield "clf-gem-features", SequenceClassifier(tiny_config(causal=False, input_dim=4), 3, "gem")


def test_weight_decay_groups_by_identity(tiny_config):
    for name, model in _models(tiny_config):
        decay, no_decay = param_groups(model, weight_decay=0.1)
        assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
        decay_ids = [id(p) for p in decay["params"]]
        no_decay_ids = [id(p) for p in no_decay["params"]]
        assert set(no_decay_ids) == _expected_no_decay(model), name
        # Every trainable parameter is in exactly one group (a tied weight counts once).
        all_ids = [id(p) for p in model.parameters()]
        assert sorted(decay_ids + no_decay_ids) == sorted(all_ids), name
        # What is decayed is exactly the Linear weight matrices.
        linear_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)} - set(no_decay_ids)
        assert set(decay_ids) == linear_weights, name


def test_tied_embedding_is_not_decayed(tiny_config):
    model = CausalLM(tiny_config(tie_embeddings=True))
    decay, no_decay = param_groups(model, 0.1)
    assert model.lm_head.weight is model.transformer.embed.weight
    assert any(p is model.lm_head.weight for p in no_decay["params"])
    assert not any(p is model.lm_head.weight for p in decay["params"])


def test_frozen_parameters_are_left_out(tiny_config):
    model = CausalLM(tiny_config())
    model.lm_head.weight.requires_grad_(False)
    groups = param_groups(model, 0.1)
    assert not any(p is model.lm_head.weight for g in groups for p in g["params"])


def _curve(name: str, total: int = 20, warmup: int = 5, lr: float = 2.0, min_lr_ratio: float = 0.1) -> list[float]:
    """The LR of each of ``total`` optimizer steps, then the LR after the last scheduler step."""
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr)
    scheduler = build_scheduler(optimizer, SchedulerConfig(name, warmup, min_lr_ratio), total)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs + [optimizer.param_groups[0]["lr"]]


@pytest.mark.parametrize("name", ["cosine", "linear", "constant"])
def test_warmup_ramps_linearly_to_the_peak(name):
    lrs = _curve(name, warmup=5, lr=2.0)
    assert_close(torch.tensor(lrs[:6]), 2.0 * torch.arange(1, 7) / 6, check_dtype=False)


def test_cosine_follows_cosine_and_reaches_min_lr():
    total, warmup, lr, ratio = 20, 5, 2.0, 0.1
    lrs = _curve("cosine", total, warmup, lr, ratio)
    steps = torch.arange(total - warmup + 1, dtype=torch.float64)
    expected = lr * ratio + (lr - lr * ratio) * (1 + torch.cos(math.pi * steps / (total - warmup))) / 2
    assert_close(torch.tensor(lrs[warmup:], dtype=torch.float64), expected)
    assert lrs[-1] == pytest.approx(lr * ratio)


def test_linear_decays_linearly_to_min_lr():
    total, warmup, lr, ratio = 20, 5, 2.0, 0.25
    lrs = torch.tensor(_curve("linear", total, warmup, lr, ratio), dtype=torch.float64)
    expected = lr * (1 + (ratio - 1) * torch.arange(total - warmup + 1, dtype=torch.float64) / (total - warmup))
    assert_close(lrs[warmup:], expected)


def test_onecycle_peaks_at_lr():
    lrs = _curve("onecycle", total=40, warmup=10, lr=2.0)
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[peak] == pytest.approx(2.0)
    assert 8 <= peak <= 11  # the ramp takes the warm-up steps
    assert lrs[0] < 2.0 / 10 and lrs[-2] < lrs[0]  # starts low and anneals below the start
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1 : peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:-1], lrs[peak + 1 : -1]))


@pytest.mark.parametrize("warmup", [0, 4])
def test_constant_stays_after_warmup(warmup):
    assert _curve("constant", warmup=warmup, lr=2.0)[warmup:] == pytest.approx([2.0] * (21 - warmup))


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_no_warmup_starts_at_peak(name):
    assert _curve(name, warmup=0)[0] == pytest.approx(2.0)


def test_warmup_longer_than_training_is_clamped():
    lrs = _curve("cosine", total=4, warmup=10, lr=1.0)
    assert max(lrs) == pytest.approx(1.0)


def test_none_scheduler():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    assert build_scheduler(optimizer, SchedulerConfig("none"), 10) is None


@pytest.mark.parametrize("name", [n for n in SCHEDULERS if n != "none"])
def test_scheduler_state_loads_with_weights_only(name):
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, SchedulerConfig(name, warmup_steps=2), 10)
    optimizer.step(), scheduler.step()
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["last_epoch"] == scheduler.last_epoch


def test_sgd_momentum_and_nesterov(tiny_config):
    optimizer = build_optimizer(CausalLM(tiny_config()), OptimizerConfig("sgd", lr=0.5, momentum=0.8, nesterov=True))
    assert type(optimizer) is torch.optim.SGD
    for group in optimizer.param_groups:
        assert (group["lr"], group["momentum"], group["nesterov"]) == (0.5, 0.8, True)


@pytest.mark.parametrize("name, cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam)])
def test_adam_family_settings(name, cls, tiny_config):
    cfg = OptimizerConfig(name, lr=1e-3, weight_decay=0.2, betas=(0.8, 0.9), eps=1e-6)
    optimizer = build_optimizer(CausalLM(tiny_config()), cfg)
    assert type(optimizer) is cls
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.2, 0.0]
    for group in optimizer.param_groups:
        assert (group["lr"], group["betas"], group["eps"]) == (1e-3, (0.8, 0.9), 1e-6)


def _momentum_after_onecycle(name: str, cycle_momentum: bool) -> list[float]:
    model = nn.Linear(4, 4)
    opt = build_optimizer(model, OptimizerConfig(name=name, lr=0.1, betas=(0.8, 0.95), momentum=0.7))
    scheduler = build_scheduler(opt, SchedulerConfig(name="onecycle", warmup_steps=3, cycle_momentum=cycle_momentum), 10)
    seen = []
    for _ in range(6):
        opt.step()
        scheduler.step()
        group = opt.param_groups[0]
        seen.append(group["betas"][0] if "betas" in group else group["momentum"])
    return seen


@pytest.mark.parametrize("name, configured", [("adamw", 0.8), ("adam", 0.8), ("sgd", 0.7)])
def test_onecycle_keeps_the_configured_momentum(name, configured):
    """torch's OneCycleLR cycles beta1 / momentum by default and overwrote the configured value."""
    assert _momentum_after_onecycle(name, cycle_momentum=False) == [configured] * 6
    cycled = _momentum_after_onecycle(name, cycle_momentum=True)
    assert cycled != [configured] * 6 and min(cycled) == pytest.approx(0.85)  # torch's base_momentum


def test_cycle_momentum_needs_onecycle():
    with pytest.raises(ValueError, match=r"cycle_momentum=True applies to name='onecycle' only, got name='cosine'"):
        SchedulerConfig(name="cosine", cycle_momentum=True)
