"""Experiment tracking cores: backend checks, gradient statistics, logger capabilities, confusion
scores, run metadata, training curves and the MLflow registry. Thin callbacks in
``nl_lightning.callbacks`` call these; the backends are Lightning's own loggers."""

from nl_lightning.track.backends import BACKENDS, TrackingSetupError, check_loggers, check_tracking_uri, check_writable
from nl_lightning.track.curves import plot_curves, read_scalars, resolve_run_dir
from nl_lightning.track.grad_stats import first_nonfinite_grad, grad_norms, update_ratios
from nl_lightning.track.metadata import run_metadata

__all__ = [
    "BACKENDS", "TrackingSetupError", "check_loggers", "check_tracking_uri", "check_writable", "first_nonfinite_grad",
    "grad_norms", "plot_curves", "read_scalars", "resolve_run_dir", "run_metadata", "update_ratios",
]
