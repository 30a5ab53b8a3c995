"""track.curves and `nl-lightning plot`: scalars read back from real TensorBoard and CSV loggers, drawn."""

from __future__ import annotations

import pytest
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from nl_lightning.cli import main
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


def test_plot_command_one_run_and_overlaid_runs(tmp_path, capsys):
    first = _write(TensorBoardLogger(tmp_path, name="a"), 0.0)
    _write(TensorBoardLogger(tmp_path, name="a"), 0.3)  # version_1: what runs/a resolves to
    other = _write(CSVLogger(tmp_path, name="b"), 0.1)
    assert resolve_run_dir(tmp_path / "a").name == "version_1"
    assert main(["plot", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "version_1" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "both.png"
    assert main(["plot", first, other, "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_missing_or_empty_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="Run folder not found: .*nope. Pass runs/<name>"):
        resolve_run_dir(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="No scalars in .*: expected TensorBoard event files or metrics.csv"):
        read_scalars(tmp_path)
