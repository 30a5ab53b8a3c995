"""Iterative pruning schedules: the sparsity to reach after each epoch, growing to a target.

``cubic`` is Zhu & Gupta (2017), "To prune, or not to prune": prune fast while there is much
redundancy, then slowly. Training continues between steps, so the network recovers as it goes.
"""

from __future__ import annotations

from typing import Literal

from nl_lightning.errors import ConfigError

ScheduleCurve = Literal["linear", "cubic", "constant"]
CURVES: tuple[str, ...] = ("linear", "cubic", "constant")


def validate_schedule(start_epoch: int, end_epoch: int | None, every_n_epochs: int, curve: str) -> None:
    if curve not in CURVES:
        raise ConfigError(f"Pruning curve={curve!r} is not supported; choose one of {CURVES}.")
    if start_epoch < 0:
        raise ConfigError(f"Pruning start_epoch={start_epoch} must be >= 0.")
    if end_epoch is not None and end_epoch < start_epoch:
        raise ConfigError(
            f"Pruning end_epoch={end_epoch} is before start_epoch={start_epoch}; set end_epoch >= start_epoch "
            "(or None to prune once at start_epoch)."
        )
    if every_n_epochs < 1:
        raise ConfigError(f"Pruning every_n_epochs={every_n_epochs} must be >= 1.")


def target_sparsity(
    epoch: int, final: float, start_epoch: int = 0, end_epoch: int | None = None, curve: ScheduleCurve = "cubic",
) -> float:
    """Sparsity to hold after ``epoch``: 0 before ``start_epoch``, ``final`` from ``end_epoch`` on.

    >>> [round(target_sparsity(epoch, 0.5, start_epoch=1, end_epoch=3), 3) for epoch in range(5)]
    [0.0, 0.352, 0.481, 0.5, 0.5]
    """
    end = start_epoch if end_epoch is None else end_epoch
    if epoch < start_epoch:
        return 0.0
    if epoch >= end or curve == "constant":
        return final
    progress = (epoch - start_epoch + 1) / (end - start_epoch + 1)  # the first step already prunes
    if curve == "linear":
        return final * progress
    return final * (1.0 - (1.0 - progress) ** 3)


def is_pruning_epoch(epoch: int, start_epoch: int, end_epoch: int | None, every_n_epochs: int) -> bool:
    """Prune on ``start_epoch``, every ``every_n_epochs`` after it, and always on ``end_epoch``."""
    end = start_epoch if end_epoch is None else end_epoch
    if epoch < start_epoch or epoch > end:
        return False
    return epoch == end or (epoch - start_epoch) % every_n_epochs == 0


def step_amount(current: float, target: float) -> float:
    """The fraction of the *remaining* weights to prune to move from ``current`` to ``target``.

    torch's pruning compounds (each call prunes a share of what is left), hence the division.
    """
    if target <= current:
        return 0.0
    return (target - current) / (1.0 - current)


def step_count(zeros: int, total: int, target: float) -> int:
    """How many more weights to prune for exactly ``round(target * total)`` zeros (global pruning)."""
    return max(0, round(target * total) - zeros)
