"""track.curves and `nl-lightning plot`: scalars read back from real TensorBoard and CSV loggers, drawn."""

from __future__ import annotations

from pathlib import Path

import pytest
from images import assert_plotted
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from nl_lightning.cli import main
from nl_lightning.track import curves
from nl_lightning.track.curves import panels, read_scalars, resolve_run_dir


def _write(logger, offset: float) -> str:
    for step in range(0, 10, 2):
        logger.log_metrics({"train/loss": 2.0 - step / 10 + offset, "lr-AdamW": 1e-3 * (step + 1)}, step=step)
    logger.log_metrics({"val/loss": 1.5 + offset, "val/precision/0": 0.5}, step=9)
    logger.save()
    logger.finalize("success")
    return logger.log_dir


@pytest.mark.parametrize("logger_cls", [TensorBoardLogger, CSVLogger])
def test_read_scalars_returns_what_the_logger_wrote(tmp_path, logger_cls):
    run_dir = _write(logger_cls(tmp_path, name="run"), 0.0)
    scalars = read_scalars(run_dir)
    assert [s for s, _ in scalars["train/loss"]] == [0, 2, 4, 6, 8]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([2.0 - s / 10 for s in range(0, 10, 2)], rel=1e-6)
    assert scalars["val/loss"] == [(9, 1.5)]
    assert [t for t, _ in panels(scalars)] == ["training loss", "val/loss", "learning rate"]  # no per-class panels


def _drawn(figure) -> dict[str, dict[str, tuple[list, list]]]:
    """{panel title: {line label: (x, y)}} of a matplotlib figure."""
    return {ax.get_title(): {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}
            for ax in figure.axes if ax.get_title()}


def _loss(offset: float) -> tuple[list, list]:
    return [0, 2, 4, 6, 8], pytest.approx([2.0 - s / 10 + offset for s in range(0, 10, 2)], rel=1e-6)


def test_plot_command_one_run_and_overlaid_runs(tmp_path, capsys, monkeypatch):
    figures = {}
    real_save = curves.save_figure

    def keep(figure, path, **kwargs):  # what was drawn, then the real PNG
        figures[Path(path).name] = _drawn(figure)
        return real_save(figure, path, **kwargs)

    monkeypatch.setattr(curves, "save_figure", keep)
    first = _write(TensorBoardLogger(tmp_path, name="a"), 0.0)
    _write(TensorBoardLogger(tmp_path, name="a"), 0.3)  # version_1: what runs/a resolves to
    other = _write(CSVLogger(tmp_path, name="b"), 0.1)
    assert resolve_run_dir(tmp_path / "a").name == "version_1"
    assert main(["plot", str(tmp_path / "a")]) == 0
    # one run: its loss, validation loss and learning rate, each in its own panel, from version_1
    lrs = [0, 2, 4, 6, 8], pytest.approx([1e-3 * (s + 1) for s in range(0, 10, 2)], rel=1e-6)
    assert figures["curves.png"] == {"training loss": {"a/version_1": _loss(0.3)},
                                     "val/loss": {"a/version_1": ([9], pytest.approx([1.8]))},
                                     "learning rate": {"a/version_1": lrs}}
    assert_plotted(tmp_path / "a" / "version_1" / "curves.png", size=(1350, 320))  # 3 panels of 4.5 x 3.2 in
    out = tmp_path / "both.png"
    assert main(["plot", first, other, "--out", str(out)]) == 0
    # two runs overlaid: each panel has one line per run
    assert figures["both.png"]["training loss"] == {"a/version_0": _loss(0.0), "b/version_0": _loss(0.1)}
    assert figures["both.png"]["val/loss"] == {"a/version_0": ([9], pytest.approx([1.5])),
                                               "b/version_0": ([9], pytest.approx([1.6]))}
    assert_plotted(out, size=(1350, 320))


def test_missing_or_empty_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="Run folder not found: .*nope. Pass runs/<name>"):
        resolve_run_dir(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="No scalars in .*: expected TensorBoard event files or metrics.csv"):
        read_scalars(tmp_path)
