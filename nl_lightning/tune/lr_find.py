"""The learning-rate range test on Lightning's own tuner (``Tuner.lr_find`` / ``LearningRateFinder``),
and what we add around it: its settings checked, the rate put where nl_lightning modules read it,
the curve as a PNG and the result as JSON. The one core of ``LRFinder`` (the callback) and
``nl-lightning lr-find`` (the command, ``find_lr``).

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


def check_range(min_lr: float, max_lr: float, num_training: int, owner: str, steps_name: str) -> None:
    """The range test's settings, checked before it runs (``LRFinder`` and ``nl-lightning lr-find``)."""
    if not 0 < min_lr < max_lr:
        raise ConfigError(f"{owner} needs 0 < min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}.")
    if num_training < 2:
        raise ConfigError(f"{owner}: {steps_name}={num_training}: the range test needs at least 2 steps (one rate each); "
                          "use ~100 (the default) for a curve the suggestion can be read from.")


def suggested_lr(finder: Any) -> float | None:
    """Lightning's suggestion (steepest descent of the smoothed loss), or None when the curve gave none."""
    lr = finder.suggestion() if finder is not None else None
    return float(lr) if lr is not None and math.isfinite(lr) else None


def suggestion_or_error(finder: Any, min_lr: float, max_lr: float) -> float:
    """The finder's suggested rate, or a ``ConfigError`` that says how to get one."""
    lr = suggested_lr(finder)
    if lr is None:
        points = len(finder.results.get("lr", [])) if finder is not None else 0
        raise ConfigError(
            f"The LR finder could not suggest a rate from {points} points between min_lr={min_lr} and max_lr={max_lr} "
            "(it needs a loss curve of more than ~12 steps that falls before it diverges); raise num_training, "
            "widen the range, or lower early_stop_threshold's sensitivity (a larger value)."
        )
    return lr


def save_outputs(finder: Any, lr: float, folder: str | Path, **extra: Any) -> dict[str, Path]:
    """``lr_find.png`` (loss vs rate, the suggestion marked: Lightning's ``plot``) and ``lr_find.json``
    (the suggestion, ``extra`` and the (lr, smoothed loss) curve) in ``folder``."""
    import matplotlib.pyplot as plt

    folder = Path(folder)
    figure = finder.plot(suggest=True, show=False)
    plot = save_figure(figure, folder / "lr_find.png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    data = {"suggested_lr": lr, **extra, "lr": list(finder.results["lr"]), "loss": list(finder.results["loss"])}
    return {"plot": plot, "json": write_json(folder / "lr_find.json", data)}


def find_lr(
    fit_args: list[str], output_dir: str | Path, min_lr: float = 1e-6, max_lr: float = 1.0, num_training: int = 100,
    mode: str = "exponential", early_stop_threshold: float | None = 4.0, lr_key: str = DEFAULT_LR_KEY,
) -> dict[str, Any]:
    """Run the range test on the fit config given by ``fit_args`` (as for ``nl-lightning fit``) and write
    ``lr_find.png``, ``lr_find.json`` and ``fit.yaml`` (the full config, rate set at ``lr_key``)."""
    check_range(min_lr, max_lr, num_training, "nl-lightning lr-find", "--num_training")
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
    fit_path = Path(output_dir) / "fit.yaml"
    write_atomic(fit_path, f"# {lr_key} = {lr:.6g}, found by `nl-lightning lr-find`\n" + yaml.safe_dump(config, sort_keys=False))
    return {"suggested_lr": lr, **save_outputs(finder, lr, output_dir, lr_key=lr_key), "fit_config": fit_path}
