"""Fixtures for the data pipeline: tiny arrays and a writer for every file format."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from datafiles import write


@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray]:
    """Features (40, 3, 4) float32 whose first value is the row index, and labels (40,) in [0, 3)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3, 4)).astype(np.float32)
    x[:, 0, 0] = np.arange(40)
    return x, rng.integers(0, 3, 40)


@pytest.fixture
def write_data(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """``write_data(fmt, x, y, name=...)`` -> FileDataModule arguments for the written file."""

    def make(fmt: str, x: np.ndarray, y: np.ndarray | None = None, name: str = "data") -> dict[str, Any]:
        return write(fmt, tmp_path, x, y, name)

    return make


@pytest.fixture
def quiet_trainer(tmp_path: Path) -> dict[str, Any]:
    """Settings of a quiet single-process CPU Trainer writing only under tmp_path."""
    return dict(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0,
    )
