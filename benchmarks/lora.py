"""LoRA vs a full fine-tune of the same Llama-style ``TransformerLM``: trainable share and step time.

    python benchmarks/lora.py           # the "llama" preset (4 layers, d_model 256), batch 8 x 256
    python benchmarks/lora.py --quick   # 2 layers, d_model 128, batch 4 x 128 (< 60 s)

Both sides, in this process: the same config and initial base weights (seeded), the same batches
(``CharTextDataModule``'s train set), AdamW from ``build_optimizer`` (so only trainable parameters
get optimizer state), a plain forward / cross-entropy / backward / step loop, warm-up steps excluded.
``lora`` wraps ``--targets`` with rank ``--r`` (the base frozen); ``full`` trains every weight. The
order alternates every repeat; the ratio is the median of per-repeat ratios full / lora of step time
(> 1: LoRA steps are faster). Also reported: trainable parameters and their share, and AdamW's
state bytes (two fp32 moments per trainable parameter). Figures go to
``benchmarks/results/lora.json``; :func:`measure_lora` is the part ``benchmarks/pretrained.py``
reuses at its own Llama config.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from _results import write_result
from torch.utils.data import DataLoader

from nl_lightning.data import CharTextDataModule
from nl_lightning.models import OptimizerConfig, SchedulerConfig, TransformerConfig, TransformerLM, lora_parameter_counts
from nl_lightning.models.optim import build_optimizer


def make_model(config: dict[str, Any], lora: dict[str, Any] | None) -> TransformerLM:
    """Seeded before the base is built, so both sides start from the same base weights."""
    torch.manual_seed(0)
    return TransformerLM(TransformerConfig(**config), OptimizerConfig(lr=1e-3), SchedulerConfig(name="none"), lora=lora)


def time_steps(model: TransformerLM, loader: DataLoader, warmup: int, steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds of ``steps`` optimizer steps after ``warmup`` untimed ones."""
    net, optimizer = model.model.train(), build_optimizer(model, model.optimizer_config)
    start = (time.perf_counter(), time.process_time())
    for step, (idx, targets) in enumerate(loader):
        if step == warmup:
            start = (time.perf_counter(), time.process_time())
        if step == warmup + steps:
            break
        loss = F.cross_entropy(net(idx).flatten(0, 1).float(), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start[0], time.process_time() - start[1]


def measure_lora(config: dict[str, Any], loader_factory: Any, lora: dict[str, Any], warmup: int = 3,
                 steps: int = 10, repeats: int = 3) -> dict[str, Any]:
    """LoRA (``lora``) against a full fine-tune at ``config``; ``loader_factory()`` gives the same
    batches each call. Returns the figures (see the module docstring)."""
    counts = {name: lora_parameter_counts(make_model(config, spec)) for name, spec in (("lora", lora), ("full", None))}
    wall: dict[str, list[float]] = {"lora": [], "full": []}
    cpu: dict[str, list[float]] = {"lora": [], "full": []}
    for r in range(repeats):
        for name in (["lora", "full"] if r % 2 == 0 else ["full", "lora"]):
            gc.collect()
            w, c = time_steps(make_model(config, lora if name == "lora" else None), loader_factory(), warmup, steps)
            wall[name].append(w / steps)
            cpu[name].append(c / steps)
            print(f"repeat {r} {name:>4}: {1e3 * w / steps:8.1f} ms/step ({1e3 * c / steps:.1f} ms CPU)", flush=True)

    def ratio(times: dict[str, list[float]]) -> float:
        return round(statistics.median(f / lo for f, lo in zip(times["full"], times["lora"])), 4)

    return {
        "model": config, "lora": lora, "warmup": warmup, "steps": steps, "repeats": repeats,
        "trainable": {name: t for name, (t, _) in counts.items()}, "total": counts["full"][1],
        "trainable_share": {name: round(t / total, 6) for name, (t, total) in counts.items()},
        "adamw_state_bytes": {name: 2 * 4 * t for name, (t, _) in counts.items()},
        "median_step_ms": {name: round(1e3 * statistics.median(v), 2) for name, v in wall.items()},
        "step_time_ratio_full_over_lora": ratio(wall), "step_time_ratio_full_over_lora_cpu_time": ratio(cpu),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small model, few steps (< 60 s on 2 cores)")
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=16.0)
    parser.add_argument("--targets", nargs="+", default=["q_proj", "v_proj"])
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=None, help="runs per side")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch's default)")
    args = parser.parse_args()
    args.steps = args.steps or (5 if args.quick else 10)
    args.repeats = args.repeats or (2 if args.quick else 5)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main() -> None:
    args = parse_args()
    config = TransformerConfig.from_preset("llama").to_dict()
    if args.quick:
        config.update(n_layers=2, d_model=128, n_heads=4, n_kv_heads=2, max_seq_len=128)
    seq_len, batch = (128, 4) if args.quick else (256, 8)
    dm = CharTextDataModule(seq_len=seq_len, batch_size=batch)
    dm.setup("fit")

    def loader() -> DataLoader:
        return DataLoader(dm.train_set, batch_size=batch, shuffle=True, drop_last=True,
                          generator=torch.Generator().manual_seed(0))

    lora = {"r": args.r, "alpha": args.alpha, "targets": args.targets}
    print(f"TransformerLM llama-style {config['n_layers']} layers, d_model {config['d_model']}, batch {batch} x "
          f"{seq_len}; LoRA {lora}; {args.steps} timed steps, {args.repeats} repeats, {torch.get_num_threads()} threads")
    figures = {**measure_lora(config, loader, lora, steps=args.steps, repeats=args.repeats),
               "batch_size": batch, "seq_len": seq_len}
    print(f"trainable: lora {figures['trainable']['lora']:,} ({figures['trainable_share']['lora']:.2%}) vs full "
          f"{figures['trainable']['full']:,}; step time full / lora {figures['step_time_ratio_full_over_lora']:.3f}")
    write_result("lora", figures, args, quick=args.quick)


def render(figures: dict[str, Any]) -> str:
    """README section: trainable share, optimizer state and step time of LoRA vs a full fine-tune."""
    m, share, ms = figures["model"], figures["trainable_share"], figures["median_step_ms"]
    return "\n".join([
        f"LoRA (r={figures['lora']['r']}, targets {', '.join(figures['lora']['targets'])}) vs a full fine-tune of the "
        f"same Llama-style `TransformerLM` ({m['n_layers']} layers, d_model {m['d_model']}, batch "
        f"{figures['batch_size']} x {figures['seq_len']}), plain training loop, {figures['repeats']} alternating repeats:",
        "",
        "| side | trainable parameters | share | AdamW state | ms / step (median) |",
        "|---|---|---|---|---|",
        *(f"| {name} | {figures['trainable'][name]:,} | {share[name]:.2%} | "
          f"{figures['adamw_state_bytes'][name] / 1e6:.2f} MB | {ms[name]:.1f} |" for name in ("lora", "full")),
        "",
        f"Step time full / LoRA: **{figures['step_time_ratio_full_over_lora']:.3f}** (CPU time "
        f"{figures['step_time_ratio_full_over_lora_cpu_time']:.3f}).",
    ])


def headline(figures: dict[str, Any]) -> tuple[str, str]:
    """README's table of headline figures: (what was measured, the figure)."""
    share = figures["trainable_share"]["lora"]
    return ("LoRA vs a full fine-tune of the same LM",
            f"{share:.2%} of the parameters train; full / LoRA step time {figures['step_time_ratio_full_over_lora']:.3f}")


if __name__ == "__main__":
    main()
