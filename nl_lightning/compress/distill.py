"""Knowledge distillation loss (Hinton et al., 2015): match the teacher's softened distribution.

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * task_loss

The ``T^2`` keeps the soft term's gradients on the scale of the hard term's as ``T`` grows. Logits
of any shape (..., C) work: LM logits (B, T, V) count every position as one prediction.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from nl_lightning.errors import ConfigError


def validate_distillation(alpha: float, temperature: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(
            f"Distillation alpha={alpha} must be in [0, 1] (weight of the teacher term; 0.5-0.9 is usual)."
        )
    if temperature <= 0:
        raise ConfigError(f"Distillation temperature={temperature} must be > 0 (1-4 is usual).")


def soft_target_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0) -> Tensor:
    """``T^2 * KL(p_teacher^T || p_student^T)``, averaged over predictions (rows of the last dim)."""
    if student_logits.shape != teacher_logits.shape:
        raise ConfigError(
            f"Student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ; "
            "distillation needs the same output classes / vocabulary."
        )
    s = student_logits.float().reshape(-1, student_logits.size(-1)) / temperature
    t = teacher_logits.float().reshape(-1, teacher_logits.size(-1)) / temperature
    kl = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="batchmean", log_target=True)
    return kl * temperature**2


def distillation_loss(
    student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, alpha: float = 0.5, temperature: float = 2.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """(total, soft, hard): the weighted sum, the soft-target term and the cross-entropy on ``targets``."""
    validate_distillation(alpha, temperature)
    soft = soft_target_loss(student_logits, teacher_logits.detach(), temperature)
    hard = F.cross_entropy(student_logits.float().reshape(-1, student_logits.size(-1)), targets.reshape(-1))
    return alpha * soft + (1.0 - alpha) * hard, soft, hard
