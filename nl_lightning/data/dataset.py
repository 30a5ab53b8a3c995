"""A map-style Dataset over readers that reads a whole batch in one sorted call (``__getitems__``)."""

from __future__ import annotations

import copy
import os
import re
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, get_worker_info
from torch.utils.data import default_collate

from nl_lightning._io import bytes_sha256
from nl_lightning.data.cache import Fields, SampleCache
from nl_lightning.data.readers.base import Reader
from nl_lightning.data.shared_batches import worker_batch_array
from nl_lightning.data.transforms import Transform
from nl_lightning.data.validate import check_dtype, check_lengths, check_sample_shape, resolve_dtype

Batch = dict[str, Tensor]


class ArrayDataset(Dataset):
    """Samples ``{"x": features, "y": targets}`` (``"y"`` only with targets) from aligned readers.

    ``rows`` selects and orders source rows (a split, or the rows left after validation).
    The DataLoader's batch sampler hands ``__getitems__`` a list of indices; they are sorted,
    read with one ``read_batch`` per reader (through ``cache`` when given), converted to
    ``feature_dtype`` / ``target_dtype`` and ``feature_shape``, then put back in sampler order.
    ``pre_transform`` (deterministic) runs before caching and is part of :meth:`fingerprint`;
    ``transform`` runs after, drawing from a generator seeded by ``seed`` (and the worker seed).
    In a :class:`~nl_lightning.data.shared_batches.SharedBatchLoader` worker, features are read
    straight into the worker's shared memory (``worker_batch_array``): one copy per batch.
    """

    def __init__(
        self,
        features: Reader,
        targets: Reader | None = None,
        *,
        rows: Sequence[int] | np.ndarray | None = None,
        feature_dtype: str | None = "float32",
        target_dtype: str | None = None,
        feature_shape: Sequence[int] | None = None,
        pre_transform: Transform | None = None,
        transform: Transform | None = None,
        cache: SampleCache | None = None,
        seed: int = 0,
    ) -> None:
        check_lengths(features, targets)
        self.features, self.targets = features, targets
        self.feature_dtype = resolve_dtype(feature_dtype, features.dtype)
        check_dtype(features, self.feature_dtype)
        self.feature_shape = check_sample_shape(features, feature_shape)
        self.target_dtype = None if targets is None else resolve_dtype(target_dtype, targets.dtype)
        if targets is not None:
            check_dtype(targets, self.target_dtype)
        self.rows = np.arange(len(features)) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(self.rows) and not (0 <= self.rows.min() and self.rows.max() < len(features)):
            raise IndexError(f"rows must lie in [0, {len(features)}) for {features.source}.")
        self.pre_transform, self.transform, self.cache, self.seed = pre_transform, transform, cache, seed
        self._generator: torch.Generator | None = None
        self._generator_pid: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def subset(
        self, rows: np.ndarray, cache: SampleCache | None = None, transform: Transform | None = None
    ) -> "ArrayDataset":
        """The same sources restricted to source ``rows``, with their own cache and transform."""
        out = copy.copy(self)
        out.rows, out.cache, out.transform = np.asarray(rows, dtype=np.int64), cache, transform
        out._generator = out._generator_pid = None
        return out

    def fields(self) -> list[tuple[tuple[int, ...], np.dtype]]:
        """``(shape, dtype)`` of each decoded field, as a cache stores them."""
        out = [(self.feature_shape, self.feature_dtype)]
        if self.targets is not None:
            out.append((self.targets.sample_shape, self.target_dtype))
        return out

    def cache_name(self) -> str:
        """What a cache of this dataset holds (sources, keys, dtypes, ``pre_transform``), readable."""
        what = "|".join([self.features.source, self.targets.source if self.targets else "-", str(self.fields())])
        what += "|" + repr(self.pre_transform)
        stem = re.sub(r"[^A-Za-z0-9]+", "_", self.features.source).strip("_")[-40:]
        return f"{stem}-{bytes_sha256(what.encode())[:8]}"

    def fingerprint(self) -> str:
        """Changes with the sources' content (size, mtime_ns), dtypes, shapes or ``pre_transform``."""
        parts = [self.features.fingerprint(), self.targets.fingerprint() if self.targets else "-"]
        parts += [str(self.fields()), repr(self.pre_transform)]
        return bytes_sha256("|".join(parts).encode())[:16]

    def load(self, rows: np.ndarray, out: np.ndarray | None = None) -> Fields:
        """Decoded fields of sorted unique source ``rows``, bypassing the cache; features are written
        into ``out`` (shape ``(len(rows), *feature_shape)``, ``feature_dtype``) when given."""
        if out is not None and self.pre_transform is None:
            x = self.features.read_into(rows, out.reshape(len(rows), *self.features.sample_shape))
        else:
            x = self.features.read_batch(rows).astype(self.feature_dtype, copy=False)
        x = x.reshape(len(rows), *self.feature_shape)
        if self.pre_transform is not None:
            x = self.pre_transform(torch.from_numpy(x)).numpy()
        if self.targets is None:
            return (x,)
        return x, self.targets.read_batch(rows).astype(self.target_dtype, copy=False)

    def read_rows(self, rows: np.ndarray, out: np.ndarray | None = None) -> Fields:
        """Like :meth:`load`, through the cache when there is one (``out`` is then left unused)."""
        return self.load(rows, out) if self.cache is None else self.cache.read(rows, self.load)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        wanted = self.rows[np.asarray(indices, dtype=np.int64)]
        out = worker_batch_array((len(wanted), *self.feature_shape), self.feature_dtype)  # None but in workers
        if len(wanted) > 1 and not (wanted[1:] > wanted[:-1]).all():  # shuffled: read sorted, reorder after
            rows, inverse = np.unique(wanted, return_inverse=True)
            x, *rest = self.read_rows(rows)
            fields = (np.take(x, inverse, axis=0, out=out, mode="clip"), *(field[inverse] for field in rest))
        else:
            fields = self.read_rows(wanted, out)
        x = torch.from_numpy(fields[0])
        if self.transform is not None:
            x = self.transform(x, self.generator())
        batch = {"x": x}
        if self.targets is not None:
            batch["y"] = torch.from_numpy(fields[1])
        batch["row_id"] = torch.from_numpy(wanted)  # source rows: errors name them, prediction writers key on them
        return batch

    def __getitem__(self, index: int) -> Batch:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}

    def iter_features(self, chunk_rows: int = 65536) -> Iterator[np.ndarray]:
        """Features of every row in source order, ``chunk_rows`` at a time (no cache, no transform)."""
        rows = np.sort(self.rows)
        for start in range(0, len(rows), chunk_rows):
            yield self.load(rows[start : start + chunk_rows])[0]

    def generator(self) -> torch.Generator:
        """This process's generator: ``seed`` in the main process, ``seed`` mixed with the worker seed."""
        if self._generator is None or self._generator_pid != os.getpid():
            info = get_worker_info()
            seed = self.seed if info is None else hash((self.seed, info.seed))
            self._generator = torch.Generator().manual_seed(seed % 2**63)
            self._generator_pid = os.getpid()
        return self._generator

    def __getstate__(self) -> dict[str, Any]:
        return {**vars(self), "_generator": None, "_generator_pid": None}


def collate_batch(batch: Any) -> Any:
    """``collate_fn`` for :class:`ArrayDataset`: its batches are already stacked; others use torch's."""
    if isinstance(batch, dict):
        return batch
    return default_collate(batch)
