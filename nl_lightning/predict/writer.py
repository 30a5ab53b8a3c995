"""``PredictionWriter``: Lightning's ``BasePredictionWriter`` writing resumable, checksummed shards.

Every ``batches_per_shard`` batches of a rank become one shard file (NPY, NPZ, JSONL or Parquet:
data only, never pickle), written atomically with a record of its rows and SHA-256;
rank 0 merges all records into ``manifest.json`` at the end. Each row carries its input row id
(the dataset's source row, from ``batch_indices``, or a ``row_id`` the batch brings itself).

Killed (even with SIGKILL) and run again on the same data and settings, the job skips the shards
already written and redoes the one that was in progress, so every sample is written exactly once.
``Predictor`` also skips the model for those batches (:func:`batch_written`). A resume must be the
same job: another model, other settings, or other input data in a batch already written is
refused (``predict/identity.py``), and the folder is locked against a second live job
(``callbacks/run_lock.py``), so two jobs never mix their rows.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from nl_lightning._io import TMP_MARK
from nl_lightning._lock import LOCK_NAME, RunDirInUseError, acquire, release
from nl_lightning.errors import ConfigError, DataError, WrongTypeError
from nl_lightning.predict.identity import batch_sha256, model_identity
from nl_lightning.predict.manifest import (
    MANIFEST, RECORDS, check_inputs, check_plan, completed_shards, merge_manifest, shard_name, write_shard,
)
from nl_lightning.predict.shards import ShardFormat, check_format

LOCK_HINT = ("two prediction jobs in one output_dir would overwrite each other's shards. Give this job its own "
             "output_dir, or wait for the other job to finish.")


class PredictionWriter(BasePredictionWriter):
    """Write ``Trainer.predict``'s outputs as checksummed shards with a manifest; a rerun resumes.

    Lightning's ``BasePredictionWriter``: each shard is written atomically with its row range and
    SHA-256, every row keeps its input row id, and a job killed and started again writes only the
    rows still missing, so every sample is written exactly once. Under DDP each rank writes its own
    shards and rank 0 merges one manifest.
    """

    def __init__(
        self,
        output_dir: str = "predictions",
        format: ShardFormat = "npz",
        rows_per_shard: int = 65536,
        overwrite: bool = False,
        keep_predictions: bool = False,
    ) -> None:
        """
        Args:
            output_dir: folder of the shards, their records and ``manifest.json``.
            format: ``npz`` (NumPy only), ``parquet`` (needs pyarrow: the ``data`` extra), ``npy`` (one
                structured array) or ``jsonl``.
            rows_per_shard: rows per shard, rounded up to whole batches.
            overwrite: delete what ``output_dir`` holds and start over, instead of resuming.
            keep_predictions: also return the predictions from ``Trainer.predict`` (off: memory stays
                flat on long jobs; the files are the output).
        """
        super().__init__(write_interval="batch")
        check_format(format)
        if rows_per_shard < 1:
            raise ConfigError(f"rows_per_shard={rows_per_shard} must be >= 1.")
        self.output_dir, self.format, self.rows_per_shard = Path(output_dir), format, rows_per_shard
        self.overwrite, self.keep_predictions = overwrite, keep_predictions
        self._done: dict[tuple[int, int], dict[str, Any]] = {}
        self._buffers: dict[int, list[dict[str, np.ndarray]]] = {}
        self._digests: dict[int, list[str]] = {}
        self._per_shard: list[int] = []
        self._num_batches: list[int] = []
        self._lock: Path | None = None

    # ---- set-up ------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "predict":
            return
        trainer.predict_loop.return_predictions = self.keep_predictions
        refused = self._lock_output_dir() if trainer.is_global_zero else None
        refused = trainer.strategy.broadcast(refused)  # every rank stops together
        if refused:
            raise RunDirInUseError(refused)
        (self.output_dir / RECORDS).mkdir(parents=True, exist_ok=True)
        for folder in (self.output_dir, self.output_dir / RECORDS):  # writes cut short by a kill
            for stale in folder.glob(f".part-*-{trainer.global_rank:03d}-*{TMP_MARK}*"):
                stale.unlink(missing_ok=True)

    def _lock_output_dir(self) -> str | None:
        """Lock ``output_dir`` (clearing it for ``overwrite``); the refusal's message, or None."""
        try:
            self._lock = acquire(self.output_dir, LOCK_HINT)
        except RunDirInUseError as err:
            return str(err)
        if self.overwrite:
            for entry in self.output_dir.iterdir():
                if entry.name == LOCK_NAME:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        return None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loaders = _as_list(trainer.predict_dataloaders)
        self._num_batches = [int(n) for n in trainer.num_predict_batches]
        self._per_shard = [max(1, math.ceil(self.rows_per_shard / _batch_size(dl))) for dl in loaders]
        plan = {"format": self.format, "rows_per_shard": self.rows_per_shard, "world_size": trainer.world_size,
                "batch_sizes": [_batch_size(dl) for dl in loaders], "num_batches": self._num_batches,
                "dataset_sizes": [_dataset_size(dl) for dl in loaders],
                "planned_rows": [_planned_rows(dl, n) for dl, n in zip(loaders, self._num_batches)],
                "model": model_identity(pl_module)}
        check_plan(self.output_dir, trainer.global_rank, plan)
        self._done = completed_shards(self.output_dir, trainer.global_rank)
        self._buffers, self._digests = {}, {}

    def is_written(self, batch_idx: int, dataloader_idx: int = 0) -> bool:
        """Whether this batch's shard is already on disk from an earlier (interrupted) run."""
        if dataloader_idx >= len(self._per_shard):
            return False
        return (dataloader_idx, batch_idx // self._per_shard[dataloader_idx]) in self._done

    # ---- writing -----------------------------------------------------------------------------
    def write_on_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any, batch_indices: Sequence[int] | None,
        batch: Any, batch_idx: int, dataloader_idx: int,
    ) -> None:
        digest = batch_sha256(batch)
        if self.is_written(batch_idx, dataloader_idx):
            per_shard = self._per_shard[dataloader_idx]
            record = self._done[(dataloader_idx, batch_idx // per_shard)]
            check_inputs(self.output_dir, record, batch_idx % per_shard, digest, batch_idx)
            return
        if prediction is None:
            raise DataError(
                f"predict_step returned None for batch {batch_idx}, which is not written yet; return the "
                "batch's outputs (a tensor, or a dict of tensors with one row per sample)."
            )
        ids = row_ids(trainer, batch, batch_indices, batch_idx, dataloader_idx)
        columns = {"row_id": ids, **_columns(prediction, len(ids), batch_idx)}
        self._buffers.setdefault(dataloader_idx, []).append(columns)
        self._digests.setdefault(dataloader_idx, []).append(digest)
        per_shard = self._per_shard[dataloader_idx]
        if (batch_idx + 1) % per_shard == 0 or batch_idx + 1 == self._num_batches[dataloader_idx]:
            self._flush(trainer, dataloader_idx, batch_idx // per_shard)

    def _flush(self, trainer: L.Trainer, dataloader_idx: int, shard: int) -> None:
        parts, digests = self._buffers.pop(dataloader_idx, []), self._digests.pop(dataloader_idx, [])
        if not parts:
            return
        columns = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        per_shard = self._per_shard[dataloader_idx]
        name = shard_name(dataloader_idx, trainer.global_rank, shard, self.format)
        record = write_shard(self.output_dir, name, columns, self.format, dataloader_idx=dataloader_idx,
                             rank=trainer.global_rank, shard=shard,
                             batches=[shard * per_shard, shard * per_shard + len(parts)], inputs_sha256=digests)
        self._done[(dataloader_idx, shard)] = record

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for dataloader_idx in list(self._buffers):  # e.g. limit_predict_batches cut a shard short
            last = self._num_batches[dataloader_idx] - 1
            self._flush(trainer, dataloader_idx, last // self._per_shard[dataloader_idx])

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.strategy.barrier("prediction_writer_merge")
        if trainer.is_global_zero:
            merge_manifest(self.output_dir, self.format, trainer.world_size, data=data_source(trainer))
        trainer.strategy.barrier("prediction_writer_done")

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._lock is not None:
            release(self._lock)
            self._lock = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.teardown(trainer, pl_module, "predict")

    @property
    def manifest_path(self) -> Path:
        return self.output_dir / MANIFEST


def batch_written(trainer: L.Trainer | None, batch_idx: int, dataloader_idx: int = 0) -> bool:
    """True when a ``PredictionWriter`` of ``trainer`` already holds this batch (skip the model)."""
    if trainer is None:
        return False
    return any(isinstance(cb, PredictionWriter) and cb.is_written(batch_idx, dataloader_idx) for cb in trainer.callbacks)


def data_source(trainer: L.Trainer) -> dict[str, Any] | None:
    """What the predictions were computed from, for the manifest: the DataModule and its files."""
    from nl_lightning.data.datamodule import describe_data

    datamodule = getattr(trainer, "datamodule", None)
    return None if datamodule is None else describe_data(datamodule, "predict")


def row_ids(trainer: L.Trainer, batch: Any, indices: Sequence[int] | None, batch_idx: int, dataloader_idx: int) -> np.ndarray:
    if isinstance(batch, dict) and "row_id" in batch:
        return _numpy(batch["row_id"]).astype(np.int64).reshape(-1)
    if indices is None:
        raise ConfigError(
            f"Cannot tell which input rows batch {batch_idx} holds: Lightning records batch indices only for "
            "map-style datasets. Use one, or put a 'row_id' tensor in every batch."
        )
    positions = np.asarray(indices, dtype=np.int64)
    rows = getattr(_as_list(trainer.predict_dataloaders)[dataloader_idx].dataset, "rows", None)
    return np.asarray(rows)[positions] if isinstance(rows, np.ndarray) else positions  # source rows of ArrayDataset


def _columns(prediction: Any, n: int, batch_idx: int) -> dict[str, np.ndarray]:
    if isinstance(prediction, dict):
        columns = {str(k): _numpy(v) for k, v in prediction.items()}
    elif isinstance(prediction, (torch.Tensor, np.ndarray)):
        columns = {"prediction": _numpy(prediction)}
    else:
        raise WrongTypeError(
            f"predict_step returned a {type(prediction).__name__} for batch {batch_idx}; PredictionWriter "
            "writes a tensor or a dict of tensors, each with one row per sample."
        )
    for name, values in columns.items():
        if name == "row_id" or values.ndim == 0 or len(values) != n:
            raise DataError(
                f"Prediction column {name!r} of batch {batch_idx} has shape {values.shape}; every column needs one "
                f"row per sample ({n}), and 'row_id' is reserved for the input row ids."
            )
    return columns


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach()
        value = value.float() if value.dtype in (torch.bfloat16, torch.float16) else value
        return value.cpu().numpy()
    return np.asarray(value)


def _as_list(loaders: Any) -> list[Any]:
    return list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]


def _batch_size(loader: Any) -> int:
    size = getattr(loader, "batch_size", None) or getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
    return int(size or 1)


def _dataset_size(loader: Any) -> int | None:
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError):
        return None


def _planned_rows(loader: Any, num_batches: int) -> int | None:
    """Rows this rank predicts: its sampler's share, unless ``limit_predict_batches`` cuts it short."""
    sampler = getattr(getattr(loader, "batch_sampler", None), "sampler", None) or getattr(loader, "sampler", None)
    try:
        rows = len(sampler)  # under DDP: this rank's share (Lightning's distributed sampler)
    except TypeError:
        return None
    return min(rows, num_batches * _batch_size(loader))
