"""Metric names resolve to the torchmetrics metric they say, and compute what the name means."""

from __future__ import annotations

import pytest
import torch
import torchmetrics.classification as tmc

from nl_lightning.errors import ConfigError
from nl_lightning.models.metrics import MetricSpec, build_metrics

# Imbalanced: 6 samples of class 0 (all right), 2 of class 1 (both wrong), 2 of class 2 (one right).
TARGET = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
PRED = torch.tensor([0, 0, 0, 0, 0, 0, 0, 2, 2, 0])
LOGITS = torch.nn.functional.one_hot(PRED, 3).float() * 4 + torch.linspace(0, 0.1, 3)


def _values(entries, logits=LOGITS, target=TARGET) -> dict[str, float]:
    metrics = build_metrics(entries, "classification", 3)
    return {name: float(metric(logits, target)) for name, metric in metrics.items()}


def test_acc_is_the_fraction_correct_and_balanced_acc_the_mean_recall():
    values = _values(["acc", "balanced_acc"])
    assert values["acc"] == pytest.approx(7 / 10)  # (PRED == TARGET).mean()
    recalls = [6 / 6, 0 / 2, 1 / 2]
    assert values["balanced_acc"] == pytest.approx(sum(recalls) / 3)


def test_macro_f1_is_the_mean_of_per_class_f1():
    precision, recall = [6 / 8, 0.0, 1 / 2], [1.0, 0.0, 1 / 2]
    f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r in zip(precision, recall)]
    assert _values(["macro_f1"])["macro_f1"] == pytest.approx(sum(f1) / 3)
    support = [6, 2, 2]
    weighted = sum(f * s for f, s in zip(f1, support)) / 10
    assert _values([{"name": "F1Score", "average": "weighted"}])["weighted_f1"] == pytest.approx(weighted)


def test_top_k_counts_a_hit_among_the_k_highest_scores():
    logits = torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    target = torch.tensor([0, 1, 2])
    values = _values(["acc", "top2_acc", MetricSpec("Accuracy", top_k=3, log_as="any3")], logits, target)
    assert values == pytest.approx({"acc": 1 / 3, "top2_acc": 2 / 3, "any3": 1.0})


@pytest.mark.parametrize(
    "entry, name, cls, average",
    [
        ("acc", "acc", tmc.MulticlassAccuracy, "micro"),
        ("Accuracy", "acc", tmc.MulticlassAccuracy, "micro"),  # torchmetrics' own default for Accuracy
        ("balanced_acc", "balanced_acc", tmc.MulticlassAccuracy, "macro"),
        ({"name": "acc", "average": "macro"}, "balanced_acc", tmc.MulticlassAccuracy, "macro"),
        ("macro_f1", "macro_f1", tmc.MulticlassF1Score, "macro"),
        ("f1", "f1", tmc.MulticlassF1Score, "micro"),
        ("weighted_precision", "weighted_precision", tmc.MulticlassPrecision, "weighted"),
        ("macro_recall", "macro_recall", tmc.MulticlassRecall, "macro"),
        ("AUROC", "auroc", tmc.MulticlassAUROC, "macro"),
        ("weighted_auroc", "weighted_auroc", tmc.MulticlassAUROC, "weighted"),
        ("mcc", "mcc", tmc.MulticlassMatthewsCorrCoef, None),
        ("CohenKappa", "kappa", tmc.MulticlassCohenKappa, None),
    ],
)
def test_names_resolve_to_the_metric_they_say(entry, name, cls, average):
    (got_name, metric), = build_metrics([entry], "classification", 3).items()
    assert got_name == name and type(metric) is cls
    assert getattr(metric, "average", None) == average


def test_regression_names():
    metrics = build_metrics(["mse", "rmse", "MeanAbsoluteError", "r2"], "regression", 1)
    assert list(metrics) == ["mse", "rmse", "mae", "r2"]
    pred, target = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 3.0, 2.0])
    assert float(metrics["rmse"](pred, target)) == pytest.approx((5 / 3) ** 0.5)


@pytest.mark.parametrize(
    "entries, task, match",
    [
        (["accuracy_typo"], "classification", r"metric 'accuracy_typo' is not a classification metric; use one of"),
        ([{"name": "mcc", "average": "macro"}], "classification", r"'mcc' \(MatthewsCorrCoef\) takes average in no average"),
        ([{"name": "auroc", "average": "micro"}], "classification", r"takes average in \['macro', 'weighted'\]; got 'micro'"),
        ([{"name": "auroc", "top_k": 2}], "classification", r"'auroc' \(AUROC\) has no top_k"),
        (["top4_acc"], "classification", r"top_k=4 must be an integer in \[1, num_classes=3\]"),
        ([{"name": "macro_f1", "average": "weighted"}], "classification", r"already means average='macro'"),
        (["acc", "Accuracy"], "classification", r"metrics\[1\]='Accuracy' is logged as 'acc', like an earlier entry"),
        ([{"name": "acc", "topk": 2}], "classification", r"unknown key\(s\) \['topk'\]"),
        ([3], "classification", r"metrics\[0\]=3 must be a metric name"),
        (["acc"], "regression", r"metric 'acc' is not a regression metric"),
        ([{"name": "mse", "average": "macro"}], "regression", r"average and top_k do not apply"),
    ],
)
def test_bad_entries_name_the_entry_and_the_fix(entries, task, match):
    with pytest.raises(ConfigError, match=match):
        build_metrics(entries, task, 3)
