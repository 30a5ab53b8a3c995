"""Structured pruning core: the pruned model computes what the masked original computes, and round-trips."""

from __future__ import annotations

import pytest
import torch
import yaml

from nl_lightning.compress.importance import TaylorScores, magnitude_scores, taylor_scores
from nl_lightning.compress.optimizer_state import slice_optimizer_state
from nl_lightning.compress.structure import unit_maps
from nl_lightning.compress.structured import (
    apply_plan,
    keep_count,
    match_widths,
    plan_pruning,
    prune_structured,
)
from nl_lightning.errors import ConfigError
from nl_lightning.models import CausalLM, SequenceClassifier, TransformerConfig

LM_CONFIGS = {
    "mha_gelu": dict(n_layers=2, d_model=32, n_heads=4),
    "gqa_swiglu": dict(n_layers=2, d_model=64, n_heads=8, n_kv_heads=2, mlp="swiglu", norm="rmsnorm", bias=False),
    "mqa_geglu": dict(n_layers=1, d_model=32, n_heads=4, n_kv_heads=1, mlp="geglu"),
    "post_ln_learned": dict(n_layers=2, d_model=32, n_heads=4, norm_style="post", position="learned", layer_scale=0.5),
}


def _lm(name: str) -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(TransformerConfig(**LM_CONFIGS[name])).eval()


def _classifier() -> SequenceClassifier:
    torch.manual_seed(0)
    config = TransformerConfig(input_dim=8, n_layers=2, d_model=32, n_heads=4, max_seq_len=16, position="none")
    return SequenceClassifier(config, num_outputs=3, pooling="attention").eval()


@torch.no_grad()
def _zero_removed(model: torch.nn.Module, plan: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The original with the removed structures zeroed, written out head by head and channel by channel."""
    for name, kept in plan.items():
        module, kept = model.get_submodule(name), set(kept.tolist())
        if name.endswith("attn"):
            H, G, D = module.n_heads, module.n_kv_heads, module.head_dim
            for h in range(H):
                if (h // (H // G) if G > 1 else h) not in kept:
                    module.q_proj.weight[h * D:(h + 1) * D] = 0
                    module.out_proj.weight[:, h * D:(h + 1) * D] = 0
                    if module.q_proj.bias is not None:
                        module.q_proj.bias[h * D:(h + 1) * D] = 0
            for g in range(G if G > 1 else 0):
                if g not in kept:
                    for start in (g * D, G * D + g * D):  # its key rows, then its value rows
                        module.kv_proj.weight[start:start + D] = 0
                        if module.kv_proj.bias is not None:
                            module.kv_proj.bias[start:start + D] = 0
        else:
            inputs, output = (["fc1"], module.fc2) if hasattr(module, "fc1") else (["gate", "up"], module.down)
            for j in range(output.in_features):
                if j not in kept:
                    output.weight[:, j] = 0
                    for layer in (getattr(module, n) for n in inputs):
                        layer.weight[j] = 0
                        if layer.bias is not None:
                            layer.bias[j] = 0
    return model


def _prune_with_plan(model, heads, mlp):
    maps = unit_maps(model)
    keep = {"heads": keep_count(max(m.n_units for m in maps.values() if m.kind == "heads"), heads),
            "mlp": keep_count(max(m.n_units for m in maps.values() if m.kind == "mlp"), mlp)}
    plan = plan_pruning(maps, magnitude_scores(model, maps), keep)
    pruned = prune_structured(model, heads=heads, mlp=mlp)
    return pruned, plan


@pytest.mark.parametrize("name", sorted(LM_CONFIGS))
@pytest.mark.parametrize(("heads", "mlp"), [(0.5, 0.5), (0.25, 0.75), (0.0, 0.5), (0.5, 0.0)])
def test_pruned_lm_equals_the_masked_original(name, heads, mlp):
    model = _lm(name)
    pruned, plan = _prune_with_plan(model, heads, mlp)
    x = torch.randint(0, 256, (3, 11))
    reference = _zero_removed(_lm(name), plan)(x)
    torch.testing.assert_close(pruned(x), reference, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(model(x), reference, atol=1e-3)  # the removed structures did matter
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


def test_pruned_classifier_equals_the_masked_original_and_keeps_the_input():
    model = _classifier()
    pruned, plan = _prune_with_plan(model, 0.5, 0.5)
    x = torch.randn(4, 16, 8)
    torch.testing.assert_close(pruned(x), _zero_removed(_classifier(), plan)(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(x), _classifier()(x))  # not in place: the original is untouched


@pytest.mark.parametrize(
    ("name", "heads", "mlp", "widths"),
    [
        ("mha_gelu", 0.5, 0.5, dict(n_heads=2, n_kv_heads=2, head_dim=8, mlp_hidden=64)),
        ("gqa_swiglu", 0.5, 0.5, dict(n_heads=4, n_kv_heads=1, head_dim=8, mlp_hidden=96)),  # one of two KV groups
        ("mqa_geglu", 0.75, 0.25, dict(n_heads=1, n_kv_heads=1, head_dim=8, mlp_hidden=72)),  # query heads
    ],
)
def test_config_describes_the_pruned_model_and_round_trips(name, heads, mlp, widths, tmp_path):
    pruned = prune_structured(_lm(name), heads=heads, mlp=mlp)
    for key, value in widths.items():
        assert getattr(pruned.config, key) == value and getattr(pruned.transformer.config, key) == value
    stored = yaml.safe_load(yaml.safe_dump(pruned.config.to_dict()))
    assert stored["head_dim"] == 8 and stored["mlp_hidden"] == widths["mlp_hidden"]
    rebuilt = CausalLM(TransformerConfig.from_dict(stored)).eval()
    rebuilt.load_state_dict(pruned.state_dict(), strict=True)
    x = torch.randint(0, 256, (2, 7))
    torch.testing.assert_close(rebuilt(x), pruned(x), rtol=0, atol=0)
    caches = rebuilt.transformer.new_kv_caches(2, 9)  # decoding caches follow the pruned config
    assert caches[0].k.shape == (2, widths["n_kv_heads"], 9, 8)


def test_the_least_important_units_go_first():
    model = _lm("mha_gelu")
    block = model.transformer.blocks[0]
    with torch.no_grad():
        block.attn.out_proj.weight[:, 8:16] *= 0.01  # head 1 barely reaches the output
        block.attn.q_proj.weight[8:16] *= 0.01
        block.attn.kv_proj.weight[8:16] *= 0.01  # its key rows
        block.attn.kv_proj.weight[40:48] *= 0.01  # its value rows
        block.mlp.fc1.weight[[3, 5]] *= 0.01
        block.mlp.fc2.weight[:, [3, 5]] *= 0.01
    maps = unit_maps(model)
    plan = plan_pruning(maps, magnitude_scores(model, maps), {"heads": 3, "mlp": 126})
    assert plan["transformer.blocks.0.attn"].tolist() == [0, 2, 3]
    assert 3 not in plan["transformer.blocks.0.mlp"] and 5 not in plan["transformer.blocks.0.mlp"]


def test_taylor_score_is_the_first_order_loss_change_of_scaling_a_unit():
    """(sum over a unit of w * dL/dw)^2 == (dL/d(eps) of scaling the unit by 1 + eps)^2, by finite differences."""
    torch.manual_seed(0)
    model = CausalLM(TransformerConfig(n_layers=1, d_model=16, n_heads=2, mlp_hidden=8)).double().eval()
    x = torch.randint(0, 256, (2, 6))

    def loss_of(m):
        return torch.nn.functional.cross_entropy(m(x).flatten(0, 1), x.roll(-1, 1).flatten())

    scores = TaylorScores(model)
    loss_of(model).backward()
    scores.update()
    mlp, attn = model.transformer.blocks[0].mlp, model.transformer.blocks[0].attn
    units = {("mlp", 5): [(mlp.fc1.weight, (5,)), (mlp.fc1.bias, (5,)), (mlp.fc2.weight, (slice(None), 5))],
             ("attn", 1): [(attn.q_proj.weight, (slice(8, 16),)), (attn.q_proj.bias, (slice(8, 16),)),
                           (attn.kv_proj.weight, (slice(8, 16),)), (attn.kv_proj.weight, (slice(24, 32),)),
                           (attn.kv_proj.bias, (slice(8, 16),)), (attn.kv_proj.bias, (slice(24, 32),)),
                           (attn.out_proj.weight, (slice(None), slice(8, 16)))]}
    eps = 1e-5
    for (kind, unit), pieces in units.items():
        changes = []
        for sign in (1, -1):
            with torch.no_grad():
                for param, index in pieces:
                    param[index] *= 1 + sign * eps
                changes.append(loss_of(model).item())
                for param, index in pieces:
                    param[index] /= 1 + sign * eps
        derivative = (changes[0] - changes[1]) / (2 * eps)
        name = f"transformer.blocks.0.{kind}"
        assert scores.scores[name][unit].item() == pytest.approx(derivative**2, rel=1e-4)


def test_taylor_scores_over_calibration_batches_restore_the_model():
    model = _lm("mha_gelu").train()
    batches = [torch.randint(0, 256, (2, 8)) for _ in range(3)]

    def loss_fn(m, x):
        return torch.nn.functional.cross_entropy(m(x).flatten(0, 1), x.roll(-1, 1).flatten())

    scores = taylor_scores(model, batches, loss_fn)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(s.shape == (m.n_units,) and (s > 0).all() for s, m in zip(scores.values(), unit_maps(model).values()))
    pruned = prune_structured(model, heads=0.5, mlp=0.5, importance="taylor", batches=batches, loss_fn=loss_fn)
    assert pruned.config.n_heads == 2
    with pytest.raises(ConfigError, match="Taylor importance got no gradients"):
        taylor_scores(model, [], loss_fn)


def test_match_widths_rebuilds_the_pruned_shapes_for_a_checkpoint():
    pruned = prune_structured(_lm("gqa_swiglu"), heads=0.5, mlp=0.5)
    fresh = _lm("gqa_swiglu")
    match_widths(fresh, pruned.config)
    assert fresh.config == pruned.config
    fresh.load_state_dict(pruned.state_dict(), strict=True)
    with pytest.raises(ConfigError, match="can only be rebuilt from the larger one"):
        match_widths(pruned, _lm("gqa_swiglu").config)


def test_optimizer_state_follows_the_sliced_parameters():
    model = _lm("mha_gelu").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randint(0, 256, (2, 8))).square().mean().backward()
    optimizer.step()
    fc1 = model.transformer.blocks[0].mlp.fc1.weight
    before = optimizer.state[fc1]["exp_avg"].clone()
    maps = unit_maps(model)
    plan = plan_pruning(maps, magnitude_scores(model, maps), {"heads": 2, "mlp": 64})
    resized = apply_plan(model, plan, maps)
    assert slice_optimizer_state(optimizer, resized) == len(resized)
    new_fc1 = model.transformer.blocks[0].mlp.fc1.weight
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert any(p is new_fc1 for p in params) and not any(p is fc1 for p in params)
    torch.testing.assert_close(optimizer.state[new_fc1]["exp_avg"], before[plan["transformer.blocks.0.mlp"]])
    model(torch.randint(0, 256, (2, 8))).square().mean().backward()
    optimizer.step()  # the optimizer runs on the smaller model


def test_pruned_graph_exports_to_onnx_with_parity(tmp_path):
    pytest.importorskip("onnxruntime")
    from nl_lightning.export.onnx import export_onnx
    from nl_lightning.export.ort import ort_runner, ort_session
    from nl_lightning.export.parity import Tolerance, check_parity

    pruned = prune_structured(_lm("gqa_swiglu"), heads=0.5, mlp=0.5)
    path = export_onnx(pruned, tmp_path / "pruned.onnx")
    inputs = [torch.randint(0, 256, (b, t)) for b in (1, 3) for t in (5, 16)]
    records = check_parity(lambda x: pruned(x), ort_runner(ort_session(path)), inputs, Tolerance(atol=1e-4, rtol=1e-3))
    assert all(r["ok"] for r in records)


def test_removing_less_than_one_unit_warns():
    with pytest.warns(UserWarning, match=r"heads=0.25 removes none of the 2 KV groups per layer.*at least 0.5"):
        pruned = prune_structured(_lm("gqa_swiglu"), heads=0.25)
    assert pruned.config.n_heads == 8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(heads=1.0), r"heads=1.0 must be the fraction to remove, in \[0, 1\)"),
        (dict(mlp=-0.1), r"mlp=-0.1 must be the fraction to remove"),
        (dict(heads=True), r"heads=True must be the fraction"),
        (dict(importance="l1"), r"importance='l1' is not supported; choose one of \('magnitude', 'taylor'\)"),
        (dict(importance="taylor"), r"importance='taylor' needs calibration `batches`"),
    ],
)
def test_argument_errors_name_the_fix(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        prune_structured(_lm("mha_gelu"), **kwargs)


def test_models_it_cannot_prune_are_refused():
    alibi = CausalLM(TransformerConfig(n_layers=1, d_model=32, n_heads=4, position="alibi"))
    with pytest.raises(ConfigError, match="position='alibi'.*Prune MLP channels only"):
        prune_structured(alibi, heads=0.5)
    assert prune_structured(alibi, mlp=0.5).config.mlp_hidden == 64
    with pytest.raises(ConfigError, match="Linear has no nl_lightning SelfAttention or MLP blocks"):
        prune_structured(torch.nn.Linear(4, 4), mlp=0.5)
