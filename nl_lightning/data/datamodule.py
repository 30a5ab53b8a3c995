"""``ReaderDataModule``: the Lightning glue shared by the file and in-memory DataModules.

Subclasses only say where each split's readers come from (:meth:`open_split`); the readers,
validation, caching, transforms and statistics are the functional pieces in this package.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, SequentialSampler

from nl_lightning.data.cache import CacheKind, make_cache
from nl_lightning.data.dataset import ArrayDataset, collate_batch
from nl_lightning.data.group_sampler import RowGroupSampler, group_members
from nl_lightning.data.readers.base import Reader
from nl_lightning.data.resumable import EpochSampler, ResumableDataLoader, SkippingBatchSampler
from nl_lightning.data.sampler import ArrayBatchSampler
from nl_lightning.data.shared_batches import SharedBatchLoader
from nl_lightning.data.split import split_rows
from nl_lightning.data.stats import feature_moments
from nl_lightning.data.transforms import Compose, Normalize, Transform
from nl_lightning.data.validate import OnBad, scan_rows
from nl_lightning.errors import ConfigError

Split = Literal["train", "val", "test", "predict"]
FeatureDType = Literal["float32", "float64", "float16", "int64", "int32", "uint8", "bool"]
TargetDType = Literal["auto", "int64", "int32", "float32", "float64"]
STAGE_SPLITS: dict[str | None, tuple[Split, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("predict",),
    None: ("train", "val", "test", "predict"),
}


class ReaderDataModule(L.LightningDataModule, ABC):
    """Train / val / test / predict datasets over readers, with batch reads, validation and caching.

    Batches are ``{"x": features, "y": targets}``; each DataLoader batch is one index array
    (:class:`ArrayBatchSampler`) and one sorted read per reader. ``val`` / ``test`` come from their own source or from ``val_fraction`` /
    ``test_fraction`` of the training rows (seeded by ``seed``, identical on every DDP rank).
    """

    def __init__(
        self,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        persistent_workers: bool | None = None,
        prefetch_factor: int | None = None,
        batches_per_message: int | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        val_fraction: float = 0.0,
        test_fraction: float = 0.0,
        seed: int = 0,
        feature_dtype: FeatureDType = "float32",
        target_dtype: TargetDType = "auto",
        feature_shape: list[int] | None = None,
        validate: bool = True,
        on_bad: OnBad = "raise",
        normalize: bool = False,
        transforms: list[Transform] | None = None,
        transform_on: Literal["sample", "batch"] = "batch",
        cache: CacheKind = "none",
        cache_dir: str | None = None,
        cache_memory_bytes: int = 2**30,
    ) -> None:
        """
        Args:
            batch_size: samples per batch (one reader call each).
            num_workers: DataLoader worker processes (0 reads in the main process).
            pin_memory: page-locked batches for fast GPU copies; ``None`` = when CUDA is available.
            persistent_workers: keep workers between epochs; ``None`` = when ``num_workers > 0``.
            prefetch_factor: worker messages loaded ahead per worker; ``None`` = as many as fit in
                ``PREFETCH_BYTES`` (8 MiB) per worker, 2 to 8 (see :func:`auto_prefetch`).
            batches_per_message: consecutive batches a worker reads per request and sends back in
                one message (:class:`SharedBatchLoader`); ``None`` = about ``MESSAGE_BYTES`` (4 MiB)
                of them, 1 to 16 (see :func:`auto_batches_per_message`).
            shuffle: shuffle the training split each epoch.
            drop_last: drop the last incomplete training batch.
            val_fraction: fraction of training rows held out for validation (no ``val`` source then).
            test_fraction: fraction of training rows held out for testing.
            seed: seeds the split and the random transforms.
            feature_dtype: dtype features are converted to (checked: no overflow, no lost fractions).
            target_dtype: dtype of targets; ``auto`` = int64 for integer data, float32 for floats.
            feature_shape: declared sample shape; samples with as many elements are reshaped.
            validate: scan each source once in ``setup`` for NaN / Inf and unconvertible values.
            on_bad: what a bad row does: ``raise`` an error, ``drop`` it, or ``warn`` and keep it.
            normalize: z-score features with per-feature stats of the training split (finite rows
                only). nl_lightning models take the statistics into their own weights and then get
                raw features (so checkpoints, exports and servers normalize the same way); other
                models get normalized batches.
            transforms: random augmentations for training, e.g. RandomNoise, RandomScale; they act
                on raw features, before normalization.
            transform_on: ``sample`` in DataLoader workers on CPU, or ``batch`` on the device.
            cache: ``none``, ``memory`` (LRU), ``disk`` (memory-mapped) or ``hybrid`` (both).
            cache_dir: folder of the disk cache (default ``~/.cache/nl_lightning/data``).
            cache_memory_bytes: budget of the memory cache, per process.
        """
        super().__init__()
        _check_args(batch_size, num_workers, prefetch_factor, validate, on_bad, transform_on, cache)
        if batches_per_message is not None and (num_workers == 0 or batches_per_message < 1):
            raise ConfigError(f"batches_per_message={batches_per_message} needs num_workers > 0 and a value >= 1; "
                              "leave it null to choose it from the batch size.")
        self.batch_size, self.num_workers, self.prefetch_factor = batch_size, num_workers, prefetch_factor
        self.batches_per_message = batches_per_message
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers = num_workers > 0 if persistent_workers is None else persistent_workers
        self.shuffle, self.drop_last = shuffle, drop_last
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed
        split_rows([0, 1, 2], val_fraction, test_fraction)  # validates the fractions now
        self.feature_dtype, self.target_dtype, self.feature_shape = feature_dtype, target_dtype, feature_shape
        self.validate, self.on_bad = validate, on_bad
        self.normalize, self.normalizer = normalize, Normalize()
        self.model_normalizes = False  # set by models that hold the statistics themselves
        self.transforms, self.transform_on = list(transforms or []), transform_on
        self.cache, self.cache_dir, self.cache_memory_bytes = cache, cache_dir, cache_memory_bytes
        self.datasets: dict[str, ArrayDataset] = {}
        self.bad_rows: dict[str, int] = {}
        self._train_parts: dict[str, ArrayDataset] | None = None
        self._generators: dict[torch.device, torch.Generator] = {}

    @abstractmethod
    def open_split(self, split: Split) -> tuple[Reader, Reader | None] | None:
        """``(features, targets)`` readers of ``split``'s own source, or ``None`` if it has none."""

    def missing_hint(self, split: Split) -> str:
        """How to give ``split`` a source, for error messages."""
        return f"give the DataModule {split} data"

    def source_files(self, split: Split) -> list[str]:
        """The files ``split`` is read from (none for data in memory); ``val`` / ``test`` held out by
        a fraction are read from the training files."""
        return []

    def setup(self, stage: str | None = None) -> None:
        for split in STAGE_SPLITS.get(stage, STAGE_SPLITS[None]):
            if split not in self.datasets:
                dataset = self._build(split)
                if dataset is not None:
                    self.datasets[split] = dataset

    def _fraction(self, split: Split) -> float:
        return {"val": self.val_fraction, "test": self.test_fraction}.get(split, 0.0)

    def _build(self, split: Split) -> ArrayDataset | None:
        if split == "train" or self._fraction(split) > 0:
            return self._from_training(f"the {split} split")[split]
        opened = self.open_split(split)
        if opened is None:
            return None
        dataset = self._checked(split, self._decode(*opened))
        return dataset.subset(dataset.rows, self._make_cache(dataset), self._sample_transform(split))

    def _from_training(self, purpose: str) -> dict[str, ArrayDataset]:
        """Train (and held-out val / test) datasets, built once from the training source."""
        if self._train_parts is None:
            opened = self.open_split("train")
            if opened is None:
                raise ConfigError(f"No training data for {purpose}: {self.missing_hint('train')}.")
            full = self._checked("train", self._decode(*opened))
            cache = self._make_cache(full)
            parts = split_rows(full.rows, self.val_fraction, self.test_fraction, self.seed)
            self._train_parts = {
                name: full.subset(rows, cache, self._sample_transform(name)) for name, rows in parts.items()
            }
        return self._train_parts

    def _decode(self, features: Reader, targets: Reader | None) -> ArrayDataset:
        return ArrayDataset(
            features, targets, feature_dtype=self.feature_dtype, target_dtype=self.target_dtype,
            feature_shape=self.feature_shape, seed=self.seed,
        )

    def _checked(self, split: str, dataset: ArrayDataset) -> ArrayDataset:
        """``dataset`` keeping the rows that pass validation under ``on_bad``."""
        if not self.validate:
            return dataset
        sources = [(dataset.features, dataset.feature_dtype)]
        if dataset.targets is not None:
            sources.append((dataset.targets, dataset.target_dtype))
        result = scan_rows(sources, self.on_bad)
        self.bad_rows[split] = len(result.bad)
        return dataset.subset(result.rows)

    def _make_cache(self, dataset: ArrayDataset) -> Any:
        return make_cache(
            self.cache, name=dataset.cache_name(), fingerprint=dataset.fingerprint(), length=len(dataset.features),
            fields=dataset.fields(), directory=self.cache_dir, max_bytes=self.cache_memory_bytes,
        )

    def _augmentations(self, split: str) -> Transform | None:
        """The random augmentations, for the training split only."""
        if split != "train" or not self.transforms:
            return None
        return self.transforms[0] if len(self.transforms) == 1 else Compose(self.transforms)

    def _sample_transform(self, split: str) -> Transform | None:
        return self._augmentations(split) if self.transform_on == "sample" else None

    def _ensure_stats(self) -> None:
        """Compute Normalize statistics from the training split once, unless restored already."""
        if self.normalize and not self.normalizer.fitted:
            train = self._from_training("normalize=True (statistics come from the training split; or restore "
                                        "them with ckpt_path=... / load_state_dict)")["train"]
            self.normalizer.set_stats(*feature_moments(train.iter_features()))

    def feature_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-feature ``(mean, std)`` of the training split's finite rows (for models that normalize)."""
        if not self.normalize:
            raise ConfigError("feature_statistics() needs normalize=True on the DataModule.")
        self._ensure_stats()
        return self.normalizer.mean, self.normalizer.std

    def label_range(self) -> tuple[int, int, str] | None:
        """``(lowest, highest, source)`` of the integer labels of the splits set up so far, so a
        classifier can check its ``num_classes`` before training; ``None`` when there are none or
        they are not integer class ids."""
        splits = [d for name, d in self.datasets.items() if name != "predict" and d.targets is not None and len(d.rows)]
        if not splits or not all(np.issubdtype(d.targets.dtype, np.integer) for d in splits):
            return None
        labels = np.concatenate([d.targets.read_batch(np.unique(d.rows)) for d in splits])
        sources = ", ".join(dict.fromkeys(d.targets.source for d in splits))
        return int(labels.min()), int(labels.max()), sources

    def _loader(self, split: Split, stage: str) -> DataLoader:
        if split not in self.datasets:
            self.setup(stage)
        if split not in self.datasets:
            raise ConfigError(f"No {split} data: {self.missing_hint(split)}.")
        if not self.model_normalizes:
            self._ensure_stats()
        workers = {}
        dataset, train = self.datasets[split], split == "train"
        if self.num_workers > 0:
            batch_bytes = self.batch_size * _row_bytes(dataset)
            per_message = self.batches_per_message or auto_batches_per_message(batch_bytes)
            prefetch = self.prefetch_factor or auto_prefetch(per_message * batch_bytes)
            workers = {"persistent_workers": self.persistent_workers, "prefetch_factor": prefetch,
                       "batches_per_message": per_message}
        if not train:
            batches = ArrayBatchSampler(SequentialSampler(dataset), self.batch_size, drop_last=False)
            return SharedBatchLoader(dataset, batch_sampler=batches, num_workers=self.num_workers,
                                     pin_memory=self.pin_memory, collate_fn=collate_batch, **workers)
        # Training: order from (seed, epoch) only, and resumable mid-epoch (``data/resumable.py``).
        batches = SkippingBatchSampler(self._train_sampler(dataset), self.batch_size, drop_last=self.drop_last)
        return ResumableDataLoader(dataset, batch_sampler=batches, num_workers=self.num_workers,
                                   pin_memory=self.pin_memory, collate_fn=collate_batch, **workers)

    def _train_sampler(self, dataset: ArrayDataset) -> Sampler[int]:
        """Sequential, a uniform shuffle, or, over row groups too many to keep decoded, a shuffle
        of groups then of rows within a window of groups (``data/group_sampler.py``)."""
        if not self.shuffle:
            return SequentialSampler(dataset)
        groups = dataset.features.row_groups()
        if groups is None:
            return EpochSampler(dataset, self.seed)
        return RowGroupSampler(group_members(dataset.rows, groups), groups.window, self.seed)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", "fit")

    def val_dataloader(self) -> DataLoader | list:
        if "val" not in self.datasets:
            self.setup("validate")
        return self._loader("val", "validate") if "val" in self.datasets else []  # [] = no validation

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", "test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", "predict")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """On the device: augmentations while training (``transform_on="batch"``), then Normalize,
        unless the model normalizes its inputs itself (nl_lightning models do)."""
        if not isinstance(batch, dict) or "x" not in batch:
            return batch
        x = batch["x"]
        training = self.trainer is not None and self.trainer.training
        augment = self._augmentations("train") if training and self.transform_on == "batch" else None
        if augment is not None:
            x = augment(x, self._device_generator(x.device))
        if self.normalize and not self.model_normalizes:
            x = self.normalizer(x)
        return batch if x is batch["x"] else {**batch, "x": x}

    def locate_rows(self, rows: Any) -> list[str]:
        """Where source ``rows`` of the split being run live (file, key, row), for error messages."""
        stage = getattr(getattr(self.trainer, "state", None), "stage", None)
        split = {"train": "train", "sanity_check": "val", "validate": "val", "test": "test",
                 "predict": "predict"}.get(getattr(stage, "value", None), "train")
        dataset = self.datasets.get(split)
        if dataset is None:
            return [f"row {int(r)}" for r in rows]
        return [dataset.features.locate(int(r)) for r in rows]

    def _device_generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            rank = self.trainer.global_rank if self.trainer is not None else 0
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed + rank)
        return self._generators[device]

    def state_dict(self) -> dict[str, Any]:
        """Normalize statistics (for models that do not normalize themselves) and the state of the
        batch-augmentation generators, so a resumed run draws the same noise as an uninterrupted one."""
        state: dict[str, Any] = {"normalize": self.normalizer.state_dict()} if self.normalizer.fitted else {}
        if self._generators:
            state["generators"] = {str(device): g.get_state() for device, g in self._generators.items()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.normalizer.load_state_dict(state_dict.get("normalize", {}))
        for device, generator_state in state_dict.get("generators", {}).items():
            generator = torch.Generator(device=device)
            generator.set_state(generator_state)
            self._generators[torch.device(device)] = generator


MESSAGE_BYTES = 4 * 2**20
PREFETCH_BYTES = 8 * 2**20


def auto_batches_per_message(batch_bytes: int) -> int:
    """Batches a worker returns per message by default: about ``MESSAGE_BYTES`` of them (rounded), 1 to 16.

    Each message costs the main process a fixed ~50-100 us, which small batches cannot hide. With
    2 workers on 2 cores (page-cached ``.npy``, AMD EPYC), against the raw read of the same
    batches: batches of 256 x 4 KiB went from ~0.43x at 1 per message to ~0.60x at 4 (~0.64x at 8);
    batches of 32 x 4 KiB from ~0.08x to ~0.24x at 16, no better at 32.
    """
    return int(min(16, max(1, round(MESSAGE_BYTES / max(batch_bytes, 1)))))


def auto_prefetch(message_bytes: int) -> int:
    """Messages each worker loads ahead by default: as many as fit in ``PREFETCH_BYTES``, 2 to 8.

    Once batches travel several per message, more in flight barely helps (256 x 4 KiB, 4 per
    message: 2 ahead ~0.60x of the raw read, 4 ahead ~0.59x) and costs shared memory
    (``(prefetch + 2) x batches_per_message + 2`` slots per worker).
    """
    return int(min(8, max(2, PREFETCH_BYTES // max(message_bytes, 1))))


def _row_bytes(dataset: ArrayDataset) -> int:
    """Bytes of one sample in a batch: its fields and its ``row_id``."""
    return 8 + sum(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize for shape, dtype in dataset.fields())


def _check_args(batch_size: int, num_workers: int, prefetch_factor: int | None, validate: bool,
                on_bad: str, transform_on: str, cache: str) -> None:
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1; got {batch_size}.")
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0; got {num_workers}.")
    if prefetch_factor is not None and num_workers == 0:
        raise ConfigError(f"prefetch_factor={prefetch_factor} needs num_workers > 0; leave it null for num_workers=0.")
    if on_bad not in ("raise", "drop", "warn"):
        raise ConfigError(f"on_bad must be 'raise', 'drop' or 'warn'; got {on_bad!r}.")
    if on_bad != "raise" and not validate:
        raise ConfigError(f"on_bad={on_bad!r} needs validate=True (bad rows are found by the validation scan).")
    if transform_on not in ("sample", "batch"):
        raise ConfigError(f"transform_on must be 'sample' or 'batch'; got {transform_on!r}.")
    if cache not in ("none", "memory", "disk", "hybrid"):
        raise ConfigError(f"cache must be 'none', 'memory', 'disk' or 'hybrid'; got {cache!r}.")


def describe_data(datamodule: L.LightningDataModule, split: Split) -> dict[str, Any]:
    """What ``split`` of ``datamodule`` is, for a manifest: its class and the files it reads."""
    cls = type(datamodule)
    files = datamodule.source_files(split) if isinstance(datamodule, ReaderDataModule) else []
    return {"datamodule": f"{cls.__module__}.{cls.__qualname__}", "split": split, "files": files}
