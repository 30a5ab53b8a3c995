"""The fit config of one trial (or of the best trial): the user's YAML with sampled keys, a seed and
its own run folder. Pure dict work on the YAML; no lightning import.

Shipped fit configs log with ``TensorBoardLogger(save_dir=runs, name=<name>)`` and checkpoint with a
``ModelCheckpoint`` without ``dirpath`` (so into the first logger's ``log_dir``). A trial points
its file loggers at ``<study>/trial_<n>`` (``name: ""``, ``version: trial_<n>``), so logs, the saved
config and checkpoints of every trial land in that one folder; a ``ModelCheckpoint`` that names a
``dirpath`` is sent to ``<that folder>/checkpoints``. Other loggers (MLflow, W&B) are left as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nl_lightning.tune.keys import canonical_key, get_key, with_keys

FILE_LOGGERS = ("TensorBoardLogger", "CSVLogger")
TRIAL_DEFAULTS: dict[str, Any] = {"trainer.enable_progress_bar": False}
"""Set in trials unless ``overrides`` say otherwise: a trial's output goes to its log file."""
BUDGET_KEYS = tuple(f"trainer.{k}" for k in (
    "max_epochs", "min_epochs", "max_steps", "min_steps", "max_time", "limit_train_batches", "limit_val_batches",
    "val_check_interval", "check_val_every_n_epoch",
))
"""Overrides that set how long a trial trains: trials use them, ``best.yaml`` keeps the fit config's own
(the full budget) and lists them in a comment (see ``trial_only``)."""
WORKERS_KEY = "data.init_args.num_workers"


def trial_dir_name(number: int) -> str:
    return f"trial_{number:04d}"


def compose(base: Mapping[str, Any], overrides: Mapping[str, Any], params: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """``base`` with the study-wide overrides, then the trial's parameters, then its seed."""
    config = with_keys(with_keys(base, overrides), params)
    config["seed_everything"] = seed
    return config


def trial_defaults(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Settings every trial gets unless ``overrides`` set them: no progress bar, and no DataLoader
    workers (each short trial would start them again; in-process reads are faster for it)."""
    defaults = dict(TRIAL_DEFAULTS)
    workers = get_key(base, WORKERS_KEY)
    if isinstance(workers, int) and workers > 0 and WORKERS_KEY not in overrides:
        defaults[WORKERS_KEY] = 0
    return defaults


def trial_only(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides that shorten a trial's training (``BUDGET_KEYS``), which ``best.yaml`` leaves out."""
    return {key: value for key, value in overrides.items() if canonical_key(base, key) in BUDGET_KEYS}


def trial_fit_config(
    base: Mapping[str, Any], overrides: Mapping[str, Any], params: Mapping[str, Any], seed: int, run_dir: Path,
) -> dict[str, Any]:
    """The config a trial trains with: everything it writes goes under ``run_dir``."""
    config = compose(base, {**trial_defaults(base, overrides), **overrides}, params, seed)
    place_outputs(config, run_dir.parent, name="", version=run_dir.name)
    return config


def best_fit_config(
    base: Mapping[str, Any], overrides: Mapping[str, Any], params: Mapping[str, Any], seed: int, save_dir: Path,
    name: str = "best",
) -> dict[str, Any]:
    """A runnable fit config of a trial's keys and seed at the fit config's full budget (the trial-only
    ``overrides`` left out; see ``trial_only``), running in ``save_dir/name/version_N``."""
    budget = trial_only(base, overrides)
    config = compose(base, {k: v for k, v in overrides.items() if k not in budget}, params, seed)
    place_outputs(config, save_dir, name=name, version=None)
    return config


def place_outputs(config: dict[str, Any], save_dir: Path, name: str, version: str | None) -> None:
    """Point file loggers, ``default_root_dir`` and checkpoint folders of ``config`` (in place) at
    ``save_dir/name/version`` (``version`` None: the loggers' next ``version_N``)."""
    trainer = config.setdefault("trainer", {})
    run_dir = Path(save_dir) / name / (version or "")
    trainer["default_root_dir"] = str(run_dir if version else Path(save_dir) / name)
    loggers = trainer.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        if _class_name(logger) in FILE_LOGGERS:
            if logger.get("init_args") is None:
                logger["init_args"] = {}
            args = logger["init_args"]
            args.update(save_dir=str(save_dir), name=name)
            if version is None:
                args.pop("version", None)
            else:
                args["version"] = version
    for callback in trainer.get("callbacks") or []:
        if _class_name(callback) == "ModelCheckpoint" and (callback.get("init_args") or {}).get("dirpath"):
            callback["init_args"]["dirpath"] = str(run_dir / "checkpoints")


def _class_name(node: Any) -> str | None:
    if isinstance(node, Mapping) and isinstance(node.get("class_path"), str):
        return node["class_path"].rsplit(".", 1)[-1]
    return None
