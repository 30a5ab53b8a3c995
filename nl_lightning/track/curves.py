"""Training curves from what the loggers recorded in a run folder, drawn as one PNG.

``read_scalars`` reads TensorBoard event files (``EventAccumulator``) and ``metrics.csv``
(``CSVLogger``) under a run folder; ``plot_curves`` draws training loss, each validation metric and
the learning rate against the step, one panel each, several runs overlaid.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from nl_lightning._io import save_figure
from nl_lightning.errors import DataError, MissingFileError

Series = dict[str, list[tuple[int, float]]]  # tag -> [(step, value), ...] sorted by step


def resolve_run_dir(path: str | Path) -> Path:
    """A ``version_N`` folder as is; a folder of versions (``runs/char_lm``) -> its newest version."""
    path = Path(path)
    if not path.is_dir():
        raise MissingFileError(f"Run folder not found: {path}. Pass runs/<name> or runs/<name>/version_<N>.")
    versions = [p for p in path.glob("version_*") if p.is_dir() and p.name[8:].isdigit()]
    return max(versions, key=lambda p: int(p.name[8:])) if versions else path


def read_scalars(run_dir: str | Path) -> Series:
    """Every scalar recorded in ``run_dir`` (TensorBoard events and ``metrics.csv``), by tag."""
    run_dir = Path(run_dir)
    series: Series = {}
    if any(run_dir.glob("events.out.tfevents.*")):
        _merge(series, _read_events(run_dir))
    if (run_dir / "metrics.csv").is_file():
        _merge(series, _read_csv(run_dir / "metrics.csv"))
    if not series:
        raise MissingFileError(
            f"No scalars in {run_dir}: expected TensorBoard event files or metrics.csv (TensorBoardLogger "
            "or CSVLogger first in trainer.logger)."
        )
    return {tag: sorted(points) for tag, points in series.items()}


def _read_events(run_dir: Path) -> Series:
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()[SCALARS]}


def _read_csv(path: Path) -> Series:
    series: Series = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for tag, text in row.items():
                if tag in ("step", "epoch") or text in ("", None):
                    continue
                series.setdefault(tag, []).append((step, float(text)))
    return series


def _merge(into: Series, more: Series) -> None:
    for tag, points in more.items():
        into.setdefault(tag, [])
        seen = {step for step, _ in into[tag]}
        into[tag].extend(p for p in points if p[0] not in seen)


def panels(series: Series) -> list[tuple[str, list[str]]]:
    """(title, tags) per panel: training loss, each validation metric, learning rate."""
    train = sorted(t for t in series if t in ("train/loss", "train/loss_step") or t.startswith("train_loss"))
    val = sorted(t for t in series if t.startswith("val/") or t.startswith("val_"))
    lr = sorted(t for t in series if t.startswith("lr-") or t.startswith("lr/"))
    out = [("training loss", train[:1])] if train else []
    out += [(tag, [tag]) for tag in val if "/precision/" not in tag and "/recall/" not in tag]
    if lr:
        out.append(("learning rate", lr))
    return out


def plot_curves(runs: dict[str, Series], out: str | Path, max_panels: int = 9) -> Path:
    """Draw ``runs`` ({label: scalars}) into ``out`` (PNG); the panels come from the first run's tags."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    layout: dict[str, list[str]] = {}
    for series in runs.values():
        for title, tags in panels(series):
            layout.setdefault(title, [])
            layout[title] += [t for t in tags if t not in layout[title]]
    if not layout:
        tags = sorted({t for s in runs.values() for t in s})
        raise DataError(f"Nothing to plot: no train loss, val/* or lr-* scalars among {tags}.")
    titles = list(layout)[:max_panels]
    cols = min(3, len(titles))
    rows = math.ceil(len(titles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, title in zip(axes.flat, titles):
        for label, series in runs.items():
            for tag in layout[title]:
                if tag in series:
                    steps, values = zip(*series[tag])
                    name = label if len(layout[title]) == 1 else f"{label} {tag}"
                    ax.plot(steps, values, marker="." if len(steps) < 20 else None, label=name)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(runs) > 1 or len(layout[title]) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(titles):]:
        ax.axis("off")
    fig.tight_layout()
    out = save_figure(fig, out, dpi=100)
    plt.close(fig)
    return out
