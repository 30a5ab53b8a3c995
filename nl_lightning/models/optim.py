"""Optimizer and LR-scheduler factory driven by two small config dataclasses.

Weight decay applies to matrices only: biases, norm weights and embeddings are excluded (the
GPT-2 / nanoGPT convention). Schedules are torch's own ``lr_scheduler`` classes, stepped per
optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.optim import lr_scheduler as sched

from nl_lightning.errors import ConfigError
from nl_lightning.nn.position import LearnedPositionalEmbedding

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "linear", "onecycle", "constant", "none")


@dataclass
class OptimizerConfig:
    """The optimizer of a task module, in plain values: AdamW, Adam or SGD, decay on matrices only."""

    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    momentum: float = 0.9
    """SGD only."""
    nesterov: bool = False
    """SGD only."""

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"OptimizerConfig.name={self.name!r} is not supported; choose one of {OPTIMIZERS}.")
        if self.lr <= 0:
            raise ConfigError(f"OptimizerConfig.lr={self.lr} must be > 0.")
        if self.weight_decay < 0:
            raise ConfigError(f"OptimizerConfig.weight_decay={self.weight_decay} must be >= 0.")
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ConfigError(
                "OptimizerConfig.nesterov=True needs name='sgd' and momentum > 0, "
                f"got name={self.name!r}, momentum={self.momentum}."
            )
        self.betas = tuple(self.betas)  # YAML gives a list


@dataclass
class SchedulerConfig:
    """The learning-rate schedule, in plain values: torch ``lr_scheduler`` classes stepped per optimizer step."""

    name: Literal["cosine", "linear", "onecycle", "constant", "none"] = "cosine"
    """cosine / linear decay after warm-up, one-cycle, constant after warm-up, or none."""
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    """Final LR as a fraction of the peak (cosine and linear)."""
    cycle_momentum: bool = False
    """onecycle only: also cycle momentum (SGD momentum / Adam beta1) inversely to the LR, as in
    Smith's paper. Off by default, so the optimizer's configured momentum / betas are kept."""

    def __post_init__(self) -> None:
        if self.name not in SCHEDULERS:
            raise ConfigError(f"SchedulerConfig.name={self.name!r} is not supported; choose one of {SCHEDULERS}.")
        if self.warmup_steps < 0:
            raise ConfigError(f"SchedulerConfig.warmup_steps={self.warmup_steps} must be >= 0.")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"SchedulerConfig.min_lr_ratio={self.min_lr_ratio} must be in [0, 1].")
        if self.cycle_momentum and self.name != "onecycle":
            raise ConfigError(
                f"SchedulerConfig.cycle_momentum=True applies to name='onecycle' only, got name={self.name!r}; "
                "remove cycle_momentum or use the one-cycle schedule."
            )


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: decayed matrices, and undecayed biases / norm weights / embeddings."""
    no_decay_ids = set()
    for module in model.modules():
        if isinstance(module, (nn.Embedding, LearnedPositionalEmbedding)):
            no_decay_ids.add(id(module.weight))
        if isinstance(getattr(module, "cls_token", None), nn.Parameter):  # a learned [CLS] embedding
            no_decay_ids.add(id(module.cls_token))
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or id(param) in no_decay_ids else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The torch optimizer ``cfg`` names, over :func:`param_groups` (no weight decay on biases and norms)."""
    groups = param_groups(model, cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    if cfg.name == "adam":
        # Adam's weight_decay is L2 in the gradient; kept per group so exclusions still hold.
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, total_steps: int
) -> sched.LRScheduler | None:
    """A per-step schedule over ``total_steps`` optimizer steps (None for ``name='none'``)."""
    if cfg.name == "none":
        return None
    if total_steps < 1:
        raise ConfigError(
            f"The '{cfg.name}' schedule needs a finite number of steps, got {total_steps}; "
            "set trainer.max_steps or trainer.max_epochs."
        )
    warmup = min(cfg.warmup_steps, total_steps - 1)
    if cfg.name == "onecycle":
        max_lrs = [g["lr"] for g in optimizer.param_groups]
        pct = max(warmup, 1) / total_steps if total_steps > 1 else 0.5
        return sched.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total_steps, pct_start=min(pct, 0.99),
                                cycle_momentum=cfg.cycle_momentum)
    decay_steps = max(total_steps - warmup, 1)
    if cfg.name == "cosine":
        base = min(g["lr"] for g in optimizer.param_groups)
        main = sched.CosineAnnealingLR(optimizer, T_max=decay_steps, eta_min=base * cfg.min_lr_ratio)
    elif cfg.name == "linear":
        main = sched.LinearLR(optimizer, start_factor=1.0, end_factor=cfg.min_lr_ratio, total_iters=decay_steps)
    else:  # constant
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup == 0:
        return main
    ramp = sched.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return sched.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
