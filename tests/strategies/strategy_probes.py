"""Test-only callbacks that report what happened inside a (possibly multi-process) fit.

They are named by ``class_path`` from the test YAMLs, so the CLI subprocesses import this module
through ``PYTHONPATH``. Each rank writes ``rank<r>.json`` (and ``rank<r>.pt``, its final weights).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch


def _full(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def grad_norm(module: torch.nn.Module) -> float:
    grads = [_full(p.grad).detach().double() for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))) if grads else 0.0


class RankReport(L.Callback):
    """Per rank: batches seen, global_step, world size, parameters as the optimizer sees them, weights.

    Parameters are inspected in ``on_before_optimizer_step``: after backward FSDP2 has resharded
    every module, the root included (the root keeps its parameters unsharded after a forward).
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.batches = 0
        self.param_types: dict[str, str] = {}
        self.placements: list[str] = []
        self.local_numel = self.full_numel = 0
        self.module_types: list[str] = []

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if self.param_types:
            return
        params = list(pl_module.named_parameters())
        self.param_types = {name: type(p).__name__ for name, p in params}
        self.placements = sorted({str(getattr(p, "placements", None)) for _, p in params})
        self.local_numel = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for _, p in params)
        self.full_numel = sum(p.numel() for _, p in params)  # a DTensor reports its global size
        self.module_types = sorted({type(m).__name__ for m in pl_module.model.modules() if "FSDP" in type(m).__name__})

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.batches += 1

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rank = trainer.global_rank
        weights = {k: _full(v).detach().cpu().clone() for k, v in pl_module.state_dict().items()}  # collective
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(weights, self.out_dir / f"rank{rank}.pt")
        report = {
            "rank": rank, "world_size": trainer.world_size, "strategy": type(trainer.strategy).__name__,
            "batches": self.batches, "global_step": trainer.global_step,
            "param_types": self.param_types, "placements": self.placements, "module_types": self.module_types,
            "local_numel": self.local_numel, "full_numel": self.full_numel,
        }
        (self.out_dir / f"rank{rank}.json").write_text(json.dumps(report))


class GradNormProbe(L.Callback):
    """Gradient norm before clipping (``on_before_optimizer_step``) and after it.

    Lightning clips after ``on_before_optimizer_step`` and before ``optimizer.step``; the grads
    are zeroed only in the next step's closure, so ``on_train_batch_end`` of a batch that ended
    an accumulation window still sees the clipped gradients that were applied.
    """

    def __init__(self) -> None:
        self.before: list[float] = []
        self.after: list[float] = []
        self.batch_ends_with_step: list[bool] = []
        self._step = 0

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        self.before.append(grad_norm(pl_module))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        stepped = trainer.global_step != self._step
        self.batch_ends_with_step.append(stepped)
        if stepped:
            self._step = trainer.global_step
            self.after.append(grad_norm(pl_module))


class InitialWeights(L.Callback):
    """Each rank's full weights when fit starts (after sharding), as ``initial<r>.pt``: with ``RankReport``'s
    final ``rank<r>.pt`` a test sees which tensors training changed (LoRA: the adapters only)."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        weights = {k: _full(v).detach().cpu().clone() for k, v in pl_module.state_dict().items()}  # collective
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(weights, self.out_dir / f"initial{trainer.global_rank}.pt")
