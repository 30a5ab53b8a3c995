"""Every private attribute of Lightning and Optuna that nl_lightning reads, in one place.

Each function exists because the library has no public way to the value (its docstring says why).
``tests/test_compat.py`` exercises each one against the installed versions and fails when a version
lies outside the range below, the versions these accesses were checked against: a release that
moves one breaks that test, not a user's run. To widen a range, run that test on the new version
and read the library's source behind each function.

Private *methods* we override rather than read are pinned by the same test:
``LightningCLI._parse_ckpt_path`` (``cli.py`` checks a checkpoint before Lightning unpickles it).
"""

from __future__ import annotations

from typing import Any

#: Lightning versions whose private attributes below were read and tested (pyproject: lightning>=2.6.4,<2.7).
LIGHTNING_CHECKED = ">=2.6.4,<2.7"
#: Optuna versions likewise (pyproject: optuna>=4.9; checked on 4.9's and 5.1's source).
OPTUNA_CHECKED = ">=4.9,<5.2"

__all__ = [
    "LIGHTNING_CHECKED", "OPTUNA_CHECKED", "logged_step", "lr_attr_name", "mlflow_tracking_uri",
    "set_available_flops", "trial_id",
]


def logged_step(trainer: Any) -> int:
    """The step Lightning's logger connector gives ``self.log`` values during fit: batches that stepped
    the optimizer. ``trainer.global_step`` counts optimizer steps instead (several per batch under
    manual optimization), so a figure logged at it would not line up with its scalars."""
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def set_available_flops(monitor: Any, flops: float | None) -> None:
    """Give Lightning's ``ThroughputMonitor`` a peak FLOP/s for MFU after its ``setup``: ``setup`` looks the
    peak up in Lightning's table (CUDA / TPU only) and builds one ``Throughput`` per stage with it,
    and the monitor takes no peak as an argument."""
    monitor.available_flops = flops
    for throughput in monitor._throughputs.values():
        throughput.available_flops = flops


def mlflow_tracking_uri(logger: Any) -> str | None:
    """The tracking URI an ``MLFlowLogger`` was given. Its public ``experiment`` (an ``MlflowClient``
    with a ``tracking_uri``) connects and creates the run, which the checks before training must not do."""
    return logger._tracking_uri


def lr_attr_name(module: Any, attr_name: str = "") -> str:
    """The attribute holding a module's learning rate, found as Lightning's LR finder finds it
    (``lr`` / ``learning_rate`` on the module or its ``hparams``; an error naming both otherwise)."""
    from lightning.pytorch.tuner.lr_finder import _determine_lr_attr_name

    return _determine_lr_attr_name(module, attr_name)


def trial_id(trial: Any) -> int:
    """An ``optuna.Trial``'s storage id, which ``optuna.Trial(study, trial_id)`` takes to rebuild the trial
    in another process; Optuna exposes the trial's ``number`` only (unique per study, not per storage)."""
    return int(trial._trial_id)
