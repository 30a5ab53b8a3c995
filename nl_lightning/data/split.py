"""Seeded random split of row indices into train / val / test by fractions."""

from __future__ import annotations

import numpy as np

from nl_lightning.errors import ConfigError


def split_rows(rows: np.ndarray, val: float = 0.0, test: float = 0.0, seed: int = 0) -> dict[str, np.ndarray]:
    """``{"train", "val", "test"}`` -> sorted rows; the same ``seed`` gives the same split everywhere.

    Each part is sorted so reads stay sequential; the training sampler shuffles anyway.
    A non-zero fraction always gets at least one row.
    """
    for name, fraction in (("val_fraction", val), ("test_fraction", test)):
        if not 0.0 <= fraction < 1.0:
            raise ConfigError(f"{name} must be in [0, 1); got {fraction}.")
    if val + test >= 1.0:
        raise ConfigError(f"val_fraction + test_fraction must leave rows for training; got {val} + {test} = {val + test}.")
    rows = np.asarray(rows, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(rows))
    n_val = _count(len(rows), val)
    n_test = _count(len(rows), test)
    if n_val + n_test >= len(rows):
        raise ConfigError(f"Only {len(rows)} rows: too few to split off val={val} and test={test} and still train.")
    parts = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
    return {name: np.sort(rows[index]) for name, index in parts.items()}


def _count(n: int, fraction: float) -> int:
    return 0 if fraction == 0 else max(1, int(round(n * fraction)))
