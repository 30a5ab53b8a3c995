from __future__ import annotations

import importlib

import lightning as L
import pytest
import torch

from nl_lightning.compress.distill import soft_target_loss
from nl_lightning.data import CharTextDataModule, SyntheticSequenceDataModule
from nl_lightning.models import TransformerClassifier, TransformerLM, load_checkpoint
from nl_lightning.models.distill import DistillationModule

FEATURES = dict(input_dim=8, n_layers=1, max_seq_len=16, position="none", causal=False)


def _trainer(tmp_path, **kwargs) -> L.Trainer:
    return L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                     default_root_dir=tmp_path, **kwargs)


@pytest.fixture(scope="module")
def data() -> SyntheticSequenceDataModule:
    dm = SyntheticSequenceDataModule(num_samples=1024, batch_size=64)
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def teacher_ckpt(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    L.seed_everything(0, verbose=False)
    teacher = TransformerClassifier(dict(FEATURES, d_model=64, n_layers=2), num_classes=3, optimizer=dict(lr=3e-3))
    trainer = _trainer(root, max_epochs=4, limit_val_batches=0)
    trainer.fit(teacher, data)
    trainer.save_checkpoint(root / "teacher.ckpt")
    return root / "teacher.ckpt"


def _student(seed: int = 1) -> TransformerClassifier:
    L.seed_everything(seed, verbose=False)
    return TransformerClassifier(dict(FEATURES, d_model=16, n_heads=2), num_classes=3, optimizer=dict(lr=3e-3))


def _kl_to(teacher, student, loader) -> float:
    total, n = 0.0, 0
    with torch.inference_mode():
        for x, _ in loader:
            total += float(soft_target_loss(student(x), teacher(x), temperature=1.0)) * len(x)
            n += len(x)
    return total / n


def test_distilled_student_ends_closer_to_the_teacher(data, teacher_ckpt, tmp_path):
    teacher = load_checkpoint(teacher_ckpt)
    alone = _student()
    _trainer(tmp_path, max_epochs=6, limit_val_batches=0).fit(alone, data)
    distilled = DistillationModule(_student(), teacher=str(teacher_ckpt), alpha=0.9, temperature=2.0)
    _trainer(tmp_path, max_epochs=6, limit_val_batches=1).fit(distilled, data)
    kl_alone = _kl_to(teacher, alone.model.eval(), data.val_dataloader())
    kl_distilled = _kl_to(teacher, distilled.model.eval(), data.val_dataloader())
    assert kl_distilled < 0.9 * kl_alone, (kl_distilled, kl_alone)


def test_teacher_is_frozen_and_kept_out_of_optimizer_and_checkpoint(data, teacher_ckpt, tmp_path):
    teacher = load_checkpoint(teacher_ckpt)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    module = DistillationModule(_student(), teacher=teacher, alpha=0.5)
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(module, data)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.model.parameters()}
    assert {"val/kd_loss", "val/task_loss", "val/acc", "val/agreement"} <= set(trainer.callback_metrics)
    trainer.save_checkpoint(tmp_path / "distilled.ckpt")
    loaded = load_checkpoint(tmp_path / "distilled.ckpt")  # safe load; the student, without the teacher
    assert isinstance(loaded, DistillationModule) and all(k.startswith("model.") for k in loaded.state_dict())
    x = torch.randn(2, 16, 8)
    torch.testing.assert_close(loaded.model(x), module.model.eval()(x))
    student_only = TransformerClassifier(**loaded.hparams["student"]["init_args"])
    student_only.load_state_dict(loaded.state_dict())  # same keys as the student's own checkpoints


def test_language_model_distillation(tmp_path):
    L.seed_everything(0, verbose=False)
    teacher = TransformerLM(dict(n_layers=1, d_model=32, n_heads=4, max_seq_len=32))
    student = TransformerLM(dict(n_layers=1, d_model=16, n_heads=2, max_seq_len=32))
    module = DistillationModule(student, teacher=teacher, alpha=0.7, temperature=2.0)
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=1)
    trainer.fit(module, CharTextDataModule(seq_len=32, batch_size=4))
    assert torch.isfinite(trainer.callback_metrics["val/loss"])
    assert module.model is student.model and module.optimizer_config == student.optimizer_config


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: TransformerLM(dict(n_layers=1, d_model=16, n_heads=2, max_seq_len=8)), (0.5, 1.0)),
        (lambda: _student(), (0.9, 8.0)),
    ],
    ids=["language_model", "classifier"],
)
def test_alpha_and_temperature_default_by_the_students_task_and_are_recorded(make, expected):
    module = DistillationModule(make())
    assert (module.alpha, module.temperature) == expected
    assert (module.hparams["alpha"], module.hparams["temperature"]) == expected  # the checkpoint says what was used
    chosen = DistillationModule(make(), alpha=0.3, temperature=3.0)
    assert (chosen.alpha, chosen.temperature, chosen.hparams["temperature"]) == (0.3, 3.0, 3.0)


def test_student_from_class_path_dict():
    module = DistillationModule({"class_path": "nl_lightning.models.TransformerClassifier",
                                 "init_args": {"config": dict(FEATURES, d_model=16, n_heads=2), "num_classes": 3}})
    assert module.model.head.out_features == 3 and module.hparams["teacher"] is None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(alpha=1.5), ValueError, r"alpha=1.5 must be in \[0, 1\]"),
        (dict(temperature=-1.0), ValueError, "temperature=-1.0 must be > 0"),
        (dict(teacher=3), TypeError, "teacher must be an nn.Module or a checkpoint path, got int"),
        (dict(student={"class_path": "os.system"}), ValueError, "class 'os.system', which is not on nl_lightning's allow-list"),
        (dict(student={"class_path": "nl_lightning._io.write_json", "init_args": {"path": "x"}}), ValueError,
         "'nl_lightning._io.write_json', which is not on nl_lightning's allow-list"),
        (dict(student={"class_path": "nl_lightning.models.TransformerClassifier", "init_args": {"evil": 1}}), ValueError,
         r"stored arguments do not fit nl_lightning.models.classifier.TransformerClassifier .*unexpected keyword argument 'evil'"),
        (dict(student=torch.nn.Linear(2, 2)), TypeError, "student must be an nl_lightning task module"),
    ],
)
def test_distillation_module_errors(kwargs, error, match):
    args = dict(student=_student(), teacher=None) | kwargs
    with pytest.raises(error, match=match):
        DistillationModule(**args)


def test_regression_student_is_rejected():
    with pytest.raises(ValueError, match="student's task is 'regression'"):
        DistillationModule(TransformerClassifier(dict(FEATURES, d_model=16, n_heads=2), num_classes=1,
                                                 task="regression"))


def test_training_without_a_teacher_fails_at_setup(data, tmp_path):
    with pytest.raises(RuntimeError, match="has no teacher: pass teacher=<module or checkpoint path>"):
        _trainer(tmp_path, max_epochs=1).fit(DistillationModule(_student()), data)


def test_student_built_by_lightning_cli_records_its_own_arguments(tmp_path):
    """LightningCLI hands nested LightningModules the top-level hparams; the student spec must not leak."""
    from nl_lightning.cli import build_cli

    config = tmp_path / "distill.yaml"
    config.write_text(
        "trainer: {logger: false}\n"
        "model:\n"
        "  class_path: nl_lightning.models.distill.DistillationModule\n"
        "  init_args:\n"
        "    alpha: 0.8\n"
        "    student:\n"
        "      class_path: nl_lightning.models.TransformerClassifier\n"
        "      init_args: {num_classes: 4, config: {input_dim: 8, n_layers: 1, d_model: 16, n_heads: 2,"
        " position: none, causal: false}}\n"
        "data: {class_path: nl_lightning.data.SyntheticSequenceDataModule}\n"
    )
    cli = build_cli(["--config", str(config)], run=False)
    spec = cli.model.hparams["student"]
    module, _, name = spec["class_path"].rpartition(".")  # older jsonargparse writes the shortest import path
    assert getattr(importlib.import_module(module), name) is TransformerClassifier
    assert spec["init_args"]["num_classes"] == 4 and "alpha" not in spec["init_args"]
    rebuilt = DistillationModule(student=spec)
    assert rebuilt.state_dict().keys() == cli.model.state_dict().keys()
