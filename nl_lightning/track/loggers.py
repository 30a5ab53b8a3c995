"""What each Lightning logger can take beyond scalars, and the fallback where it takes nothing.

| logger        | histogram            | image / figure          | artifact file            |
|---------------|----------------------|-------------------------|--------------------------|
| TensorBoard   | ``add_histogram``    | ``add_figure``          | file in its ``log_dir``  |
| W&B           | ``wandb.Histogram``  | ``log_image``           | ``run.save``             |
| MLflow        | summary statistics   | ``log_figure``          | ``log_artifact``         |
| CSV / others  | summary statistics   | PNG in its ``log_dir``  | file in its ``log_dir``  |

Summary statistics are ``<tag>/mean``, ``/std``, ``/min``, ``/max``, ``/norm`` as scalars. Callers
run these on rank 0 only. Logger classes are matched by name, so this module imports no logger.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nl_lightning._io import save_figure


def kind(logger: Any) -> str:
    """``tensorboard`` / ``wandb`` / ``mlflow`` / ``other`` from the logger's class (or a base class)."""
    names = {cls.__name__ for cls in type(logger).__mro__}
    for name, label in (("TensorBoardLogger", "tensorboard"), ("WandbLogger", "wandb"), ("MLFlowLogger", "mlflow")):
        if name in names:
            return label
    return "other"


def summary(values: Tensor) -> dict[str, float]:
    """Mean, standard deviation, min, max and L2 norm of a tensor (float32)."""
    v = values.detach().float().flatten()
    std = float(v.std()) if v.numel() > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "min": float(v.min()), "max": float(v.max()),
            "norm": float(torch.linalg.vector_norm(v))}


def log_histograms(logger: Any, tensors: dict[str, Tensor], step: int) -> None:
    """One histogram per tag where the logger has histograms, summary statistics elsewhere."""
    label = kind(logger)
    if label == "tensorboard":
        for tag, values in tensors.items():
            logger.experiment.add_histogram(tag, values.detach().float().cpu(), step)
    elif label == "wandb":
        import wandb

        row: dict[str, Any] = {tag: wandb.Histogram(values.detach().float().cpu().numpy())
                               for tag, values in tensors.items()}
        logger.experiment.log({**row, "trainer/global_step": step})
    else:
        scalars = {f"{tag}/{k}": v for tag, values in tensors.items() for k, v in summary(values).items()}
        logger.log_metrics(scalars, step=step)


def log_figure(logger: Any, tag: str, figure: Any, step: int) -> Path | None:
    """Send a matplotlib figure; returns the PNG path where the fallback wrote one."""
    label = kind(logger)
    if label == "tensorboard":
        logger.experiment.add_figure(tag, figure, step, close=False)
    elif label == "wandb":
        import wandb

        logger.log_image(key=tag, images=[wandb.Image(figure)], step=step)
    elif label == "mlflow":
        logger.experiment.log_figure(logger.run_id, figure, f"{tag}/step_{step:07d}.png")
    else:
        log_dir = getattr(logger, "log_dir", None)
        if log_dir is None:
            return None
        return save_figure(figure, Path(log_dir) / f"{tag}_step_{step:07d}.png".replace("/", "_"))
    return None


def log_artifact(logger: Any, path: str | Path, artifact_dir: str = "run") -> None:
    """Attach a file to the run: MLflow and W&B keep it with the run, others get a copy in ``log_dir``."""
    path = Path(path)
    label = kind(logger)
    if label == "mlflow":
        logger.experiment.log_artifact(logger.run_id, str(path), artifact_dir)
    elif label == "wandb":
        logger.experiment.save(str(path), base_path=str(path.parent), policy="now")
    else:
        log_dir = getattr(logger, "log_dir", None)
        if log_dir is not None and Path(log_dir).resolve() != path.parent.resolve():
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, Path(log_dir) / path.name)


def flush(logger: Any) -> None:
    """Write buffered records to disk, so files in the run folder can be read back."""
    if hasattr(logger, "save"):  # TensorBoard's save() flushes its event writer
        logger.save()


def run_dir(loggers: list[Any], default_root_dir: str | Path) -> Path:
    """What ``Trainer.log_dir`` gives, without its broadcast (a collective that hangs under DDP when
    only rank 0 asks): the first logger's ``log_dir`` (TensorBoard / CSV: ``runs/<name>/version_N``),
    another first logger's ``save_dir``, else ``default_root_dir``."""
    if not loggers:
        return Path(default_root_dir)
    first = loggers[0]
    local = {cls.__name__ for cls in type(first).__mro__} & {"TensorBoardLogger", "CSVLogger"}
    folder = first.log_dir if local else first.save_dir
    return Path(folder or default_root_dir)
