"""How much each prunable unit (attention head group, MLP channel) matters: magnitude or Taylor.

``magnitude`` is the squared L2 norm of all the weights of a unit together (its rows and columns
in every coupled matrix, as in torch-pruning's group magnitude): free, no data. ``taylor`` is the
first-order Taylor estimate of the loss change when the unit is removed (Molchanov et al. 2019,
"Importance Estimation for Neural Network Pruning"): per batch ``(sum over the unit of w * dL/dw)^2``,
summed over batches. It needs gradients, from calibration batches (``taylor_scores``) or from
training steps (``TaylorScores.update`` after each backward, as ``StructuredPruningCallback`` does).
Scores are compared only within one layer (every layer keeps the same number of units).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from nl_lightning.compress.structure import UnitMap, unit_maps, unit_sums
from nl_lightning.errors import ConfigError

__all__ = ["IMPORTANCES", "Importance", "Scores", "TaylorScores", "magnitude_scores", "taylor_scores"]

#: How a unit's importance is scored: weight magnitude, or first-order Taylor (the size of weight times gradient).
Importance = Literal["magnitude", "taylor"]
#: The accepted values of :data:`Importance`, for validation messages.
IMPORTANCES: tuple[str, ...] = ("magnitude", "taylor")
#: Module name -> one score per unit of that module (compared only within the module).
Scores = dict[str, Tensor]


@torch.no_grad()
def magnitude_scores(model: nn.Module, maps: dict[str, UnitMap] | None = None) -> Scores:
    """Per module, (n_units,) squared L2 norms of each unit's weights."""
    maps = unit_maps(model) if maps is None else maps
    scores = {}
    for name, umap in maps.items():
        module = model.get_submodule(name)
        scores[name] = sum(unit_sums(module.get_parameter(s.name).square(), s, umap.n_units) for s in umap.slices)
    return scores


class TaylorScores:
    """Accumulates first-order Taylor importance from the gradients currently in ``model``'s ``.grad``."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.maps = unit_maps(model)
        self.scores: Scores = {name: torch.zeros(m.n_units) for name, m in self.maps.items()}
        self.batches = 0

    @torch.no_grad()
    def update(self) -> None:
        """Add one batch: call after ``backward()``, before the optimizer step (and ``zero_grad``)."""
        seen = False
        for name, umap in self.maps.items():
            module = self.model.get_submodule(name)
            total = torch.zeros(umap.n_units)
            for piece in umap.slices:
                param = module.get_parameter(piece.name)
                if param.grad is not None:
                    total += unit_sums(param * param.grad, piece, umap.n_units).cpu()
                    seen = True
            self.scores[name] += total.square()
        self.batches += seen

    def state_dict(self) -> dict[str, Any]:
        """The scores accumulated so far (a callback's checkpoint state)."""
        return {"scores": {k: v.clone() for k, v in self.scores.items()}, "batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore accumulated scores; ignored when the model's units changed since they were saved."""
        scores = state.get("scores", {})
        if {k: v.numel() for k, v in scores.items()} == {k: m.n_units for k, m in self.maps.items()}:
            self.scores, self.batches = {k: v.clone().float().cpu() for k, v in scores.items()}, int(state["batches"])


def taylor_scores(
    model: nn.Module, batches: Iterable[Any], loss_fn: Callable[[nn.Module, Any], Tensor],
) -> Scores:
    """Taylor importance over calibration ``batches``; ``loss_fn(model, batch)`` returns a scalar loss.

    The model's ``.grad`` and mode are restored afterwards; its weights are not changed.
    """
    scores = TaylorScores(model)
    saved = {p: p.grad for p in model.parameters()}
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model.zero_grad(set_to_none=True)
            loss_fn(model, batch).backward()
            scores.update()
    finally:
        for p, grad in saved.items():
            p.grad = grad
        model.train(was_training)
    if scores.batches == 0:
        raise ConfigError(
            "Taylor importance got no gradients: `batches` was empty or the loss does not depend on the "
            "attention/MLP weights. Pass a few calibration batches, or use importance='magnitude'."
        )
    return scores.scores
