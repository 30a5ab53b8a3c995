"""``FileDataModule``: train / val / test / predict from NPY, NPZ, HDF5, Parquet or ``.pt`` files."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from nl_lightning.data.datamodule import ReaderDataModule, Split
from nl_lightning.data.readers.base import MissingKeyError, Reader
from nl_lightning.data.readers.npz import NpzCompressed
from nl_lightning.data.readers.open import Format, infer_format, open_source
from nl_lightning.errors import ConfigError

Paths = str | list[str] | None


class FileDataModule(ReaderDataModule):
    """Data from files, in whatever format they already are; the format comes from the suffix.

    Example (YAML)::

        data:
          class_path: nl_lightning.data.FileDataModule
          init_args: {train_path: train.h5, features: /x, targets: /y, val_fraction: 0.1}
    """

    def __init__(
        self,
        train_path: Paths = None,
        val_path: Paths = None,
        test_path: Paths = None,
        predict_path: Paths = None,
        format: Format = "auto",
        features: str | list[str] = "x",
        targets: str | None = "y",
        npz_compressed: NpzCompressed = "load",
        parquet_cache_mb: float = 256.0,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            train_path: a file, or a list of files concatenated in order (NPY: a directory of
                ``<key>.npy`` files, or one ``.npy`` file of features when ``targets`` is null).
            val_path: validation file(s); or use ``val_fraction`` to hold out training rows.
            test_path: test file(s); or use ``test_fraction``.
            predict_path: file(s) to predict on; targets are optional there.
            format: ``auto`` (from the suffix) or one of npy, npz, hdf5, parquet, pt.
            features: HDF5 dataset path, NPZ / ``.pt`` / NPY key, or Parquet column(s): several
                numeric columns make a row vector, one list column an array (see feature_shape).
            targets: key or column of the targets; null for unlabelled data.
            npz_compressed: compressed NPZ cannot be memory-mapped: ``load`` the key into memory
                once (with a warning) or raise an ``error``.
            parquet_cache_mb: MiB of decoded Parquet row groups kept per process and file. A file
                whose decoded columns fit is decoded once per process (each DataLoader worker has its
                own cache) and shuffled uniformly; a bigger one is shuffled by row groups: groups in
                random order, rows shuffled within as many groups as the cache holds
                (``RowGroupSampler``), so each group is decoded about once per epoch.
            **kwargs: loader, split, validation, transform and cache settings of ReaderDataModule.
        """
        super().__init__(**kwargs)
        # Plain values only (the checkpoint loads with weights_only=True; `nl-lightning export` rebuilds
        # this DataModule from them to calibrate INT8): transforms are objects, and training-only. The
        # frame is passed so that Lightning keeps no reference cycle to it (which would hold this
        # DataModule, and its open files, until the next garbage collection).
        self.save_hyperparameters(ignore=["transforms"], frame=inspect.currentframe())
        if val_path is not None and self.val_fraction > 0:
            raise ConfigError("Set val_path or val_fraction, not both (val_fraction holds out training rows).")
        if test_path is not None and self.test_fraction > 0:
            raise ConfigError("Set test_path or test_fraction, not both (test_fraction holds out training rows).")
        self.paths: dict[str, Paths] = {"train": train_path, "val": val_path, "test": test_path, "predict": predict_path}
        self.format, self.features, self.targets, self.npz_compressed = format, features, targets, npz_compressed
        self.parquet_cache_mb = parquet_cache_mb

    def missing_hint(self, split: Split) -> str:
        return f"set {split}_path (e.g. --data.init_args.{split}_path=data.h5)"

    def source_files(self, split: Split) -> list[str]:
        paths = self.paths["train"] if split in ("val", "test") and self._fraction(split) > 0 else self.paths[split]
        return [] if paths is None else [str(p) for p in ([paths] if isinstance(paths, str) else paths)]

    def open_split(self, split: Split) -> tuple[Reader, Reader | None] | None:
        paths = self.paths[split]
        if paths is None or paths == []:
            return None
        features = self._open(paths, self.features, split)
        if self.targets is None:
            return features, None
        _check_single_npy(paths, self.format)
        try:
            return features, self._open(paths, self.targets, split)
        except MissingKeyError:
            if split == "predict":  # unlabelled prediction data is fine
                return features, None
            raise

    def _open(self, paths: str | list[str], key: str | list[str], split: str) -> Reader:
        shape = self.feature_shape if key == self.features else None
        return open_source(paths, key, self.format, shape=shape, npz_compressed=self.npz_compressed,
                           parquet_cache_mb=self.parquet_cache_mb)


def _check_single_npy(paths: str | list[str], format: Format) -> None:
    for path in [paths] if isinstance(paths, str) else paths:
        if Path(path).is_file() and (format == "npy" or (format == "auto" and infer_format(path) == "npy")):
            raise ConfigError(
                f"'{path}' is a single .npy file (one array) and cannot also hold targets. Put x.npy and "
                "y.npy in a directory and pass the directory, or set targets: null."
            )
