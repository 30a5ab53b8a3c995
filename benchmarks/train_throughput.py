"""Training tokens/s of ``TransformerLM`` under ``lightning.Trainer`` vs a plain PyTorch loop.

    python benchmarks/train_throughput.py           # configs/char_lm.yaml's model and batch (32 x 128)
    python benchmarks/train_throughput.py --quick   # 2 layers, d_model 64, batch 8 x 128 (< 60 s)

All sides, in this process: the same model config and initial weights (seeded), the same batches
(``CharTextDataModule``'s train set, one seeded shuffle), AdamW with the same param groups from
``build_optimizer``, no LR schedule, the same steps and norm clipping at 1.0; the final losses
printed agree to ~1e-4 (Lightning sums the clipping norm over the optimizer's param groups, a
different order). Warm-up steps are excluded everywhere: the Trainer is timed by a callback from
``on_train_batch_start`` of the first counted batch to ``on_train_batch_end`` of the last (Trainer
start-up is not counted), the plain loops over the same steps. Sides:

- ``lightning``: ``Trainer.fit``; ``TransformerLM.training_step`` also logs the train
  perplexity ``exp(loss)`` through ``self.log``.
- ``plain``: forward, cross-entropy, backward, clip, step.
- ``plain_ppl``: ``plain`` plus the same perplexity value, so ``lightning / plain_ppl`` is the
  Trainer's own overhead and ``lightning / plain`` what a user pays for the whole module.

The order rotates every repeat; each ratio is the median of per-repeat ratios, by wall time and
by this process's CPU time. Torch runs one intra-op thread unless ``--threads N`` (0 = torch's
default): on a machine shared with other jobs, two OpenMP threads slow down many-fold whenever
another job takes a core, while one thread gives steady ratios. Figures go to
``benchmarks/results/train_throughput.json`` (the last stdout line is the same JSON); README's
section comes from it through ``render``.

``--accelerator cuda --precision bf16-mixed`` runs every side on the GPU under bf16 autocast (the
plain loops with ``torch.autocast``, as Lightning's precision plugin does); ``benchmarks/gpu.sh``
runs it in fp32 and bf16-mixed and collects both into ``results/gpu.json``, so GPU runs write no
file of their own.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from _results import write_result
from torch.utils.data import DataLoader

from nl_lightning.data import CharTextDataModule
from nl_lightning.models import OptimizerConfig, SchedulerConfig, TransformerConfig, TransformerLM
from nl_lightning.models.optim import build_optimizer

CLIP = 1.0
TARGET = 0.95


PRECISIONS = ("32-true", "bf16-mixed")
DEVICE = torch.device("cpu")  # set by main() from --accelerator


def clock() -> tuple[float, float]:
    """(wall, this process's CPU) seconds: CPU time is less disturbed by other jobs on the machine.
    On CUDA, queued kernels finish first."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter(), time.process_time()


def elapsed(start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    return end[0] - start[0], end[1] - start[1]


class StepTimer(L.Callback):
    """Time from the start of batch ``first`` to the end of the last batch."""

    def __init__(self, first: int) -> None:
        self.first, self.start, self.end = first, (0.0, 0.0), (0.0, 0.0)
        self.last_loss = float("nan")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if batch_idx == self.first:
            self.start = clock()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.end = clock()
        self.last_loss = float(outputs["loss"])


def make_model(config: dict[str, Any], lr: float) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(TransformerConfig(**config), OptimizerConfig(lr=lr), SchedulerConfig(name="none"))


def make_loader(dm: CharTextDataModule) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    return DataLoader(dm.train_set, batch_size=dm.batch_size, shuffle=True, drop_last=True, generator=gen)


Run = tuple[tuple[float, float], float]  # ((wall s, CPU s), final loss)


def run_lightning(config: dict[str, Any], dm: CharTextDataModule, args: argparse.Namespace) -> Run:
    model, timer = make_model(config, args.lr), StepTimer(first=args.warmup)
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=1, precision=args.precision, max_steps=args.warmup + args.steps,
        gradient_clip_val=CLIP, gradient_clip_algorithm="norm", callbacks=[timer],
        enable_progress_bar=False, logger=False, enable_checkpointing=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0,
    )
    trainer.fit(model, train_dataloaders=make_loader(dm))
    return elapsed(timer.start, timer.end), timer.last_loss


def run_plain(config: dict[str, Any], dm: CharTextDataModule, args: argparse.Namespace,
              metric: bool = False) -> Run:
    """What a user writes by hand; ``metric=True`` adds the train perplexity ``training_step`` keeps."""
    lm = make_model(config, args.lr).to(DEVICE)
    model, optimizer = lm.model.train(), build_optimizer(lm, lm.optimizer_config)
    autocast = torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    start = clock()
    for step, (idx, targets) in enumerate(make_loader(dm)):
        if step == args.warmup:
            start = clock()
        if step == args.warmup + args.steps:
            break
        idx, targets = idx.to(DEVICE, non_blocking=True), targets.to(DEVICE, non_blocking=True)
        with autocast:
            logits = model(idx)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        if metric:
            float(loss.detach().exp())  # the train perplexity training_step logs (a sync, as self.log's)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
    return elapsed(start, clock()), float(loss.detach())


RUNNERS = {
    "lightning": run_lightning,
    "plain": run_plain,
    "plain_ppl": lambda config, dm, args: run_plain(config, dm, args, metric=True),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (< 60 s on 2 cores)")
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps before them")
    parser.add_argument("--repeats", type=int, default=None, help="runs per side")
    parser.add_argument("--n-layers", type=int, default=None)
    parser.add_argument("--d-model", type=int, default=None)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: steady on a shared machine; 0 = torch's default)")
    parser.add_argument("--accelerator", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="32-true")
    args = parser.parse_args()
    if args.accelerator == "cuda" and not torch.cuda.is_available():
        parser.error(f"--accelerator cuda: torch {torch.__version__} sees no CUDA device.")
    args.n_layers = args.n_layers or (2 if args.quick else 4)
    args.d_model = args.d_model or (64 if args.quick else 128)
    args.batch_size = args.batch_size or (8 if args.quick else 32)
    args.steps = args.steps or (30 if args.quick else 15)
    args.warmup = args.warmup or 3
    args.repeats = args.repeats or 4
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main() -> None:
    global DEVICE
    args = parse_args()
    DEVICE = torch.device(args.accelerator)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-run banners
    config = dict(vocab_size=256, n_layers=args.n_layers, d_model=args.d_model, n_heads=4, max_seq_len=args.seq_len)
    dm = CharTextDataModule(seq_len=args.seq_len, batch_size=args.batch_size)
    dm.setup("fit")
    tokens = args.steps * args.batch_size * args.seq_len
    names = list(RUNNERS)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    losses: dict[str, float] = {}
    print(f"TransformerLM {config}, batch {args.batch_size} x {args.seq_len} tokens, {args.steps} timed steps "
          f"after {args.warmup} warm-up, {args.repeats} repeats per side, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.accelerator} {args.precision}; Trainer timed by callback "
          "(start-up excluded)")
    for r in range(args.repeats):
        for name in names[r % 3:] + names[:r % 3]:  # rotate the order every repeat
            gc.collect()  # the previous run's objects (a Trainer is full of cycles) go before timing starts
            (wall_s, cpu_s), losses[name] = RUNNERS[name](config, dm, args)
            wall[name].append(tokens / wall_s)
            cpu[name].append(tokens / cpu_s)
            print(f"repeat {r} {name:>9}: {tokens / wall_s:8.0f} tokens/s  ({wall_s:.2f} s wall, {cpu_s:.2f} s CPU, "
                  f"loss {losses[name]:.4f})", flush=True)
    summary = summarize(wall, cpu)
    print("median tokens/s: " + ", ".join(f"{k} {v:.0f}" for k, v in summary["median_tokens_per_s"].items()))
    print(f"lightning / plain: {summary['ratio']:.3f} (CPU time {summary['ratio_cpu_time']:.3f}); lightning / "
          f"plain_ppl: {summary['ratio_vs_plain_ppl']:.3f} (CPU time {summary['ratio_vs_plain_ppl_cpu_time']:.3f}); "
          "medians of per-repeat ratios, target >= 0.95")
    figures = {
        "model": config, "batch_size": args.batch_size, "seq_len": args.seq_len, "steps": args.steps,
        "warmup": args.warmup, "repeats": args.repeats, **summary, "target": TARGET,
        "accelerator": args.accelerator, "precision": args.precision,
        "final_loss": {k: round(v, 5) for k, v in losses.items()},  # same weights, batches and updates
    }
    on_cpu = args.accelerator == "cpu" and args.precision == "32-true"  # others: collected by benchmarks/gpu.sh
    write_result("train_throughput", figures, args, quick=args.quick or not on_cpu)


def render(figures: dict[str, Any]) -> str:
    """README section: tokens/s of each side and the ratios against the target."""
    m, tps = figures["model"], figures["median_tokens_per_s"]
    met = "met" if figures["ratio"] >= figures["target"] else "**not met**"
    return "\n".join([
        f"`TransformerLM` ({m['n_layers']} layers, d_model {m['d_model']}, batch {figures['batch_size']} x "
        f"{figures['seq_len']} tokens) under `Trainer` vs a plain PyTorch loop: same weights, batches, AdamW groups "
        f"and clipping; Trainer start-up excluded; {figures['repeats']} repeats in rotating order:",
        "",
        "| side | tokens/s (median) |",
        "|---|---|",
        *(f"| {name} | {value:.0f} |" for name, value in tps.items()),
        "",
        f"Ratio lightning / plain: **{figures['ratio']:.3f}** (CPU time {figures['ratio_cpu_time']:.3f}; target >= "
        f"{figures['target']}: {met}); lightning / plain_ppl (the Trainer's own overhead): "
        f"{figures['ratio_vs_plain_ppl']:.3f}. Final losses: "
        + ", ".join(f"{k} {v:.4f}" for k, v in figures["final_loss"].items()) + ".",
    ])


def summarize(wall: dict[str, list[float]], cpu: dict[str, list[float]]) -> dict[str, Any]:
    """Ratios are medians over repeats of lightning / baseline within one repeat: runs of a repeat
    are adjacent in time, so they share the machine's load."""
    def paired(tps: dict[str, list[float]], baseline: str) -> float:
        return round(statistics.median(a / b for a, b in zip(tps["lightning"], tps[baseline])), 4)

    return {
        "tokens_per_s": {k: [round(x, 1) for x in v] for k, v in wall.items()},
        "median_tokens_per_s": {k: round(statistics.median(v), 1) for k, v in wall.items()},
        "ratio": paired(wall, "plain"), "ratio_cpu_time": paired(cpu, "plain"),
        "ratio_vs_plain_ppl": paired(wall, "plain_ppl"), "ratio_vs_plain_ppl_cpu_time": paired(cpu, "plain_ppl"),
    }


def headline(figures: dict[str, Any]) -> tuple[str, str]:
    """README's table of headline figures: (what was measured, the figure)."""
    met = "met" if figures["ratio"] >= figures["target"] else "**not met**"
    return ("`Trainer` vs a plain PyTorch loop, training tokens/s",
            f"{figures['ratio']:.3f}x (target >= {figures['target']}: {met})")


if __name__ == "__main__":
    main()
