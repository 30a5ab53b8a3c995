"""Tracking set-up applied to a parsed LightningCLI config, before any class is built.

- Each logger's package must be installed (else the error names ``pip install 'nl-lightning[track]'``).
- Loggers left at Lightning's unnamed default (``lightning_logs``) are named after the run:
  ``trainer.default_root_dir``'s last part (``runs/char_lm`` -> ``char_lm``), so a fragment from
  ``configs/track/`` keeps ``runs/<name>/version_N`` for any fit config. An MLflow
  ``artifact_location`` given as a relative path becomes an absolute ``file:`` URI, and a W&B
  ``save_dir`` an absolute path.
- An MLflow ``tracking_uri`` must be reachable (a local store writable) before the logger opens it.
- ``--config .../track/<name>.yaml`` naming no shipped fragment is an unknown backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nl_lightning.track.backends import BACKENDS, check_tracking_uri, require_logger, unknown_backend

UNNAMED = "lightning_logs"  # Lightning's default logger name / MLflow experiment / W&B project
NAME_FIELDS = {"TensorBoardLogger": "name", "CSVLogger": "name", "MLFlowLogger": "experiment_name",
               "WandbLogger": "project"}


def logger_specs(trainer: Any) -> list[Any]:
    """The ``class_path``/``init_args`` entries of ``trainer.logger`` (one, a list, or none)."""
    logger = getattr(trainer, "logger", None)
    specs = logger if isinstance(logger, (list, tuple)) else [logger]
    return [s for s in specs if getattr(s, "class_path", None)]


def run_name(trainer: Any) -> str | None:
    root = getattr(trainer, "default_root_dir", None)
    name = Path(str(root)).name if root else ""
    return name or None


def prepare_loggers(config: Any) -> None:
    """Check packages and fill names of ``config.trainer.logger`` in place (a jsonargparse Namespace)."""
    trainer = getattr(config, "trainer", None)
    if trainer is None:
        return
    name = run_name(trainer)
    for spec in logger_specs(trainer):
        require_logger(spec.class_path)
        init = spec.init_args
        if init is None:
            continue
        field = NAME_FIELDS.get(spec.class_path.rsplit(".", 1)[-1])
        if name and field and getattr(init, field, None) in (None, UNNAMED):
            setattr(init, field, name)
        if spec.class_path.endswith("MLFlowLogger") and getattr(init, "tracking_uri", None):
            # before the logger is built: building it already opens (or creates) the store
            check_tracking_uri(init.tracking_uri, "trainer.logger MLFlowLogger tracking_uri")
        if spec.class_path.endswith("WandbLogger") and getattr(init, "save_dir", None):
            init.save_dir = str(Path(init.save_dir).resolve())  # wandb resolves it against its first cwd
        location = getattr(init, "artifact_location", None)
        if location and "://" not in str(location) and not str(location).startswith("file:"):
            setattr(init, "artifact_location", Path(location).resolve().as_uri())


def check_track_fragments(args: Sequence[Any]) -> None:
    """Raise ``TrackingSetupError`` for ``--config <dir>/track/<name>.yaml`` files that do not exist."""
    args = [str(a) for a in args]
    paths = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    paths += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    for path in map(Path, paths):
        if path.parent.name == "track" and not path.exists():
            others = sorted(p.stem for p in path.parent.glob("*.yaml") if p.stem not in BACKENDS)
            error = unknown_backend(path.stem, f"--config {path}")
            if others:
                error.args = (f"{error.args[0]} Monitor fragments there: {', '.join(others)}.",)
            raise error
