"""Training tokens/s of the char LM with every tracking monitor and TensorBoard + MLflow, against no
monitors and CSV only, in the same process.

    python benchmarks/tracking_overhead.py           # configs/char_lm.yaml's model and batch (32 x 128)
    python benchmarks/tracking_overhead.py --quick   # 2 layers, d_model 64, batch 8 x 128 (< 60 s)

Sides (same seeded weights, batches, optimizer and steps; ``log_every_n_steps`` 25 as char_lm.yaml):

- ``baseline``: ``CSVLogger`` only, no monitor.
- ``tracked``: ``TensorBoardLogger`` + ``MLFlowLogger`` (SQLite store in a temp folder, asynchronous
  logging as in configs/track/mlflow.yaml) and every
  monitor at its default interval: ``GradientMonitor`` (every log step, NaN/Inf check every step),
  ``HistogramMonitor`` (every 100 steps), ``DeviceStatsMonitor(cpu_stats=True)``,
  ``TaskThroughputMonitor``, ``LearningRateMonitor``, ``RunMetadata``, ``CurvesCallback``.

Each run is timed by a callback from the start of the first counted batch to the end of the last
(Trainer start-up, fit-start metadata and the fit-end curves are outside the window: they are paid
once per run, not per step). The order alternates every repeat; the ratio is the median of
per-repeat ``tracked / baseline`` ratios (wall time, and this process's CPU time). One torch thread
(``--threads``) for steady figures on a shared machine. Target: ratio >= 0.95.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import DeviceStatsMonitor, LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result  # noqa: E402

from nl_lightning.callbacks import (  # noqa: E402
    CurvesCallback, GradientMonitor, HistogramMonitor, RunMetadata, TaskThroughputMonitor,
)
from nl_lightning.data import CharTextDataModule  # noqa: E402
from nl_lightning.models import OptimizerConfig, SchedulerConfig, TransformerConfig, TransformerLM  # noqa: E402

TARGET = 0.95
LOG_EVERY = 25


class StepTimer(L.Callback):
    """(wall, CPU) seconds and optimizer steps from the start of global step ``first`` to the last step.

    Counted by ``trainer.global_step``, not ``batch_idx`` (which restarts every epoch: the char LM's epoch
    is shorter than a run).
    """

    def __init__(self, first: int) -> None:
        self.first, self.start, self.end, self.steps = first, (0.0, 0.0), (0.0, 0.0), 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.first and self.steps == 0:
            self.start = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step > self.first:
            self.end = (time.perf_counter(), time.process_time())
            self.steps = trainer.global_step - self.first


def loggers_and_callbacks(side: str, root: Path, mlflow_uri: str) -> tuple[list[Any], list[L.Callback]]:
    if side == "baseline":
        return [CSVLogger(root, name="baseline")], []
    loggers = [TensorBoardLogger(root, name="tracked"),
               MLFlowLogger(experiment_name="tracking_overhead", tracking_uri=mlflow_uri,
                            artifact_location=(root / "mlartifacts").as_uri(), synchronous=False)]
    callbacks = [GradientMonitor(), HistogramMonitor(), DeviceStatsMonitor(cpu_stats=True), TaskThroughputMonitor(),
                 LearningRateMonitor(logging_interval="step"), RunMetadata(), CurvesCallback()]
    return loggers, callbacks


def run(side: str, config: dict[str, Any], dm: CharTextDataModule, args: argparse.Namespace, root: Path,
        mlflow_uri: str) -> tuple[float, float]:
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**config), OptimizerConfig(lr=2e-3), SchedulerConfig(name="none"))
    loader = DataLoader(dm.train_set, batch_size=dm.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    loggers, callbacks = loggers_and_callbacks(side, root, mlflow_uri)
    timer = StepTimer(first=args.warmup)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision="32-true", max_steps=args.warmup + args.steps, gradient_clip_val=1.0,
        log_every_n_steps=LOG_EVERY, logger=loggers, callbacks=[*callbacks, timer], enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
    )
    trainer.fit(model, train_dataloaders=loader)
    if timer.steps != args.steps:
        raise RuntimeError(f"timed {timer.steps} steps, expected {args.steps}")
    return timer.end[0] - timer.start[0], timer.end[1] - timer.start[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small model, fewer steps (< 60 s on 2 cores)")
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument("--repeats", type=int, default=None, help="runs per side")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch's default)")
    args = parser.parse_args()
    args.steps = args.steps or (50 if args.quick else 100)
    args.repeats = args.repeats or (2 if args.quick else 4)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main() -> None:
    args = parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    n_layers, d_model, batch = (2, 64, 8) if args.quick else (4, 128, 32)
    config = dict(vocab_size=256, n_layers=n_layers, d_model=d_model, n_heads=4, max_seq_len=128)
    dm = CharTextDataModule(seq_len=128, batch_size=batch)
    dm.setup("fit")
    tokens = args.steps * batch * 128
    wall: dict[str, list[float]] = {"baseline": [], "tracked": []}
    cpu: dict[str, list[float]] = {"baseline": [], "tracked": []}
    with tempfile.TemporaryDirectory() as tmp:
        root, uri = Path(tmp), f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        print(f"TransformerLM {config}, batch {batch} x 128, {args.steps} timed steps after {args.warmup}, "
              f"{args.repeats} repeats, {torch.get_num_threads()} thread(s)", flush=True)
        for r in range(args.repeats):
            for side in (("baseline", "tracked") if r % 2 == 0 else ("tracked", "baseline")):
                gc.collect()
                wall_s, cpu_s = run(side, config, dm, args, root, uri)
                wall[side].append(tokens / wall_s)
                cpu[side].append(tokens / cpu_s)
                print(f"repeat {r} {side:>8}: {tokens / wall_s:8.0f} tokens/s ({wall_s:.2f} s wall, {cpu_s:.2f} s CPU)",
                      flush=True)
    ratio = statistics.median(t / b for t, b in zip(wall["tracked"], wall["baseline"]))
    ratio_cpu = statistics.median(t / b for t, b in zip(cpu["tracked"], cpu["baseline"]))
    figures = {
        "model": config, "batch_size": batch, "seq_len": 128, "steps": args.steps, "warmup": args.warmup,
        "repeats": args.repeats, "log_every_n_steps": LOG_EVERY, "load_avg_1m": round(os.getloadavg()[0], 2),
        "tokens_per_s": {k: [round(v, 1) for v in vals] for k, vals in wall.items()},
        "median_tokens_per_s": {k: round(statistics.median(v), 1) for k, v in wall.items()},
        "ratio": round(ratio, 4), "ratio_cpu_time": round(ratio_cpu, 4), "target": TARGET, "met": ratio >= TARGET,
    }
    print(f"tracked / baseline: {ratio:.3f} wall, {ratio_cpu:.3f} CPU time (target >= {TARGET})")
    write_result("tracking_overhead", figures, args, quick=args.quick)


def render(figures: dict[str, Any]) -> str:
    """README section: the table and whether the target is met."""
    med = figures["median_tokens_per_s"]
    m = figures["model"]
    verdict = "met" if figures["ratio"] >= figures["target"] else "**not met**"
    return (
        "| side | loggers | monitors | tokens/s (median) |\n|---|---|---|---|\n"
        f"| baseline | CSV | none | {med['baseline']:.0f} |\n"
        f"| tracked | TensorBoard + MLflow (SQLite) | gradient stats, histograms, device stats, throughput/MFU, "
        f"LR, run metadata, curves | {med['tracked']:.0f} |\n\n"
        f"Char LM ({m['n_layers']} x {m['d_model']}, batch {figures['batch_size']} x {figures['seq_len']}), "
        f"{figures['steps']} timed steps, {figures['repeats']} interleaved repeats, every monitor at its default "
        f"interval (logging every {figures['log_every_n_steps']} steps): tracked / baseline = "
        f"**{figures['ratio']:.3f}** (CPU time {figures['ratio_cpu_time']:.3f}); target >= {figures['target']} {verdict}."
    )


def headline(figures: dict[str, Any]) -> tuple[str, str]:
    """README's table of headline figures: (what was measured, the figure)."""
    verdict = "met" if figures["ratio"] >= figures["target"] else "**not met**"
    return ("Every monitor + TensorBoard + MLflow vs CSV only, training tokens/s",
            f"{figures['ratio']:.3f}x (target >= {figures['target']}: {verdict})")


if __name__ == "__main__":
    main()
