"""Hyperparameter and architecture search over LightningCLI fit configs, on Optuna.

``nl-lightning tune --config configs/tune/<name>.yaml`` (see docs/tuning.md). The search-space
core (``space``, ``keys``, ``config``, ``samplers``, ``storage``, ``fit_config``) imports no Trainer;
trials run ``nl-lightning fit`` through ``nl_lightning.cli.build_cli`` with ``TrialPruningCallback``.
"""

from nl_lightning.tune.config import LatencyConfig, TuneConfig, load_tune_config
from nl_lightning.tune.space import ParamSpec, SearchSpace

__all__ = ["LatencyConfig", "ParamSpec", "SearchSpace", "TuneConfig", "load_tune_config", "run_study", "tune"]


def __getattr__(name: str):  # the study runner imports Lightning: only when asked for
    if name in ("run_study", "tune"):
        from nl_lightning.tune import study

        return getattr(study, name)
    raise AttributeError(f"module 'nl_lightning.tune' has no attribute {name!r}")
