"""Tracking backends: the package each Lightning logger needs, and the checks run before training.

The backends themselves are Lightning's loggers (``TensorBoardLogger``, ``CSVLogger``,
``MLFlowLogger``, ``WandbLogger``), chosen by a config fragment in ``configs/track/``. What this
module adds is failing at start, with the fix in the message, instead of after the first epoch:
a missing package, a folder that cannot be written, an MLflow server that does not answer.
"""

from __future__ import annotations

import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from nl_lightning import _imports
from nl_lightning.errors import NLUserError

BACKENDS = ("tensorboard", "csv", "mlflow", "wandb", "all")
"""The fragments in ``configs/track/``: ``--config configs/track/<name>.yaml``."""

DEFAULT_MLFLOW_URI = "sqlite:///runs/mlflow.db"

# logger class name -> (flag in nl_lightning._imports, the package it needs)
LOGGER_PACKAGES: dict[str, tuple[str, str]] = {
    "TensorBoardLogger": ("TENSORBOARD_AVAILABLE", "tensorboard"),
    "MLFlowLogger": ("MLFLOW_AVAILABLE", "mlflow"),
    "WandbLogger": ("WANDB_AVAILABLE", "wandb"),
}


class TrackingSetupError(NLUserError, ValueError):
    """A tracking setting that cannot work; the message names the setting, the value and the fix."""


def require_logger(class_path: str) -> None:
    """Raise ``ModuleNotFoundError`` naming ``nl-lightning[track]`` if the logger's package is missing."""
    name = class_path.rsplit(".", 1)[-1]
    if name in LOGGER_PACKAGES:
        flag, package = LOGGER_PACKAGES[name]
        _imports.require(getattr(_imports, flag), package, "track", f"trainer.logger {name}")


def unknown_backend(name: str, setting: str) -> TrackingSetupError:
    return TrackingSetupError(
        f"Unknown tracking backend {name!r} ({setting}). Choose one of {', '.join(BACKENDS)}, e.g. "
        "`--config configs/track/tensorboard.yaml`."
    )


def check_writable(path: str | Path, setting: str) -> None:
    """Create ``path`` if needed and write a probe file in it; raise naming ``setting`` if that fails."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".nl_write_check"):
            pass
    except OSError as err:
        raise TrackingSetupError(
            f"{setting}={str(path)!r} is not writable ({err.strerror or err}). Point {setting} at a folder "
            "you can write to (the shipped configs use `runs`), or fix its permissions."
        ) from err


def check_tracking_uri(uri: str, setting: str, timeout: float = 3.0) -> None:
    """A local store (``sqlite:``, ``file:``, a path) must be writable; an ``http(s)`` server must answer;
    a path or an unknown scheme must be one MLflow accepts (asked before the logger is built, so the
    error is MLflow's one sentence, not jsonargparse's report of a failed logger)."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        if not uri.startswith("sqlite:///"):
            raise TrackingSetupError(f"{setting}={uri!r} is not a SQLite URL: write sqlite:///relative/path.db or "
                                     f"sqlite:////absolute/path.db (e.g. {DEFAULT_MLFLOW_URI}).")
        path = uri.removeprefix("sqlite:///")
        if path and path != ":memory:":
            check_writable(Path(path).parent, f"{setting} ({uri}): its folder")
    elif parsed.scheme in ("http", "https"):
        _probe(uri, setting, timeout)
    elif parsed.scheme in ("", "file") or parsed.scheme not in MLFLOW_SCHEMES:
        _mlflow_accepts(uri, setting)
        check_writable(parsed.path or uri, setting)
    # other schemes (databricks, postgresql, ...) are checked by MLflow itself


MLFLOW_SCHEMES = ("sqlite", "http", "https", "file", "", "databricks", "databricks-uc", "uc", "postgresql", "mysql", "mssql")


def _mlflow_accepts(uri: str, setting: str) -> None:
    from mlflow import MlflowClient

    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as err:  # MLflow's own refusal, cut to its first sentence
        reason = " ".join(str(err).split()).split(". ")[0]
        raise TrackingSetupError(
            f"{setting}={uri!r} cannot be used by MLflow: {reason}. Use {DEFAULT_MLFLOW_URI} (a local store) or "
            "http://<host>:5000 (a server)."
        ) from err


def _probe(uri: str, setting: str, timeout: float) -> None:
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        pass  # a server answered; MLflow reports any API error itself
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingSetupError(
            f"{setting}={uri!r} cannot be reached ({reason}). Start the server (`mlflow server "
            f"--backend-store-uri {DEFAULT_MLFLOW_URI}`), fix the address, or track locally with "
            f"tracking_uri: {DEFAULT_MLFLOW_URI} (the default of configs/track/mlflow.yaml)."
        ) from err


#: Lightning callbacks that write to a logger and raise at the first step without one.
LOGGING_CALLBACKS = ("LearningRateMonitor", "DeviceStatsMonitor")


def check_logging_callbacks(trainer: Any) -> None:
    """With no logger (``--trainer.logger=false``), a callback that needs one is named before training,
    instead of Lightning's traceback at the first step."""
    if trainer.loggers:
        return
    for callback in trainer.callbacks:
        name = type(callback).__name__
        if name in LOGGING_CALLBACKS:
            raise TrackingSetupError(
                f"trainer.logger is off, but trainer.callbacks has {name}, which writes to a logger. Keep a logger "
                f"(drop --trainer.logger=false) or leave {name} out of trainer.callbacks."
            )


def check_loggers(loggers: Iterable[Any]) -> None:
    """Check every logger's destination before training; raises ``TrackingSetupError``."""
    for i, logger in enumerate(loggers):
        kind = type(logger).__name__
        setting = f"trainer.logger[{i}] {kind}"
        if kind == "MLFlowLogger":
            check_tracking_uri(logger._tracking_uri, f"{setting} tracking_uri")
        elif kind == "WandbLogger":
            check_writable(logger.save_dir or ".", f"{setting} save_dir")
        else:
            root = getattr(logger, "root_dir", None) or getattr(logger, "save_dir", None)
            if root:
                check_writable(root, f"{setting} save_dir")
