from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nl_lightning.compress.prune import (
    dense_copy,
    is_pruned,
    make_permanent,
    prunable_parameters,
    prune_model,
    refresh_pruned_weights,
    sync_masks,
)
from nl_lightning.compress.schedule import step_amount
from nl_lightning.compress.sparsity import layer_sparsity, model_sparsity, sparsity


def _names(model: nn.Module, params) -> set[str]:
    names = {id(m): n for n, m in model.named_modules()}
    return {names[id(m)] for m, _ in params}


def test_prunable_parameters_are_linear_weights_without_embeddings_or_norms(lm, classifier):
    names = _names(lm, prunable_parameters(lm))
    assert "lm_head" in names and "transformer.blocks.0.mlp.fc1" in names
    assert not any("embed" in n or "norm" in n for n in names)
    assert all(name == "weight" for _, name in prunable_parameters(lm))
    # The classifier's feature projection is an nn.Linear named "embed": excluded as an input layer.
    assert "transformer.embed" not in _names(classifier, prunable_parameters(classifier))
    assert "head" not in _names(classifier, prunable_parameters(classifier, include_head=False))


def test_prunable_parameters_error_when_nothing_is_left():
    with pytest.raises(ValueError, match="No prunable Linear layers in Sequential"):
        prunable_parameters(nn.Sequential(nn.LayerNorm(4)))


def test_global_l1_measured_sparsity_equals_requested(lm):
    params = prune_model(lm, 0.6, "l1_unstructured", "global")
    total = sum(m.weight.numel() for m, _ in params)
    assert sparsity(params) == pytest.approx(0.6, abs=1 / total)
    # Global ranking: the smallest magnitudes overall go first, so layers end up uneven.
    assert len({round(v, 3) for v in layer_sparsity(lm, params).values()}) > 1


@pytest.mark.parametrize("method", ["l1_unstructured", "random_unstructured"])
def test_layerwise_unstructured_prunes_each_layer_to_amount(lm, method):
    params = prune_model(lm, 0.5, method, "layer")
    assert set(layer_sparsity(lm, params).values()) == {0.5}


def test_ln_structured_removes_whole_rows(classifier):
    params = prunable_parameters(classifier, include_head=False)
    prune_model(classifier, 0.25, "ln_structured", "layer", params=params, norm=2, dim=0)
    for module, _ in params:
        zero_rows = (module.weight == 0).all(dim=1)
        assert zero_rows.sum() == round(0.25 * module.out_features)
        assert (module.weight[~zero_rows] != 0).all()


def test_iterative_steps_reach_the_target_exactly(lm):
    params = prunable_parameters(lm)
    for goal in (0.25, 0.5, 0.75):
        prune_model(lm, step_amount(sparsity(params), goal), "l1_unstructured", "layer", params=params)
        assert sparsity(params) == pytest.approx(goal)


def test_make_permanent_survives_save_and_load_into_a_plain_model(lm, tmp_path):
    fresh = copy.deepcopy(lm)
    prune_model(lm, 0.5)
    make_permanent(lm)
    assert not is_pruned(lm)
    assert not any(k.endswith(("_orig", "_mask")) for k in lm.state_dict())
    torch.save(lm.state_dict(), tmp_path / "pruned.pt")
    fresh.load_state_dict(torch.load(tmp_path / "pruned.pt", weights_only=True), strict=True)
    assert sparsity(prunable_parameters(fresh)) == pytest.approx(0.5, abs=1e-4)
    assert 0 < model_sparsity(fresh) < 0.5  # embeddings, norms and biases are not pruned


def test_dense_copy_after_backward_keeps_original_masked(lm):
    """A training step leaves non-leaf masked weights; a plain deepcopy then fails (Lightning #7505)."""
    prune_model(lm, 0.5)
    lm(torch.randint(0, 256, (2, 8))).sum().backward()
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(lm)
    dense = dense_copy(lm)
    assert is_pruned(lm) and not is_pruned(dense)
    x = torch.randint(0, 256, (2, 8))
    torch.testing.assert_close(dense(x), lm(x))
    refresh_pruned_weights(lm)
    copy.deepcopy(lm)  # copyable again


def test_sync_masks_is_a_noop_without_distributed(lm):
    params = prune_model(lm, 0.3, "random_unstructured", "layer")
    before = [m.weight_mask.clone() for m, _ in params]
    sync_masks(params)
    assert all(torch.equal(a, m.weight_mask) for a, (m, _) in zip(before, params))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(method="magnitude"), "method='magnitude' is not supported"),
        (dict(scope="model"), "scope='model' is not supported"),
        (dict(amount=1.0), r"amount=1.0 must be a sparsity fraction in \[0, 1\)"),
        (dict(amount=-0.1), "must be a sparsity fraction"),
        (dict(method="ln_structured", scope="global"), "use scope='layer'"),
    ],
)
def test_prune_model_errors_name_the_fix(lm, kwargs, match):
    args = dict(amount=0.5, method="l1_unstructured", scope="global") | kwargs
    with pytest.raises(ValueError, match=match):
        prune_model(lm, **args)
