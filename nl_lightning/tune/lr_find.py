"""The learning-rate range test on Lightning's own tuner (``Tuner.lr_find`` / ``LearningRateFinder``),
and what we add around it: putting the rate where nl_lightning modules read it, the curve as a PNG,
and the result as JSON.

nl_lightning's ``TaskModule`` keeps its rate in ``optimizer_config.lr`` (a config dataclass, so it
round-trips through YAML); Lightning's tuner looks for an ``lr`` / ``learning_rate`` attribute.
``set_learning_rate`` writes the first when it exists (and the hparams the checkpoint stores), and
falls back to Lightning's attribute otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L

from nl_lightning._io import save_figure, write_atomic, write_json
from nl_lightning.errors import ConfigError

DEFAULT_LR_KEY = "model.init_args.optimizer.lr"


def set_learning_rate(module: L.LightningModule, lr: float, attr_name: str = "") -> None:
    """Make ``module`` train with ``lr`` from its next ``configure_optimizers``."""
    config = getattr(module, "optimizer_config", None)
    if config is not None and hasattr(config, "lr"):
        config.lr = lr
        optimizer_hparams = module.hparams.get("optimizer") if hasattr(module, "hparams") else None
        if isinstance(optimizer_hparams, dict):
            optimizer_hparams["lr"] = lr
        return
    from lightning.pytorch.tuner.lr_finder import _determine_lr_attr_name
    from lightning.pytorch.utilities.parsing import lightning_setattr

    lightning_setattr(module, _determine_lr_attr_name(module, attr_name), lr)


def suggestion_or_error(finder: Any, min_lr: float, max_lr: float) -> float:
    """The finder's suggested rate, or a ``ValueError`` that says how to get one."""
    lr = finder.suggestion() if finder is not None else None
    if lr is None or not math.isfinite(lr):
        points = len(finder.results.get("lr", [])) if finder is not None else 0
        raise ConfigError(
            f"The LR finder could not suggest a rate from {points} points between min_lr={min_lr} and max_lr={max_lr} "
            "(it needs a loss curve of more than ~12 steps that falls before it diverges); raise num_training, "
            "widen the range, or lower early_stop_threshold's sensitivity (a larger value)."
        )
    return float(lr)


def save_curve(finder: Any, path: str | Path) -> Path:
    """The loss-vs-rate curve with the suggestion marked (Lightning's ``_LRFinder.plot``) as a PNG."""
    import matplotlib.pyplot as plt

    figure = finder.plot(suggest=True, show=False)
    save_figure(figure, path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return Path(path)


def save_result(finder: Any, lr: float, path: str | Path, **extra: Any) -> Path:
    """Suggested rate and the (lr, smoothed loss) curve as JSON."""
    data = {"suggested_lr": lr, **extra, "lr": list(finder.results["lr"]), "loss": list(finder.results["loss"])}
    return write_json(path, data)


def find_lr(
    fit_args: list[str], output_dir: str | Path, min_lr: float = 1e-6, max_lr: float = 1.0, num_training: int = 100,
    mode: str = "exponential", early_stop_threshold: float | None = 4.0, lr_key: str = DEFAULT_LR_KEY,
) -> dict[str, Any]:
    """Run the range test on the fit config given by ``fit_args`` (as for ``nl-lightning fit``) and write
    ``lr_find.png``, ``lr_find.json`` and ``fit.yaml`` (the full config, rate set at ``lr_key``)."""
    import yaml
    from lightning.pytorch.tuner import Tuner

    from nl_lightning.cli import build_cli
    from nl_lightning.tune.keys import get_key, set_key

    cli = build_cli(args=fit_args, run=False, parser_kwargs={"exit_on_error": False})
    config = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
    config.pop("config", None)
    if get_key(config, lr_key) is None:
        raise ConfigError(
            f"lr_key={lr_key!r} is not a setting of this fit config, so the found rate could not be written back; "
            f"pass --lr_key with the dotted key of the learning rate (default {DEFAULT_LR_KEY!r})."
        )
    finder = Tuner(cli.trainer).lr_find(
        cli.model, datamodule=cli.datamodule, min_lr=min_lr, max_lr=max_lr, num_training=num_training, mode=mode,
        early_stop_threshold=early_stop_threshold, update_attr=False,
    )
    lr = suggestion_or_error(finder, min_lr, max_lr)
    set_key(config, lr_key, lr)
    output_dir = Path(output_dir)
    fit_path = output_dir / "fit.yaml"
    write_atomic(fit_path, f"# {lr_key} = {lr:.6g}, found by `nl-lightning lr-find`\n" + yaml.safe_dump(config, sort_keys=False))
    return {
        "suggested_lr": lr,
        "plot": save_curve(finder, output_dir / "lr_find.png"),
        "json": save_result(finder, lr, output_dir / "lr_find.json", lr_key=lr_key),
        "fit_config": fit_path,
    }
