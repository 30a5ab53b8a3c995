"""ConfusionMatrixMonitor: the picture in TensorBoard, per-class precision/recall equal to torchmetrics'."""

from __future__ import annotations

import json

import pytest
import torch
from torchmetrics.classification import MulticlassPrecision, MulticlassRecall

from nl_lightning.callbacks import ConfusionMatrixMonitor
from nl_lightning.models import TransformerLM
from tracking_utils import tb_events, tb_scalars, tiny_classifier, tiny_data, trainer


def test_image_and_per_class_scores_reach_tensorboard(tmp_path):
    model, data = tiny_classifier(), tiny_data(num_samples=256, batch_size=16)
    run = trainer(tmp_path, max_steps=8, val_check_interval=4, limit_val_batches=None,
                  callbacks=[ConfusionMatrixMonitor(labels=["a", "b", "c"])])
    run.fit(model, data)
    acc = tb_events(run.logger.log_dir)
    assert acc.Tags()["images"] == ["val/confusion_matrix"]
    assert [e.step for e in acc.Images("val/confusion_matrix")] == [3, 7]
    assert acc.Images("val/confusion_matrix")[-1].encoded_image_string[:4] == b"\x89PNG"

    # reference: the final model's predictions on the whole validation set, scored by torchmetrics
    x, y = data.val_set.tensors
    with torch.no_grad():
        preds = model.eval()(x).argmax(-1)
    saved = json.loads((tmp_path / "runs/test/version_0/confusion_matrix.json").read_text())
    assert torch.equal(torch.tensor(saved["matrix"]).sum(1), torch.bincount(y, minlength=3))  # every sample once
    scalars = tb_scalars(run.logger.log_dir)
    precision = MulticlassPrecision(3, average=None, zero_division=0)(preds, y)
    recall = MulticlassRecall(3, average=None, zero_division=0)(preds, y)
    for i, label in enumerate("abc"):
        assert scalars[f"val/precision/{label}"][-1][1] == pytest.approx(float(precision[i]), abs=1e-6)
        assert scalars[f"val/recall/{label}"][-1][1] == pytest.approx(float(recall[i]), abs=1e-6)


def test_needs_a_classifier(tmp_path, tiny_config):
    run = trainer(tmp_path, logger=False, callbacks=[ConfusionMatrixMonitor()])
    with pytest.raises(ValueError, match=r"ConfusionMatrixMonitor needs a classifier: TransformerLM"):
        run.fit(TransformerLM(tiny_config()))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"num_classes=1\) needs at least 2 classes"):
        ConfusionMatrixMonitor(num_classes=1)
    with pytest.raises(ValueError, match="2 labels for num_classes=3"):
        ConfusionMatrixMonitor(num_classes=3, labels=["a", "b"])
