"""GradientMonitor: norms read back from TensorBoard, the NaN/Inf policies, resume without duplicates."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from nl_lightning.callbacks import GradientMonitor, NonFiniteGradientError
from tracking_utils import tb_scalars, tiny_classifier, tiny_data, trainer

BAD_STEP = 2


class NaNAtStep(L.LightningModule):
    """Two parameters; at ``BAD_STEP`` the gradient of ``head.bias`` (only) becomes NaN."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        out = self.head(self.body(batch[0])).mean()
        scale = torch.tensor(float("nan") if self.global_step == BAD_STEP else 1.0)
        return out + (self.head.bias * scale).sum() - self.head.bias.sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(64, 4))
        return torch.utils.data.DataLoader(data, batch_size=8)


class WeightRecorder(L.Callback):
    def __init__(self) -> None:
        self.before, self.after = {}, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before[trainer.global_step] = {k: v.clone() for k, v in pl_module.state_dict().items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after[trainer.global_step - 1] = {k: v.clone() for k, v in pl_module.state_dict().items()}


def test_raise_names_the_parameter_and_the_step(tmp_path):
    run = trainer(tmp_path, logger=False, max_steps=5, callbacks=[GradientMonitor(nonfinite="raise")])
    with pytest.raises(NonFiniteGradientError, match=rf"NaN gradient at step {BAD_STEP} .*first in parameter 'head.bias'"):
        run.fit(NaNAtStep())


def test_skip_step_leaves_every_weight_unchanged_for_that_step(tmp_path):
    recorder = WeightRecorder()
    monitor = GradientMonitor(nonfinite="skip_step")
    run = trainer(tmp_path, max_steps=5, callbacks=[monitor, recorder])
    with pytest.warns(UserWarning, match=rf"step {BAD_STEP} .*'head.bias'.*Skipped"):
        run.fit(NaNAtStep())
    for name, value in recorder.before[BAD_STEP].items():
        torch.testing.assert_close(recorder.after[BAD_STEP][name], value, rtol=0, atol=0)
        assert torch.isfinite(recorder.after[4][name]).all()
    # the steps around it do update (momentum + weight decay would move weights even with a zero gradient)
    assert not torch.equal(recorder.before[BAD_STEP + 1]["body.weight"], recorder.after[BAD_STEP + 1]["body.weight"])
    assert monitor.nonfinite_steps == [BAD_STEP]
    assert tb_scalars(run.logger.log_dir)["grad/nonfinite_steps"] == [(BAD_STEP, 1.0)]


def test_warn_policy_lets_the_step_through(tmp_path):
    recorder = WeightRecorder()
    run = trainer(tmp_path, logger=False, max_steps=3, callbacks=[GradientMonitor(nonfinite="warn"), recorder])
    with pytest.warns(UserWarning, match=rf"NaN gradient at step {BAD_STEP}"):
        run.fit(NaNAtStep())
    assert torch.isnan(recorder.after[BAD_STEP]["head.bias"]).all()


def test_norms_and_update_ratios_reach_tensorboard_every_n_steps(tmp_path):
    run = trainer(tmp_path, max_steps=12, log_every_n_steps=4, callbacks=[GradientMonitor(every_n_steps=4)])
    model = tiny_classifier()
    run.fit(model, tiny_data())
    scalars = tb_scalars(run.logger.log_dir)
    assert [s for s, _ in scalars["grad/norm"]] == [3, 7, 11]  # same steps as Lightning's own train/loss
    assert [s for s, _ in scalars["train/loss"]] == [3, 7, 11]
    layers = {t for t in scalars if t.startswith("grad/norm/")}
    assert layers == {f"grad/norm/{name.rsplit('.', 1)[0]}" for name, _ in model.named_parameters()}
    assert [s for s, _ in scalars["grad/update_ratio/pg0"]] == [3, 7, 11]
    # the layer norms compose into the global norm (sqrt of the sum of squares)
    total = sum(dict(scalars[t])[7] ** 2 for t in layers) ** 0.5
    assert dict(scalars["grad/norm"])[7] == pytest.approx(total, rel=1e-5)


def test_resume_neither_duplicates_nor_loses_state(tmp_path):
    monitor = GradientMonitor(every_n_steps=2, nonfinite="skip_step")
    first = trainer(tmp_path, max_steps=4, log_every_n_steps=2, callbacks=[monitor], enable_checkpointing=True)
    with pytest.warns(UserWarning, match="Skipped"):
        first.fit(NaNAtStep())
    ckpt = tmp_path / "mid.ckpt"
    first.save_checkpoint(ckpt)
    resumed_monitor = GradientMonitor(every_n_steps=2, nonfinite="skip_step")
    second = trainer(tmp_path, max_steps=8, log_every_n_steps=2, callbacks=[resumed_monitor])
    second.fit(NaNAtStep(), ckpt_path=ckpt)
    assert resumed_monitor.nonfinite_steps == [BAD_STEP]  # restored, not reset, not counted twice
    steps_1 = [s for s, _ in tb_scalars(first.logger.log_dir)["grad/norm"]]
    steps_2 = [s for s, _ in tb_scalars(second.logger.log_dir)["grad/norm"]]
    assert steps_1 == [1, 3] and steps_2 == [5, 7]  # BAD_STEP 2 is not a log step; no overlap, no gap


@pytest.mark.parametrize("kwargs, match", [
    ({"every_n_steps": 0}, r"every_n_steps=0\) must be >= 1"),
    ({"nonfinite": "ignore"}, r"nonfinite='ignore'\): choose one of \('warn', 'raise', 'skip_step'\)"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradientMonitor(**kwargs)
