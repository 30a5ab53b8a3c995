from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nl_lightning.compress.distill import distillation_loss, soft_target_loss


def _by_hand(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, alpha: float, T: float) -> float:
    """The formula written out element by element: alpha T^2 KL(p_t || p_s) + (1 - alpha) CE."""
    s, t = student.reshape(-1, student.size(-1)).tolist(), teacher.reshape(-1, teacher.size(-1)).tolist()
    labels = targets.reshape(-1).tolist()
    kl = ce = 0.0
    for row_s, row_t, label in zip(s, t, labels):
        zs = sum(math.exp(v / T) for v in row_s)
        zt = sum(math.exp(v / T) for v in row_t)
        for vs, vt in zip(row_s, row_t):
            ps, pt = math.exp(vs / T) / zs, math.exp(vt / T) / zt
            kl += pt * (math.log(pt) - math.log(ps))
        ce -= row_s[label] - math.log(sum(math.exp(v) for v in row_s))
    n = len(labels)
    return alpha * T * T * kl / n + (1 - alpha) * ce / n


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 7)], ids=["classifier", "lm"])
@pytest.mark.parametrize(("alpha", "T"), [(0.5, 2.0), (0.9, 4.0), (0.0, 1.0), (1.0, 1.0)])
def test_distillation_loss_matches_hand_computation(shape, alpha, T):
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g) * 3
    targets = torch.randint(0, shape[-1], shape[:-1], generator=g)
    total, soft, hard = distillation_loss(student, teacher, targets, alpha, T)
    assert total.item() == pytest.approx(_by_hand(student, teacher, targets, alpha, T), rel=1e-5)
    assert hard.item() == pytest.approx(F.cross_entropy(student.reshape(-1, shape[-1]), targets.reshape(-1)).item())


def test_soft_loss_is_zero_for_identical_logits_and_gradients_flow_to_student_only():
    student = torch.randn(3, 5, requires_grad=True)
    teacher = torch.randn(3, 5, requires_grad=True)
    assert soft_target_loss(student.detach(), student.detach()).item() == pytest.approx(0.0, abs=1e-6)
    total, _, _ = distillation_loss(student, teacher, torch.tensor([0, 1, 2]))
    total.backward()
    assert student.grad is not None and teacher.grad is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(alpha=1.5), r"alpha=1.5 must be in \[0, 1\]"),
        (dict(temperature=0.0), "temperature=0.0 must be > 0"),
    ],
)
def test_distillation_loss_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        distillation_loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1]), **kwargs)


def test_shape_mismatch_error():
    with pytest.raises(ValueError, match=r"Student logits \(2, 3\) and teacher logits \(2, 4\) differ"):
        soft_target_loss(torch.randn(2, 3), torch.randn(2, 4))
