"""Fixtures for the tune tests: one thread for every trial process, tiny fit configs on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Trial processes (forked from a server this suite starts, or fresh interpreters) take their thread
# count from here: one thread, as the suite itself uses, so a trial and its re-run compute alike.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from tune_utils import TINY_CLASSIFIER, TINY_LM, write_fit  # noqa: E402


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    """LightningCLI warns when both args= and pytest's own sys.argv are present."""
    monkeypatch.setattr("sys.argv", ["nl-lightning"])


@pytest.fixture
def classifier_fit(tmp_path: Path) -> Path:
    return write_fit(tmp_path / "classifier_fit.yaml", "classifier.yaml", TINY_CLASSIFIER)


@pytest.fixture
def lm_fit(tmp_path: Path) -> Path:
    return write_fit(tmp_path / "lm_fit.yaml", "char_lm.yaml", TINY_LM, drop_callbacks=("TextSampleCallback",))
