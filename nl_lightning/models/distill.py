"""``DistillationModule``: train a small student to match a frozen teacher (and the labels).

The student is any nl_lightning task module (``TransformerLM``, ``TransformerClassifier``); only
its network is registered (as ``self.model``), so checkpoints hold exactly the student's weights
under the same keys as the student's own checkpoints, and ``nl-lightning export`` exports the
student. The teacher is a module or a checkpoint path (loaded safely, lazily, at ``setup``); it
is frozen, kept out of the optimizer and out of checkpoints.
"""

from __future__ import annotations

import contextvars
from typing import Any

import torch
from torch import Tensor, nn

from nl_lightning.compress.distill import distillation_loss, validate_distillation
from nl_lightning.errors import ConfigError, DataError, SetupError, WrongTypeError
from nl_lightning.models.base import TaskModule, _plain
from nl_lightning.models.checkpoint import load_checkpoint
from nl_lightning.models.lm import TransformerLM
from nl_lightning.models.optim import OptimizerConfig, SchedulerConfig
from nl_lightning.models.trust import bind_arguments, resolve_class

#: (alpha, temperature) when left unset, by the student's task; measured by ``benchmarks/distill.py``.
#: A classifier teacher is almost one-hot on its training data, so its dark knowledge (which wrong
#: classes look alike) shows only at a high temperature: T=8 closed the gap to the teacher on digits
#: where T=2-4 closed half of it. An LM's next-byte distribution is already soft; flattening it
#: more blurs it: on the char LM T=1 with alpha 0.5 closed most of the gap, T=2 about a third, and
#: alpha 0.9 at T=2 nothing.
TASK_DEFAULTS: dict[str, tuple[float, float]] = {"language_model": (0.5, 1.0), "classification": (0.9, 8.0)}


class DistillationModule(TaskModule):
    """loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * task loss; batches as the student's.

    ``alpha`` and ``T`` default by the student's task (``TASK_DEFAULTS``)."""

    def __init__(
        self,
        student: TaskModule,
        teacher: nn.Module | str | None = None,
        alpha: float | None = None,
        temperature: float | None = None,
        optimizer: OptimizerConfig | None = None,
        scheduler: SchedulerConfig | None = None,
        compile: bool = False,
    ) -> None:
        """
        Args:
            student: the model to train (an nl_lightning task module, or its
                ``{"class_path": ..., "init_args": ...}``).
            teacher: a trained module, or the path of its checkpoint. None only for loading a
                finished student (training and validation need the teacher).
            alpha: weight of the teacher term (1 - alpha goes to the task loss); None = the
                student task's default (``TASK_DEFAULTS``: 0.5 for a language model, 0.9 for a classifier).
            temperature: softmax temperature of both distributions; None = the task's default
                (1 for a language model, 8 for a classifier).
            optimizer: default: the student's optimizer settings.
            scheduler: default: the student's schedule.
        """
        student, spec = _build_student(student)
        super().__init__(optimizer or student.optimizer_config, scheduler or student.scheduler_config, compile)
        task_alpha, task_temperature = TASK_DEFAULTS["language_model" if isinstance(student, TransformerLM)
                                                     else "classification"]
        alpha = task_alpha if alpha is None else alpha  # resolved before save_hyperparameters reads them
        temperature = task_temperature if temperature is None else temperature
        validate_distillation(alpha, temperature)
        if getattr(student, "task", "classification") != "classification":
            raise ConfigError(
                f"DistillationModule matches class distributions, but the student's task is {student.task!r}; "
                "use a classification or language-model student."
            )
        if teacher is not None and not isinstance(teacher, (nn.Module, str)):
            raise WrongTypeError(f"teacher must be an nn.Module or a checkpoint path, got {type(teacher).__name__}.")
        self.save_hyperparameters(ignore=["student", "teacher"])
        self.hparams["student"] = _plain(spec)
        self.hparams["teacher"] = teacher if isinstance(teacher, str) else None
        self.alpha, self.temperature = alpha, temperature
        self.model = student.model
        self._student_type = type(student).__qualname__
        # A list hides the teacher from nn.Module: no optimizer, no state_dict, no .train().
        self._teacher: list[nn.Module | str | None] = [teacher]

    @property
    def teacher(self) -> nn.Module:
        teacher = self._teacher[0]
        if teacher is None:
            raise SetupError(
                "DistillationModule has no teacher: pass teacher=<module or checkpoint path> to train or validate. "
                "(A loaded checkpoint has only the student; use `.model` for inference.)"
            )
        if isinstance(teacher, str):
            teacher = load_checkpoint(teacher, merge_lora=True)
        teacher = teacher.to(self.device).eval().requires_grad_(False)
        self._teacher[0] = teacher
        return teacher

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate", "test"):
            self.teacher  # load and check now, not mid-epoch  # noqa: B018

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        return self.model(x) if key_padding_mask is None else self.model(x, key_padding_mask)

    def _step(self, batch: Any, stage: str) -> Tensor:
        x, y, mask = _unpack(batch)
        student_logits = self(x, mask)
        with torch.no_grad():
            teacher_logits = self.teacher(x) if mask is None else self.teacher(x, mask)
        loss, soft, hard = distillation_loss(student_logits, teacher_logits, y, self.alpha, self.temperature)
        pred = student_logits.argmax(-1)
        sync = stage != "train"
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=sync)
        self.log_dict({
            f"{stage}/kd_loss": soft, f"{stage}/task_loss": hard,
            f"{stage}/acc": (pred == y).float().mean(),
            f"{stage}/agreement": (pred == teacher_logits.argmax(-1)).float().mean(),
        }, sync_dist=sync)
        return loss


def _unpack(batch: Any) -> tuple[Tensor, Tensor, Tensor | None]:
    if isinstance(batch, dict):
        x = batch.get("x", batch.get("idx"))
        y = batch.get("y", batch.get("targets"))
        if x is None or y is None:
            raise DataError(f"DistillationModule needs batch keys 'x'/'idx' and 'y'/'targets', got {sorted(batch)}.")
        return x, y, batch.get("key_padding_mask")
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1], None
    raise DataError("DistillationModule expects batches (x, y) / (idx, targets) or a dict with 'x' and 'y'.")


def _class_path(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def _build_student(student: TaskModule | dict[str, Any]) -> tuple[TaskModule, dict[str, Any]]:
    """The student and its ``{"class_path", "init_args"}`` (what the checkpoint records to rebuild it)."""
    if isinstance(student, TaskModule):
        return student, _student_spec(student)
    if not isinstance(student, dict) or "class_path" not in student:
        raise WrongTypeError(
            "student must be an nl_lightning task module or {'class_path': ..., 'init_args': {...}}, "
            f"got {type(student).__name__}."
        )
    class_path = student["class_path"]
    cls = resolve_class(class_path, TaskModule, "distillation student", "student")  # before any import
    init_args = bind_arguments(cls, _own_args(student.get("init_args") or {}), f"student {class_path}")
    # An empty context: LightningCLI's hyperparameter context (a ContextVar) must not reach the student.
    return contextvars.Context().run(cls, **init_args), {"class_path": class_path, "init_args": init_args}


def _student_spec(student: TaskModule) -> dict[str, Any]:
    hparams = dict(student.hparams)
    recorded = str(hparams.get("_class_path") or "")
    if recorded and recorded.rpartition(".")[2] != type(student).__name__:
        # LightningCLI gives every LightningModule it instantiates the *top-level* model's
        # hyperparameters, so a student built from YAML carries ours; its own are our "student" entry.
        nested = hparams.get("student")
        if isinstance(nested, dict) and "class_path" in nested:
            return {"class_path": nested["class_path"], "init_args": _own_args(nested.get("init_args") or {})}
        raise ConfigError(
            f"Cannot tell how the student ({type(student).__name__}) was built: its hyperparameters belong to "
            f"{recorded}. Pass the student as {{'class_path': ..., 'init_args': ...}} instead."
        )
    return {"class_path": _class_path(student), "init_args": _own_args(hparams)}


def _own_args(values: dict[str, Any]) -> dict[str, Any]:
    """Drop LightningCLI's bookkeeping keys (``_class_path``, ``_instantiator``)."""
    return {k: v for k, v in dict(values).items() if not k.startswith("_")}
