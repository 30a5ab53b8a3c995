"""track.grad_stats against the formulas written out, and track.confusion against torchmetrics."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassPrecision, MulticlassRecall

from nl_lightning.track.confusion import per_class_scores, score_metrics
from nl_lightning.track.grad_stats import first_nonfinite_grad, grad_norms, snapshot, update_ratios


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model(torch.randn(5, 3)).pow(2).sum().backward()
    return model


def test_global_and_per_layer_norms_match_the_formula():
    model = _model()
    out = grad_norms(model)
    grads = {n: p.grad for n, p in model.named_parameters()}
    expected_total = torch.sqrt(sum(g.pow(2).sum() for g in grads.values()))
    assert out["grad/norm"] == pytest.approx(float(expected_total), rel=1e-6)
    layer0 = torch.sqrt(grads["0.weight"].pow(2).sum() + grads["0.bias"].pow(2).sum())
    assert out["grad/norm/0"] == pytest.approx(float(layer0), rel=1e-6)
    assert set(out) == {"grad/norm", "grad/norm/0", "grad/norm/2"}


@pytest.mark.parametrize("p", [1.0, float("inf")])
def test_norms_of_other_orders_are_norms_of_the_concatenated_gradients(p):
    model = _model()
    out = grad_norms(model, norm_type=p)
    grads = {n: q.grad.flatten() for n, q in model.named_parameters()}
    assert out["grad/norm"] == pytest.approx(float(torch.linalg.vector_norm(torch.cat(list(grads.values())), p)), rel=1e-6)
    layer2 = torch.cat([grads["2.weight"], grads["2.bias"]])
    assert out["grad/norm/2"] == pytest.approx(float(torch.linalg.vector_norm(layer2, p)), rel=1e-6)


def test_no_gradients_give_no_norms():
    assert grad_norms(nn.Linear(2, 2)) == {}


def test_first_nonfinite_names_the_first_parameter_in_order():
    model = _model()
    assert first_nonfinite_grad(model.named_parameters()) is None
    model[2].weight.grad[0, 1] = float("inf")
    model[2].bias.grad[0] = float("nan")
    assert first_nonfinite_grad(model.named_parameters()) == ("2.weight", "Inf")
    model[0].bias.grad[1] = float("nan")
    assert first_nonfinite_grad(model.named_parameters()) == ("0.bias", "NaN")


def test_update_ratio_is_update_norm_over_weight_norm():
    model = _model()
    groups = [[model[0].weight, model[0].bias], [model[2].weight]]
    before = snapshot(groups)
    with torch.no_grad():
        model[0].weight.add_(0.1)
    ratios = update_ratios(groups, before)
    w0 = torch.cat([before[0][0].flatten(), before[0][1].flatten()])
    assert ratios[0] == pytest.approx(float(0.1 * model[0].weight.numel() ** 0.5 / w0.norm()), rel=1e-5)
    assert ratios[1] == 0.0


def test_per_class_scores_match_torchmetrics():
    torch.manual_seed(1)
    preds, target = torch.randint(0, 4, (200,)), torch.randint(0, 4, (200,))
    preds[preds == 3] = 0  # class 3 never predicted: precision 0 by convention
    matrix = MulticlassConfusionMatrix(4)(preds, target)
    scores = per_class_scores(matrix)
    torch.testing.assert_close(scores["precision"], MulticlassPrecision(4, average=None, zero_division=0)(preds, target))
    torch.testing.assert_close(scores["recall"], MulticlassRecall(4, average=None, zero_division=0)(preds, target))
    assert set(score_metrics(matrix, "val/", list("abcd"))) == {f"val/{k}/{c}" for k in ("precision", "recall") for c in "abcd"}
    with pytest.raises(ValueError, match=r"square \(C, C\) confusion matrix, got shape \(2, 3\)"):
        per_class_scores(torch.zeros(2, 3))
