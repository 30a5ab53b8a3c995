"""The metrics a classifier or regressor logs, named for what they compute.

A metric is given by name: a short name (``acc``, ``balanced_acc``, ``macro_f1``, ``top5_acc``,
``mse``...) or a torchmetrics class name (``Accuracy``, ``F1Score``, ``AUROC``...), or as a
``MetricSpec`` (``{name: F1Score, average: weighted}``). Every name resolves to one torchmetrics
class with its arguments spelled out, and is logged under the short name that says what it is:

- ``acc``: the fraction of correct predictions (micro average; torchmetrics' ``Accuracy``).
- ``balanced_acc``: the mean of per-class recalls (``Accuracy(average="macro")``).
- ``macro_f1`` / ``weighted_f1``, ``macro_precision``, ``macro_recall``...: ``<average>_<metric>``.
- ``top<k>_<metric>``: a hit when the class is among the ``k`` highest scores.

No lightning import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import torchmetrics.classification as tmc
import torchmetrics.regression as tmr
from torchmetrics import Metric

from nl_lightning.errors import ConfigError

__all__ = ["CLASSIFICATION_DEFAULT", "REGRESSION_DEFAULT", "MetricSpec", "build_metrics", "metric_name"]

#: The metrics a classifier logs when ``metrics`` is not given: accuracy, balanced accuracy, macro F1.
CLASSIFICATION_DEFAULT = ("acc", "balanced_acc", "macro_f1")
#: The metrics a regressor logs when ``metrics`` is not given: mean squared and mean absolute error.
REGRESSION_DEFAULT = ("mse", "mae")
Average = Literal["micro", "macro", "weighted"]


@dataclass
class MetricSpec:
    """One metric: a short name or torchmetrics class name, with the arguments that change it."""

    name: str
    average: Average | None = None
    """How per-class scores combine: 'micro' (over all samples; the default where it applies),
    'macro' (mean over classes), 'weighted' (mean over classes, weighted by support)."""
    top_k: int | None = None
    """A prediction counts as correct when the class is among the ``top_k`` highest scores."""
    log_as: str | None = None
    """The name it is logged under (``val/<log_as>``); default: the name that says what it is."""


@dataclass(frozen=True)
class _Kind:
    short: str
    cls: type[Metric]
    averages: tuple[str, ...] = ()  # the first is the default
    top_k: bool = False


CLASSIFICATION: dict[str, _Kind] = {
    "Accuracy": _Kind("acc", tmc.MulticlassAccuracy, ("micro", "macro", "weighted"), True),
    "F1Score": _Kind("f1", tmc.MulticlassF1Score, ("micro", "macro", "weighted"), True),
    "Precision": _Kind("precision", tmc.MulticlassPrecision, ("micro", "macro", "weighted"), True),
    "Recall": _Kind("recall", tmc.MulticlassRecall, ("micro", "macro", "weighted"), True),
    "AUROC": _Kind("auroc", tmc.MulticlassAUROC, ("macro", "weighted")),
    "AveragePrecision": _Kind("average_precision", tmc.MulticlassAveragePrecision, ("macro", "weighted")),
    "CohenKappa": _Kind("kappa", tmc.MulticlassCohenKappa),
    "MatthewsCorrCoef": _Kind("mcc", tmc.MulticlassMatthewsCorrCoef),
    "CalibrationError": _Kind("calibration_error", tmc.MulticlassCalibrationError),
}
REGRESSION: dict[str, tuple[str, type[Metric], dict[str, Any]]] = {
    "MeanSquaredError": ("mse", tmr.MeanSquaredError, {}),
    "RootMeanSquaredError": ("rmse", tmr.MeanSquaredError, {"squared": False}),
    "MeanAbsoluteError": ("mae", tmr.MeanAbsoluteError, {}),
    "R2Score": ("r2", tmr.R2Score, {}),
}
_SHORT = re.compile(r"^(?:top(?P<k>\d+)_)?(?:(?P<avg>micro|macro|weighted)_)?(?P<short>[a-z0-9_]+?)$")


def metric_name(kind: str, average: str | None, top_k: int) -> str:
    """The short name of ``kind`` (a class name) with ``average`` and ``top_k``: what it is logged as."""
    spec = CLASSIFICATION[kind]
    if kind == "Accuracy" and average == "macro":
        base = "balanced_acc"
    elif average and spec.averages and average != spec.averages[0]:
        base = f"{average}_{spec.short}"
    else:
        base = spec.short
    return f"top{top_k}_{base}" if top_k > 1 else base


def build_metrics(
    entries: list[str | MetricSpec | dict[str, Any]] | tuple[str, ...], task: str, num_classes: int,
) -> dict[str, Metric]:
    """``{logged name: torchmetrics Metric}`` for ``entries``; a ``ConfigError`` names a bad entry."""
    metrics: dict[str, Metric] = {}
    for i, entry in enumerate(entries):
        spec = _as_spec(entry, i)
        name, metric = (_classification(spec, num_classes) if task == "classification" else _regression(spec))
        name = spec.log_as or name
        if name in metrics:
            raise ConfigError(f"metrics[{i}]={entry!r} is logged as {name!r}, like an earlier entry; remove one "
                              "or give it another name with log_as.")
        metrics[name] = metric
    return metrics


def _as_spec(entry: Any, i: int) -> MetricSpec:
    if isinstance(entry, MetricSpec):
        return entry
    if isinstance(entry, str):
        return MetricSpec(entry)
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        unknown = sorted(set(entry) - set(MetricSpec.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"metrics[{i}]={entry!r}: unknown key(s) {unknown}; use name, average, top_k, log_as.")
        return MetricSpec(**entry)
    raise ConfigError(f"metrics[{i}]={entry!r} must be a metric name (e.g. 'acc', 'macro_f1') or "
                      "{name: ..., average: ..., top_k: ...}.")


def _resolve(name: str) -> tuple[str, str | None, int]:
    """(class name, average, top_k) of a short name or a class name."""
    if name in CLASSIFICATION:
        return name, None, 1
    if name == "balanced_acc":
        return "Accuracy", "macro", 1
    match = _SHORT.match(name)
    shorts = {spec.short: kind for kind, spec in CLASSIFICATION.items()}
    if match and match.group("short") in shorts:
        return shorts[match.group("short")], match.group("avg"), int(match.group("k") or 1)
    if match and match.group("short") == "balanced_acc" and not match.group("avg"):
        return "Accuracy", "macro", int(match.group("k") or 1)
    known = ["acc", "balanced_acc", "macro_f1", "weighted_f1", "top5_acc", *CLASSIFICATION]
    raise ConfigError(f"metric {name!r} is not a classification metric; use one of {known} "
                      "(<average>_<metric>, top<k>_<metric>), or a MetricSpec with name/average/top_k.")


def _classification(spec: MetricSpec, num_classes: int) -> tuple[str, Metric]:
    kind, average, top_k = _resolve(spec.name)
    info = CLASSIFICATION[kind]
    if spec.average is not None:
        if average is not None and average != spec.average:
            raise ConfigError(f"metric {spec.name!r} already means average={average!r}; got average={spec.average!r}.")
        average = spec.average
    if spec.top_k is not None:
        top_k = spec.top_k
    if average is not None and average not in info.averages:
        allowed = list(info.averages) or "no average argument"
        raise ConfigError(f"metric {spec.name!r} ({kind}) takes average in {allowed}; got {average!r}.")
    if top_k != 1 and not info.top_k:
        raise ConfigError(f"metric {spec.name!r} ({kind}) has no top_k; use it with Accuracy, F1Score, Precision or Recall.")
    if not isinstance(top_k, int) or not 1 <= top_k <= num_classes:
        raise ConfigError(f"metric {spec.name!r}: top_k={top_k!r} must be an integer in [1, num_classes={num_classes}].")
    average = average or (info.averages[0] if info.averages else None)
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if average is not None:
        kwargs["average"] = average
    if info.top_k:
        kwargs["top_k"] = top_k
    return metric_name(kind, average, top_k), info.cls(**kwargs)


def _regression(spec: MetricSpec) -> tuple[str, Metric]:
    by_short = {short: kind for kind, (short, _, _) in REGRESSION.items()}
    kind = spec.name if spec.name in REGRESSION else by_short.get(spec.name)
    if kind is None:
        raise ConfigError(f"metric {spec.name!r} is not a regression metric; use one of "
                          f"{[*by_short, *REGRESSION]}.")
    if spec.average is not None or spec.top_k is not None:
        raise ConfigError(f"metric {spec.name!r} is a regression metric: average and top_k do not apply.")
    short, cls, kwargs = REGRESSION[kind]
    return short, cls(**kwargs)
