"""Samples/s through FileDataModule's DataLoader vs a raw read loop of the same bytes.

Writes one file per format (NPY, HDF5, Parquet) of ``--size-mb`` to a temporary folder, then for
each format times a raw loop (np.memmap slices, h5py sorted slices, pyarrow ``iter_batches``)
against two DataLoaders for num_workers 0 / 1 / 2, each after a warm-up pass so that every number
is a page-cache-warm steady state:

- ``fast``: ``shuffle=False, validate=False``, the settings that read sequentially;
- ``default``: what a user gets without settings (``shuffle=True, validate=True``): random batches
  of sorted rows, and a one-off NaN / Inf scan in ``setup`` (``default_setup_s``).

Raw and loader passes alternate and the best of ``--repeats`` is kept. Each fast loader is also
compared with a bare torch DataLoader returning the raw slices with the same workers
(``_vs_bare_torch``): it hands batches from workers over through torch's per-batch shared memory,
ours through preallocated slots (``data/shared_batches.py``). Then:

- ``transform``: a CPU-heavy per-sample transform (FFT round trips, ``transform_on="sample"``),
  samples/s with each worker count against 0 workers: what workers are for;
- ``parquet_shuffled``: the default shuffled path over a Parquet file 4x ``parquet_cache_mb``
  (row-group shuffle, ``data/group_sampler.py``) against a sequential pyarrow read;
- the shuffled path on HDF5: Hdf5Reader's one read per batch of sorted random rows vs one h5py
  read per row through an already open dataset, for a contiguous and a chunked dataset.

The folder is deleted at the end.

    python benchmarks/data_throughput.py            # 256 MiB per format
    python benchmarks/data_throughput.py --quick    # 32 MiB per format, under a minute on 2 cores

Figures go to ``benchmarks/results/data_throughput.json`` (the last stdout line is the same JSON).
"""

from __future__ import annotations

import argparse
import inspect
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from _results import write_result

from nl_lightning.data import FileDataModule
from nl_lightning.data.readers import Hdf5Reader
from nl_lightning.data.transforms import Transform

SAMPLE_SHAPE = (64, 16)  # 4 KiB of float32 per sample


def write_files(folder: Path, n: int, row_group: int) -> dict[str, dict]:
    """The same (n, 64, 16) float32 array as .npy, HDF5 (row chunks) and Parquet (list column)."""
    rng = np.random.default_rng(0)
    size = math.prod(SAMPLE_SHAPE)
    npy = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=np.float32, shape=(n, *SAMPLE_SHAPE))
    with h5py.File(folder / "x.h5", "w") as h5:
        ds = h5.create_dataset("x", shape=(n, *SAMPLE_SHAPE), dtype=np.float32, chunks=(256, *SAMPLE_SHAPE))
        writer = pq.ParquetWriter(folder / "x.parquet", pa.schema([("x", pa.list_(pa.float32(), size))]))
        for start in range(0, n, row_group):
            block = rng.standard_normal((min(row_group, n - start), *SAMPLE_SHAPE), dtype=np.float32)
            npy[start : start + len(block)] = block
            ds[start : start + len(block)] = block
            column = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), size)
            writer.write_table(pa.table({"x": column}), row_group_size=row_group)
        writer.close()
    npy.flush()
    del npy
    return {
        "npy": {"path": str(folder / "x.npy"), "features": "x"},
        "hdf5": {"path": str(folder / "x.h5"), "features": "/x"},
        "parquet": {"path": str(folder / "x.parquet"), "features": "x"},
    }


def raw_batches(fmt: str, path: str, batch: int) -> Iterable[np.ndarray]:
    """The baseline: each format's own fastest sequential read of ``batch`` rows at a time."""
    if fmt == "npy":
        data = np.load(path, mmap_mode="r")
        for start in range(0, len(data), batch):
            yield np.array(data[start : start + batch])
    elif fmt == "hdf5":
        with h5py.File(path, "r") as f:
            ds = f["x"]
            for start in range(0, len(ds), batch):
                yield ds[start : start + batch]
    else:
        for record in pq.ParquetFile(path).iter_batches(batch_size=batch, columns=["x"]):
            yield record.column(0).flatten().to_numpy().reshape(-1, *SAMPLE_SHAPE)


def rate(make: Callable[[], Iterable], max_batches: int | None = None) -> float:
    """Steady-state samples/s of one pass (the first ``max_batches`` batches, or all): the clock starts
    when the first batch arrives and that batch is not counted, so a pass is not charged for what
    comes before its batches flow. That includes persistent workers finishing the batches they had
    prefetched for the pass before, when it was cut short (``max_batches``): torch's DataLoader
    drains them before a new pass, up to ``prefetch_factor x workers`` messages. With the FFT
    transform the first batch of such a pass took 600-680 ms on an AMD EPYC against 44-108 ms with
    no workers, and halved the 2-worker rate of a 20-batch pass (7.0k/s once flowing, 3.7k/s
    counted from ``iter``).

    A loader whose workers send ``batches_per_message`` (k) batches at once is timed from the
    arrival of one message to that of a later one: the clock stops at the last batch whose index is
    a multiple of k, counting the batches before it, so the batches that come with the first
    message are not counted as free."""
    source = make()
    k = getattr(source, "batches_per_message", 1) if getattr(source, "num_workers", 0) else 1
    start = stop = None
    count = counted = 0
    for i, item in enumerate(source):
        now = time.perf_counter()
        if i:
            count += len(item["x"] if isinstance(item, dict) else item)
        if i % k == 0:
            start = now if start is None else start
            stop, counted = now, count
        if max_batches is not None and i + 1 >= max_batches:
            break
    if start is None or counted == 0:
        raise ValueError(f"a timed pass needs at least {k + 1} batches")
    return counted / (stop - start)


def interleaved(makers: dict[str, Callable[[], Iterable]], repeats: int,
                limits: dict[str, int] | None = None) -> dict[str, float]:
    """Best samples/s of each maker over ``repeats`` rounds; the makers take turns, in an order
    that rotates every round.

    One untimed warm-up pass each first (page cache, worker start-up); taking turns keeps a busy
    shared machine from favouring whichever is measured first. ``limits``: batches per pass for
    makers too slow for a full one (random access).
    """
    limits = limits or {}
    for name, make in makers.items():
        rate(make, limits.get(name))
    names, best = list(makers), dict.fromkeys(makers, 0.0)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            best[name] = max(best[name], rate(makers[name], limits.get(name)))
    return best


class RawBatches(torch.utils.data.Dataset):
    """The floor of any DataLoader: the raw read of a batch's slice, returned as a tensor."""

    def __init__(self, fmt: str, path: str, n: int) -> None:
        self.fmt, self.path, self.n, self.data = fmt, path, n, None

    def __len__(self) -> int:
        return self.n

    def __getitems__(self, index: list[int]) -> torch.Tensor:
        if self.data is None:  # opened in the worker
            self.data = np.load(self.path, mmap_mode="r") if self.fmt == "npy" else h5py.File(self.path, "r")["x"]
        return torch.from_numpy(np.asarray(self.data[index[0] : index[-1] + 1]).copy() if self.fmt == "npy"
                                else self.data[index[0] : index[-1] + 1])


def bare_torch_loader(fmt: str, path: str, n: int, batch: int, workers: int) -> torch.utils.data.DataLoader:
    """A bare torch DataLoader over :class:`RawBatches` (same workers, same batches)."""
    return torch.utils.data.DataLoader(
        RawBatches(fmt, path, n), batch_size=batch, num_workers=workers, collate_fn=lambda b: b,
        persistent_workers=workers > 0,
    )


def our_loader(spec: dict, batch: int, workers: int,
               default: bool = False) -> tuple[torch.utils.data.DataLoader, float]:
    """FileDataModule's train loader and the seconds ``setup`` took. ``default``: only the settings
    a user must give (files, batch size, workers); otherwise the sequential fast path."""
    fast = {} if default else dict(shuffle=False, validate=False, persistent_workers=workers > 0, pin_memory=False)
    dm = FileDataModule(train_path=spec["path"], features=spec["features"], targets=None, batch_size=batch,
                        num_workers=workers, **fast)
    start = time.perf_counter()
    dm.setup("fit")
    return dm.train_dataloader(), time.perf_counter() - start


def measure(fmt: str, spec: dict, n: int, batch: int, workers: list[int], repeats: int,
            default_batches: int) -> dict[str, float]:
    """Raw loop vs our fast and default DataLoaders (and a bare torch one) for each worker count.

    Ratios pair figures timed in the same interleaved rounds (``workers{w}_raw``); ``raw`` is the
    best raw pass over all rounds.
    """
    row: dict[str, float] = {"raw": 0.0}
    for w in workers:
        (fast, _), (default, setup_s) = our_loader(spec, batch, w), our_loader(spec, batch, w, default=True)
        makers = {"raw": lambda: raw_batches(fmt, spec["path"], batch), "fast": lambda: fast,
                  "default": lambda: default}
        if fmt != "parquet":  # the floor for any torch Dataset with this many workers
            bare = bare_torch_loader(fmt, spec["path"], n, batch, w)
            makers["bare"] = lambda: bare
        best = interleaved(makers, repeats, {"default": default_batches})
        row["raw"] = max(row["raw"], round(best["raw"]))
        row[f"workers{w}_raw"] = round(best["raw"])  # the raw loop timed alongside, for the ratio
        for name in ("fast", "default"):
            row[f"workers{w}_{name}"] = round(best[name])
            row[f"workers{w}_{name}_ratio"] = round(best[name] / best["raw"], 3)
        row[f"workers{w}_default_setup_s"] = round(setup_s, 3)
        if w:  # what the DataModule chose for these batches (both paths: the same batch bytes)
            row[f"workers{w}_batches_per_message"] = fast.batches_per_message
            row[f"workers{w}_prefetch_factor"] = fast.prefetch_factor
        if "bare" in best:
            row[f"workers{w}_fast_vs_bare_torch"] = round(best["fast"] / best["bare"], 3)
        del fast, default, makers  # shuts persistent workers down
    return row


class FftRoundTrips(Transform):
    """A CPU-heavy per-sample augmentation: ``rounds`` 2-D FFT round trips of each sample, one at a
    time (small tensors: torch runs each on one thread, in workers and main process alike)."""

    def __init__(self, rounds: int = 8) -> None:
        self.rounds = rounds

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        out = torch.empty_like(x)
        for i, sample in enumerate(x):
            for _ in range(self.rounds):
                sample = torch.fft.irfft2(torch.fft.rfft2(sample), s=sample.shape)
            out[i] = sample
        return out


def transform_scaling(spec: dict, batch: int, workers: list[int], repeats: int, batches: int) -> dict[str, float]:
    """Samples/s with a CPU-heavy per-sample transform, per worker count, and each against 0 workers."""
    makers = {}
    for w in workers:
        dm = FileDataModule(train_path=spec["path"], features=spec["features"], targets=None, batch_size=batch,
                            num_workers=w, shuffle=False, validate=False, transforms=[FftRoundTrips()],
                            transform_on="sample", pin_memory=False)
        dm.setup("fit")
        makers[f"workers{w}"] = (lambda loader: lambda: loader)(dm.train_dataloader())
    best = interleaved(makers, repeats, dict.fromkeys(makers, batches))
    row = {k: round(v) for k, v in best.items()}
    row.update({f"{k}_vs_workers0": round(v / best["workers0"], 3) for k, v in best.items() if k != "workers0"})
    return row


def parquet_shuffled(folder: Path, n: int, batch: int, workers: list[int], repeats: int,
                     batches: int) -> dict[str, float]:
    """The default (shuffled) loader over a Parquet file 4x its cache vs a sequential pyarrow read.

    Its rows are the benchmark's Parquet file; the cache is set to a quarter of its decoded size.
    """
    path, cache_mb = str(folder / "x.parquet"), n * math.prod(SAMPLE_SHAPE) * 4 / 2**20 / 4
    makers = {"sequential": lambda: raw_batches("parquet", path, batch)}
    for w in workers:
        dm = FileDataModule(train_path=path, features="x", targets=None, feature_shape=list(SAMPLE_SHAPE),
                            batch_size=batch, num_workers=w, validate=False, parquet_cache_mb=cache_mb,
                            pin_memory=False)
        dm.setup("fit")
        makers[f"workers{w}"] = _new_epoch_each_pass(dm.train_dataloader())
    best = interleaved(makers, repeats, {k: batches for k in makers if k != "sequential"})
    row = {"cache_mb": round(cache_mb, 1), **{k: round(v) for k, v in best.items()}}
    row.update({f"{k}_vs_sequential": round(v / best["sequential"], 3) for k, v in best.items() if k != "sequential"})
    return row


def _new_epoch_each_pass(loader: torch.utils.data.DataLoader) -> Callable[[], Iterable]:
    """A maker whose every pass is a new epoch (a new order), as in training: no pass starts on the
    row groups the previous one left in the cache."""
    epochs = iter(range(10**6))

    def make() -> Iterable:
        loader.batch_sampler.sampler.set_epoch(next(epochs))
        return loader

    return make


def shuffled_hdf5(folder: Path, batch: int, n_batches: int, size_mb: int,
                  repeats: int) -> dict[str, dict[str, float]]:
    """Random batches from HDF5 files: the reader's one sorted read vs one h5py read per row (the
    dataset opened once, as a hand-written loop would), best of ``repeats`` interleaved rounds."""
    n = size_mb * 2**20 // (math.prod(SAMPLE_SHAPE) * 4)
    data = np.random.default_rng(2).standard_normal((n, *SAMPLE_SHAPE), dtype=np.float32)
    rng = np.random.default_rng(1)
    batches = [np.sort(rng.choice(n, batch, replace=False)) for _ in range(n_batches)]
    out = {}
    for layout, chunks in (("contiguous", None), ("chunked64", (64, *SAMPLE_SHAPE))):
        path = folder / f"shuffled_{layout}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=data, chunks=chunks)
        reader = Hdf5Reader(path, "x")
        with h5py.File(path, "r") as f:
            dataset = f["x"]
            makers = {"batch_read": lambda: (reader.read_batch(rows) for rows in batches),
                      "row_by_row": lambda: (np.stack([dataset[int(r)] for r in rows]) for rows in batches)}
            best = interleaved(makers, repeats)
        out[layout] = {**best, "speedup": best["batch_read"] / best["row_by_row"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 MiB files, smaller shuffled and transform tests")
    parser.add_argument("--size-mb", type=int, default=None, help="MiB per format (default 256, quick 32)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed rounds per figure (best is kept): a pass of 256 MiB lasts 0.1-0.3 s, and single "
                             "passes of the 2-worker loader swung 1.0-2.1 M samples/s on a 2-vCPU VM")
    parser.add_argument("--default-batches", type=int, default=None,
                        help="batches per timed pass of the default (shuffled) path: random reads can be too slow "
                             "for a full pass (default 100, quick 20)")
    parser.add_argument("--dir", default=None, help="parent of the temporary folder (default: system temp)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as workers run: a transform in the main process gets no extra threads
    size_mb = args.size_mb or (32 if args.quick else 256)
    args.default_batches = args.default_batches or (10 if args.quick else 100)
    n = size_mb * 2**20 // (math.prod(SAMPLE_SHAPE) * 4)
    folder = Path(tempfile.mkdtemp(prefix="nl_data_bench_", dir=args.dir))
    results: dict = {"size_mb": size_mb, "samples": n, "batch_size": args.batch_size, "sample_bytes": 4096,
                     "repeats": args.repeats, "workers": args.workers, "default_batches": args.default_batches}
    try:
        start = time.perf_counter()
        specs = write_files(folder, n, row_group=4096)
        results["write_s"] = round(time.perf_counter() - start, 2)
        for fmt, spec in specs.items():
            results[fmt] = measure(fmt, spec, n, args.batch_size, args.workers, args.repeats, args.default_batches)
            print(f"{fmt:8s} " + "  ".join(f"{k}={v}" for k, v in results[fmt].items()), flush=True)
        results["transform"] = transform_scaling(specs["npy"], args.batch_size, args.workers, args.repeats,
                                                 9 if args.quick else 20)
        print("transform " + "  ".join(f"{k}={v}" for k, v in results["transform"].items()), flush=True)
        results["parquet_shuffled"] = parquet_shuffled(folder, n, args.batch_size, args.workers, args.repeats,
                                                       args.default_batches)
        print("parquet shuffled " + "  ".join(f"{k}={v}" for k, v in results["parquet_shuffled"].items()), flush=True)
        shuffled = shuffled_hdf5(folder, args.batch_size, 8 if args.quick else 32, 32 if args.quick else 64,
                                 args.repeats)
        results["hdf5_shuffled"] = {k: {m: round(v, 1) for m, v in d.items()} for k, d in shuffled.items()}
        for layout, figures in results["hdf5_shuffled"].items():
            print(f"hdf5 shuffled {layout}: " + "  ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    write_result("data_throughput", results, args, quick=args.quick)


TARGET = 0.9  # fast path / raw loop, NPY and HDF5, 0 workers
#: With 2 workers (issue 20): NPY / HDF5 fast path vs the raw loop and vs a bare torch DataLoader; a
#: CPU-heavy transform vs 0 workers; the shuffled Parquet path (file 4x the cache) vs a sequential read.
WORKER_TARGETS = {"vs_raw": 0.5, "vs_bare_torch": 1.5, "transform_vs_workers0": 1.7, "parquet_shuffled": 0.5}
PARQUET_CACHE_MB = inspect.signature(FileDataModule).parameters["parquet_cache_mb"].default


def render(figures: dict) -> str:
    """README section: samples/s per format and worker count, fast and default paths, against the raw loop."""
    lines = [
        f"Samples/s through `FileDataModule`'s DataLoader vs a raw read loop of the same bytes, "
        f"{figures['size_mb']} MiB per format, batch {figures['batch_size']} of "
        f"{figures['sample_bytes'] // 1024} KiB samples; best of {figures['repeats']} interleaved passes, each timed "
        "from its first batch on (what comes before, e.g. workers finishing an earlier cut-short pass, is not; "
        "with several batches per worker message, from the first message to the last one counted). "
        "*fast*: `shuffle=False, validate=False`, full passes; *default*: no settings (`shuffle=True, "
        f"validate=True`), passes of {figures.get('default_batches', 'all')} batches; its NaN/Inf scan runs once in "
        "`setup`, shown apart; *vs bare*: fast / a bare torch DataLoader over the raw slices with as many workers:",
        "",
        "| format | workers | raw loop | fast | fast / raw | vs bare | default | default / raw | default setup |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for fmt in ("npy", "hdf5", "parquet"):
        row = figures[fmt]
        for w in figures.get("workers", [0, 1, 2]):
            bare = row.get(f"workers{w}_fast_vs_bare_torch")
            lines.append(
                f"| {fmt} | {w} | {_rate(row[f'workers{w}_raw'])} | {_rate(row[f'workers{w}_fast'])} | "
                f"{row[f'workers{w}_fast_ratio']:.2f}x | {f'{bare:.2f}x' if bare is not None else '-'} | "
                f"{_rate(row[f'workers{w}_default'])} | {row[f'workers{w}_default_ratio']:.2f}x | "
                f"{row[f'workers{w}_default_setup_s']:.2f} s |"
            )
    chosen = [(w, figures["npy"][f"workers{w}_batches_per_message"], figures["npy"][f"workers{w}_prefetch_factor"])
              for w in figures.get("workers", []) if f"workers{w}_batches_per_message" in figures["npy"]]
    if chosen:
        lines += ["", "With workers, the DataModule's defaults for these batches: " + "; ".join(
            f"{w} workers: {k} batches per worker message, {p} messages ahead per worker" for w, k, p in chosen) + "."]
    ratios = {fmt: figures[fmt]["workers0_fast_ratio"] for fmt in ("npy", "hdf5")
              if "workers0_fast_ratio" in figures[fmt]}
    met = all(r >= TARGET for r in ratios.values())
    shuffled = figures["hdf5_shuffled"]
    lines += ["", (f"Target (fast path >= {TARGET}x the raw loop for NPY and HDF5 with 0 workers): "
                   f"{'met' if met else '**not met**'} (" + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
                   + "). Shuffled HDF5 batches, samples/s of one sorted read per batch / one read per row: "
                   + ", ".join(f"{v['speedup']:.1f}x ({k})" for k, v in shuffled.items()) + ".")]
    if figures["size_mb"] <= PARQUET_CACHE_MB:
        lines += ["", (f"The Parquet file fits `parquet_cache_mb` ({PARQUET_CACHE_MB} MiB by default): after a loader's "
                       "first pass its row groups are served decoded from memory, while the raw loop decodes them on "
                       "every pass. Files bigger than the cache are shuffled by row groups (`RowGroupSampler`).")]
    if "transform" in figures:
        lines += ["", _worker_targets(figures)]
    return "\n".join(lines)


def worker_checks(figures: dict) -> dict[str, tuple[float, float]]:
    """``{check: (measured, target)}`` for the 2-worker targets."""
    checks = {}
    for fmt in ("npy", "hdf5"):
        checks[f"{fmt} 2 workers / raw"] = (figures[fmt]["workers2_fast_ratio"], WORKER_TARGETS["vs_raw"])
        checks[f"{fmt} 2 workers / bare torch"] = (figures[fmt]["workers2_fast_vs_bare_torch"],
                                                   WORKER_TARGETS["vs_bare_torch"])
    checks["CPU-heavy transform, 2 workers / 0"] = (figures["transform"]["workers2_vs_workers0"],
                                                    WORKER_TARGETS["transform_vs_workers0"])
    parquet = figures["parquet_shuffled"]
    best = max((k for k in parquet if k.endswith("_vs_sequential")), key=lambda k: parquet[k])
    checks[f"shuffled Parquet 4x its cache ({best.split('_')[0]}) / sequential"] = (
        parquet[best], WORKER_TARGETS["parquet_shuffled"])
    return checks


def _worker_targets(figures: dict) -> str:
    t, p = figures["transform"], figures["parquet_shuffled"]
    checks = worker_checks(figures)
    return (
        f"With a CPU-heavy per-sample transform (8 FFT round trips per sample): "
        + ", ".join(f"{k.removeprefix('workers')} workers {_rate(v)}" for k, v in t.items() if "_vs_" not in k)
        + ". Shuffled Parquet, file 4x `parquet_cache_mb` "
        f"({p['cache_mb']} MiB): sequential read {_rate(p['sequential'])}, "
        + ", ".join(f"{k.removeprefix('workers')} workers {_rate(v)}" for k, v in p.items()
                    if k.startswith("workers") and not k.endswith("_sequential"))
        + ". Targets: " + "; ".join(f"{name} {value:.2f}x (>= {target}: {'met' if value >= target else '**not met**'})"
                                    for name, (value, target) in checks.items()) + "."
    )


def _rate(samples_per_s: float) -> str:
    return f"{samples_per_s / 1e6:.2f} M/s" if samples_per_s >= 1e5 else f"{samples_per_s / 1e3:.1f} K/s"


def headline(figures: dict) -> tuple[str, str]:
    """README's table of headline figures: (what was measured, the figure): the 2-worker targets where
    measured, else the 0-worker fast path of the first version."""
    if "transform" not in figures:
        ratios = {fmt: figures[fmt]["workers0_fast_ratio"] for fmt in ("npy", "hdf5")
                  if "workers0_fast_ratio" in figures[fmt]}
        met = "met" if all(r >= TARGET for r in ratios.values()) else "**not met**"
        return ("`FileDataModule` fast path vs a raw read loop, 0 workers",
                ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()) + f" (target >= {TARGET}x: {met})")
    checks = worker_checks(figures)
    met = "met" if all(value >= target for value, target in checks.values()) else "**not met**"
    return ("`FileDataModule` with 2 workers: NPY / HDF5 vs the raw read and a bare DataLoader, CPU-heavy transform "
            "vs 0 workers, shuffled Parquet vs sequential",
            ", ".join(f"{value:.2f}x" for value, _ in checks.values()) + f" (targets: {met})")


if __name__ == "__main__":
    main()
