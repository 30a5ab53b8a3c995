"""Batch inference samples/s: ``Trainer.predict`` + ``Predictor`` + ``PredictionWriter`` vs a plain loop.

    python benchmarks/batch_predict.py           # 100,000 rows of 16 x 8 float32 (49 MiB NPY), batch 1024
    python benchmarks/batch_predict.py --quick   # 20,000 rows (< 1 min)

Same process, same checkpoint (the ``configs/classifier.yaml`` model), same NPY file read through a
memory map, same batches, one torch thread. Sides:

- ``plain``: a loop over slices of the memory-mapped array: ``torch.from_numpy``, the model under
  ``inference_mode``, softmax + argmax, and every ``rows_per_shard`` rows one ``np.savez`` of
  ``row_id`` / ``probabilities`` / ``label`` (what a hand-written job saves).
- ``writer``: ``nl-lightning predict``'s path: ``FileDataModule(predict_path=...)``, ``Predictor`` on
  the checkpoint, ``PredictionWriter(format="npz")`` writing atomic, checksummed shards + manifest;
  Lightning's progress bar off. Trainer construction is included in its time.
- ``writer_onnx`` (full runs, or ``--onnx``): the same with ``Predictor(backend="onnx")`` on the
  model's ONNX export (ORT-optimized graph, one intra-op thread): the speed alternative.

Rounds alternate the order; samples/s is each side's median over rounds, and a ratio the median of
the per-round ratios, so a drift between rounds falls on both sides alike (with 3 rounds on a noisy
2-vCPU VM, the plain loop alone swung 9.7k-14.5k samples/s and the writer's ratio 0.77-1.13x; full runs
take 7). Target: writer >= 0.9x plain.
The last stdout line is JSON (``benchmarks/results/batch_predict.json``).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result  # noqa: E402

from nl_lightning.callbacks import PredictionWriter  # noqa: E402
from nl_lightning.data import FileDataModule  # noqa: E402
from nl_lightning.models import TransformerClassifier, TransformerConfig, load_checkpoint  # noqa: E402
from nl_lightning.serve import Predictor  # noqa: E402

STEPS, FEATURES, BATCH, ROWS_PER_SHARD = 16, 8, 1024, 65536


def make_model(folder: Path, onnx: bool) -> Path:
    torch.manual_seed(0)
    model = TransformerClassifier(TransformerConfig(input_dim=FEATURES, n_layers=2, d_model=64, n_heads=4,
                                                    max_seq_len=STEPS, position="none", causal=False), num_classes=3)
    path = folder / "model" / "model.ckpt"
    path.parent.mkdir(parents=True)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    if onnx:
        from nl_lightning.export import ExportConfig, export_formats

        export_formats(model.eval(), path.parent / "export", ExportConfig(formats=["onnx", "onnx_optimized"]))
    return path


def plain(checkpoint: Path, data: Path, out: Path) -> None:
    model = load_checkpoint(checkpoint).eval()
    x = np.load(data, mmap_mode="r")
    buffer: list[tuple[np.ndarray, ...]] = []
    shard = 0

    def save() -> None:
        nonlocal shard
        ids, probs, labels = (np.concatenate(parts) for parts in zip(*buffer))
        np.savez(out / f"shard-{shard:06d}.npz", row_id=ids, probabilities=probs, label=labels)
        buffer.clear()
        shard += 1

    with torch.inference_mode():
        for start in range(0, len(x), BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(x[start:start + BATCH]))
            probs = model(batch).float().softmax(-1)
            buffer.append((np.arange(start, start + len(batch)), probs.numpy(), probs.argmax(-1).numpy()))
            if sum(len(b[0]) for b in buffer) >= ROWS_PER_SHARD:
                save()
    if buffer:
        save()


def writer(checkpoint: Path, data: Path, out: Path, backend: str = "torch") -> None:
    source = checkpoint.parent
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[PredictionWriter(str(out), format="npz",
                                                                                rows_per_shard=ROWS_PER_SHARD)])
    datamodule = FileDataModule(predict_path=str(data), targets=None, batch_size=BATCH, shuffle=False)
    trainer.predict(Predictor(str(source), backend=backend, task="classification", threads=1), datamodule=datamodule)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--onnx", action="store_true", help="also time the ONNX Runtime backend (default: full runs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    rows = args.rows or (20_000 if args.quick else 100_000)
    rounds = args.rounds or (1 if args.quick else 7)
    with_onnx = args.onnx or not args.quick

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = make_model(root, with_onnx)
        data = root / "features.npy"
        np.save(data, np.random.default_rng(0).standard_normal((rows, STEPS, FEATURES)).astype(np.float32))
        sides: dict[str, Any] = {"plain": plain, "writer": writer}
        if with_onnx:
            sides["writer_onnx"] = lambda c, d, o: writer(c, d, o, backend="onnx")
        times: dict[str, list[float]] = {name: [] for name in sides}
        for r in range(rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                out = root / f"out-{name}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                started = time.perf_counter()
                sides[name](checkpoint, data, out)
                times[name].append(time.perf_counter() - started)
                print(f"round {r} {name:12s}: {rows / times[name][-1]:9.0f} samples/s", flush=True)

    figures: dict[str, Any] = {"rows": rows, "batch_size": BATCH, "rows_per_shard": ROWS_PER_SHARD, "rounds": rounds}
    for name, seconds in times.items():
        figures[f"{name}_samples_per_s"] = round(rows / statistics.median(seconds))
    for name in list(sides)[1:]:
        per_round = [plain / other for plain, other in zip(times["plain"], times[name])]
        figures[f"{name}_vs_plain"] = round(statistics.median(per_round), 3)
        figures[f"{name}_vs_plain_per_round"] = [round(r, 3) for r in per_round]
    figures["target_met"] = figures["writer_vs_plain"] >= 0.9
    print(render(figures))
    write_result("batch_predict", figures, args, quick=args.quick)


def render(figures: dict[str, Any]) -> str:
    rows = ["| path | samples/s | vs plain loop |", "|---|---|---|",
            f"| plain loop (model + `np.savez`) | {figures['plain_samples_per_s']:,} | 1.00x |",
            f"| `Trainer.predict` + `Predictor` + `PredictionWriter` | {figures['writer_samples_per_s']:,} | "
            f"{figures['writer_vs_plain']:.2f}x |"]
    if "writer_onnx_samples_per_s" in figures:
        rows.append(f"| same, `Predictor(backend=\"onnx\")` | {figures['writer_onnx_samples_per_s']:,} | "
                    f"{figures['writer_onnx_vs_plain']:.2f}x |")
    verdict = "met" if figures["target_met"] else "**not met**"
    return "\n".join(rows) + (
        f"\n\n{figures['rows']:,} rows of {STEPS} x {FEATURES} float32, batch {figures['batch_size']}, NPZ shards of "
        f"{figures['rows_per_shard']:,} rows; samples/s is each path's median over {figures['rounds']} rounds, and a ratio "
        f"the median of its per-round ratios. Target (writer path >= 0.9x the plain loop): {verdict}.")


def headline(figures: dict[str, Any]) -> tuple[str, str]:
    """README's table of headline figures: (what was measured, the figure)."""
    verdict = "met" if figures["target_met"] else "**not met**"
    return ("`Trainer.predict` + `PredictionWriter` vs a plain loop, samples/s",
            f"{figures['writer_vs_plain']:.2f}x (target >= 0.9x: {verdict})")


if __name__ == "__main__":
    main()
