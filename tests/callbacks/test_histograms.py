"""HistogramMonitor: TensorBoard histograms read back; summary statistics where a logger has no histograms."""

from __future__ import annotations

import csv

import pytest
import torch

import lightning as L

from nl_lightning.callbacks import HistogramMonitor
from tracking_utils import tb_events, tiny_classifier, tiny_data, trainer


class Snapshot(L.Callback):
    """The head weight and its gradient as the monitor sees them, per step."""

    def __init__(self) -> None:
        self.weight, self.grad = {}, {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        head = pl_module.model.head.weight
        self.weight[trainer.global_step] = head.detach().clone()
        self.grad[trainer.global_step] = head.grad.detach().clone()


def test_tensorboard_gets_parameter_and_gradient_histograms(tmp_path):
    model = tiny_classifier()
    snap = Snapshot()
    run = trainer(tmp_path, max_steps=8, callbacks=[HistogramMonitor(every_n_steps=4), snap])
    run.fit(model, tiny_data())
    acc = tb_events(run.logger.log_dir)
    names = [name for name, _ in model.named_parameters()]
    assert set(acc.Tags()["histograms"]) == {f"{kind}/{n}" for kind in ("params", "grads") for n in names}
    events = acc.Histograms("params/model.head.weight")
    assert [e.step for e in events] == [3, 7]
    for tag, values in (("params/model.head.weight", snap.weight[7]), ("grads/model.head.weight", snap.grad[7])):
        hist = acc.Histograms(tag)[-1].histogram_value  # step 7, before its update
        assert hist.num == values.numel()
        assert (hist.min, hist.max) == pytest.approx((float(values.min()), float(values.max())), rel=1e-6)
        assert hist.sum == pytest.approx(float(values.sum()), rel=1e-5, abs=1e-7)


def test_csv_gets_summary_statistics_instead(tmp_path):
    model = tiny_classifier()
    snap = Snapshot()
    run = trainer(tmp_path, logger="csv", max_steps=4, callbacks=[HistogramMonitor(every_n_steps=4, grads=False), snap])
    run.fit(model, tiny_data())
    rows = list(csv.DictReader(open(run.logger.log_dir + "/metrics.csv")))
    row = next(r for r in rows if r.get("params/model.head.bias/mean"))
    assert row["step"] == "3"
    assert not any(k.startswith("grads/") for k in row)
    weight = snap.weight[3]
    expected = {"mean": weight.mean(), "std": weight.std(), "min": weight.min(), "max": weight.max(),
                "norm": torch.linalg.vector_norm(weight)}
    for stat, value in expected.items():
        assert float(row[f"params/model.head.weight/{stat}"]) == pytest.approx(float(value), rel=1e-6), stat


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"every_n_steps=0\) must be >= 1"):
        HistogramMonitor(every_n_steps=0)
    with pytest.raises(ValueError, match="would log nothing"):
        HistogramMonitor(params=False, grads=False)
