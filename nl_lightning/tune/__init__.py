"""Hyperparameter and architecture search over LightningCLI fit configs, on Optuna.

``nl-lightning tune --config configs/tune/<name>.yaml`` (see docs/tuning.md). The search-space
core (``space``, ``keys``, ``config``, ``samplers``, ``storage``, ``fit_config``) imports no Trainer;
trials run ``nl-lightning fit`` through ``nl_lightning.cli.build_cli`` with ``TrialPruningCallback``.
"""

from nl_lightning._lazy import lazy_exports
from nl_lightning.tune.config import LatencyConfig, TuneConfig, load_tune_config
from nl_lightning.tune.space import ParamSpec, SearchSpace

__all__ = ["LatencyConfig", "ParamSpec", "SearchSpace", "TuneConfig", "load_tune_config", "run_study", "tune"]

# The study runner imports Lightning: only when asked for.
__getattr__, __dir__ = lazy_exports(__name__, {"run_study": "nl_lightning.tune.study", "tune": "nl_lightning.tune.study"})
