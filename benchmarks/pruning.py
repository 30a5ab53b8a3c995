"""Structured pruning benchmark: half the MLP channels and half the heads removed, a short fine-tune.

    python benchmarks/pruning.py            # full: classifier and char LM at compute-bound sizes (~20 min on 2 cores)
    python benchmarks/pruning.py --quick    # smoke test (< 2 min): tiny models, few steps; figures mean nothing

Per task, a model is trained, then two arms continue from the same weights for the same number of
steps with the same schedule: ``unpruned`` (plain training) and ``pruned`` (``prune_structured``
first, once per importance measure). Against the unpruned arm, in the same process: parameters,
artifact bytes (fp32 state dict, ONNX fp32, ONNX INT8), validation accuracy / loss, and latency
(p50 of interleaved, rotating rounds; eager PyTorch, ONNX Runtime fp32 and INT8; batch 1 and 32).
``pruned + INT8`` is given against the unpruned fp32 and INT8 models (the two compound).
Targets: parameters <= 0.55x, artifact >= 1.8x smaller, >= 1.5x faster (eager and ORT fp32, batch 1
and 32), classifier accuracy drop <= 1.0 point. Figures go to ``benchmarks/results/pruning.json``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from _results import write_result
from compression import time_runners, timing_record

from nl_lightning.compress.structured import config_widths, prune_structured
from nl_lightning.data import CharTextDataModule, SyntheticSequenceDataModule
from nl_lightning.export.compare import compare_variants
from nl_lightning.export.evaluate import evaluate
from nl_lightning.export.inputs import batch_input, batch_target
from nl_lightning.export.variants import VariantBuilder, torch_threads
from nl_lightning.models import TransformerClassifier, TransformerLM

TARGETS = {"params_ratio": 0.55, "size_ratio": 1.8, "latency_ratio": 1.5, "accuracy_drop": 1.0}
BATCHES = (1, 32)
VARIANTS = ("eager", "ort_fp32", "ort_int8_dynamic")
FINETUNE_LR = 0.3
"""Both arms continue at this fraction of the training LR (re-warming to the full LR undoes training)."""
CLASSIFIER = dict(input_dim=8, n_layers=4, d_model=256, n_heads=8, position="none", causal=False)
SETTINGS: dict[str, dict[str, Any]] = {
    "quick": {
        "classifier": dict(config={**CLASSIFIER, "n_layers": 2, "d_model": 64, "n_heads": 4, "max_seq_len": 16},
                           seq_len=16, samples=1024, batch_size=64, steps=30, finetune=15, lr=3e-3),
        "char_lm": dict(config=dict(n_layers=2, d_model=64, n_heads=4, max_seq_len=64), seq_len=64, batch_size=16,
                        steps=30, finetune=15, lr=2e-3),
        "heads": 0.5, "mlp": 0.5, "calibration_batches": 4, "eval_batches": 4, "warmup": 1,
        "timing": {1: (2, 2), 32: (2, 2)},
    },
    "full": {
        "classifier": dict(config={**CLASSIFIER, "max_seq_len": 32}, seq_len=32, samples=8192, batch_size=64,
                           steps=300, finetune=100, lr=1e-3),
        "char_lm": dict(config=dict(n_layers=4, d_model=256, n_heads=8, max_seq_len=128), seq_len=128, batch_size=16,
                        steps=300, finetune=100, lr=1e-3),
        "heads": 0.5, "mlp": 0.5, "calibration_batches": 16, "eval_batches": 40, "warmup": 2,
        "timing": {1: (10, 30), 32: (5, 4)},  # (calls per turn, rounds): see compression.time_runners
    },
}


def build(task: str, spec: dict[str, Any]) -> tuple[L.LightningModule, L.LightningDataModule]:
    optimizer = dict(lr=spec["lr"])
    if task == "classifier":
        data = SyntheticSequenceDataModule(kind="features", num_samples=spec["samples"], seq_len=spec["seq_len"],
                                           num_classes=3, batch_size=spec["batch_size"])
        return TransformerClassifier(spec["config"], num_classes=3, optimizer=optimizer), data
    data = CharTextDataModule(seq_len=spec["seq_len"], batch_size=spec["batch_size"])
    return TransformerLM(spec["config"], optimizer=optimizer), data


def train(module: L.LightningModule, data: L.LightningDataModule, steps: int, lr: float) -> L.LightningModule:
    """``steps`` optimizer steps with a fresh optimizer and warm-up + cosine schedule to ``lr`` over them."""
    module.optimizer_config.lr = lr
    module.scheduler_config.warmup_steps = max(1, steps // 10)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        gradient_clip_val=1.0)
    trainer.fit(module, data)
    return module


def task_loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    """Cross-entropy of classifier (B, C) or LM (B, T, V) logits: what Taylor importance differentiates."""
    logits = model(batch_input(batch))
    return F.cross_entropy(logits.flatten(0, -2).float(), batch_target(batch).flatten())


def prune(module: L.LightningModule, heads: float, mlp: float, importance: str, calibration: list) -> L.LightningModule:
    pruned = copy.deepcopy(module)
    original = config_widths(pruned.config)
    pruned.model = prune_structured(pruned.model, heads=heads, mlp=mlp, importance=importance, batches=calibration,
                                    loss_fn=task_loss)
    pruned.record_structure(original)
    return pruned


def _params(module: L.LightningModule) -> int:
    return sum(p.numel() for p in module.model.parameters())


def _eval(module: L.LightningModule, val: list) -> dict[str, float]:
    model = module.model.eval()
    metrics = evaluate(lambda x: model(x), val)
    return {"accuracy": metrics["accuracy"], "loss": metrics["loss"]}


def run_task(task: str, settings: dict[str, Any], threads: int, work_dir: Path) -> dict[str, Any]:
    spec = settings[task]
    base, data = build(task, spec)
    train(base, data, spec["steps"], spec["lr"])
    tune_lr = spec["lr"] * FINETUNE_LR
    data.setup("fit")
    val = list(itertools.islice(data.val_dataloader(), settings["eval_batches"]))
    calibration = list(itertools.islice(data.train_dataloader(), settings["calibration_batches"]))
    unpruned = train(copy.deepcopy(base), data, spec["finetune"], tune_lr)
    arms: dict[str, Any] = {}
    pruned_modules = {}
    for importance in ("magnitude", "taylor"):
        pruned = prune(base, settings["heads"], settings["mlp"], importance, calibration)
        before = _eval(pruned, val)
        pruned_modules[importance] = train(pruned, data, spec["finetune"], tune_lr)
        arms[importance] = {"before_finetune": before, "after_finetune": _eval(pruned, val)}
    best = min(arms, key=lambda k: arms[k]["after_finetune"]["loss"])
    pruned = pruned_modules["magnitude"]  # the library default; `importance` shows how the two compare
    result = {
        "seq_len": spec["seq_len"], "config": spec["config"], "steps": spec["steps"],
        "finetune_steps": spec["finetune"],
        "widths": {"unpruned": config_widths(unpruned.config), "pruned": config_widths(pruned.config)},
        "params": {"unpruned": _params(unpruned), "pruned": _params(pruned),
                   "ratio": _params(pruned) / _params(unpruned)},
        "unpruned": _eval(unpruned, val), "importance": arms, "best_importance": best,
    }
    result["variants"] = measure({"unpruned": unpruned, "pruned": pruned}, val, spec["seq_len"], settings, threads,
                                 work_dir / task)
    result["ratios"] = ratios(result["variants"])
    result["timing"] = timing_record(settings)
    return result


def measure(arms: dict[str, L.LightningModule], val: list, seq_len: int, settings: dict[str, Any], threads: int,
            work_dir: Path) -> list[dict[str, Any]]:
    """Size and metrics of every variant of both arms, then latency of all of them interleaved."""
    rows, runners = [], {}
    for arm, module in arms.items():
        builder = VariantBuilder(module.model, work_dir / arm, threads=threads)
        for row in compare_variants(builder, VARIANTS[1:], val, settings["eval_batches"]):
            row.pop("path", None)
            rows.append({"arm": arm, **row})
            runners[f"{arm}/{row['variant']}"] = builder.build(row["variant"]).run
    spec = builder.signature
    with torch_threads(threads):
        timings = time_runners(runners, lambda b: spec.example(b, spec.clamp_seq(seq_len)), settings)
    p50 = {(t.name, t.batch_size): t.p50_ms for t in timings}
    for row in rows:
        for b in BATCHES:
            row[f"latency_ms_b{b}"] = p50[(f"{row['arm']}/{row['variant']}", b)]
    return rows


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """unpruned / pruned for each variant (x > 1: smaller, faster), and pruned INT8 against unpruned fp32."""
    at = {(r["arm"], r["variant"]): r for r in rows}
    out: dict[str, float] = {}
    pairs = [(v, v) for v in VARIANTS] + [("eager", "ort_int8_dynamic"), ("ort_fp32", "ort_int8_dynamic")]
    for base, variant in pairs:
        key = variant if base == variant else f"{variant}_vs_unpruned_{base}"
        u, p = at[("unpruned", base)], at[("pruned", variant)]
        out[f"size_{key}"] = u["bytes"] / p["bytes"]
        for b in BATCHES:
            out[f"latency_{key}_b{b}"] = u[f"latency_ms_b{b}"] / p[f"latency_ms_b{b}"]
    return out


def check_targets(task: str, result: dict[str, Any]) -> dict[str, Any]:
    r = result["ratios"]
    latency = {f"{v}_b{b}": r[f"latency_{v}_b{b}"] for v in ("eager", "ort_fp32") for b in BATCHES}
    pruned = result["importance"]["magnitude"]["after_finetune"]
    checks = {
        "params_ratio": result["params"]["ratio"], "size_ratio": min(r["size_eager"], r["size_ort_fp32"]),
        "latency_ratio": min(latency.values()), "latency": latency,
        "accuracy_drop": result["unpruned"]["accuracy"] - pruned["accuracy"],
        "loss_delta": pruned["loss"] - result["unpruned"]["loss"],
    }
    checks["met"] = (checks["params_ratio"] <= TARGETS["params_ratio"] and checks["size_ratio"] >= TARGETS["size_ratio"]
                     and checks["latency_ratio"] >= TARGETS["latency_ratio"]
                     and (task != "classifier" or checks["accuracy_drop"] <= TARGETS["accuracy_drop"]))
    return checks


def print_table(task: str, result: dict[str, Any]) -> None:
    print(f"\n{task}: params {result['params']['ratio']:.3f}x, widths {result['widths']['pruned']}")
    print(f"{'arm':<10}{'variant':<18}{'MB':>8}{'b1 ms':>9}{'b32 ms':>9}{'acc %':>8}{'loss':>8}")
    for row in result["variants"]:
        print(f"{row['arm']:<10}{row['variant']:<18}{row['bytes'] / 1e6:8.3f}{row['latency_ms_b1']:9.2f}"
              f"{row['latency_ms_b32']:9.2f}{row['accuracy']:8.2f}{row['loss']:8.4f}")
    for name, arm in result["importance"].items():
        print(f"importance {name}: before fine-tune {arm['before_finetune']}, after {arm['after_finetune']}")
    print({k: round(v, 2) for k, v in result["ratios"].items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, few steps: checks the script runs")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads for torch and ONNX Runtime while timing (training uses all cores)")
    parser.add_argument("--tasks", nargs="+", default=["classifier", "char_lm"], choices=["classifier", "char_lm"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    settings = SETTINGS["quick" if args.quick else "full"]
    start = time.perf_counter()
    results: dict[str, Any] = {"mode": "quick" if args.quick else "full", "threads": args.threads,
                               "heads": settings["heads"], "mlp": settings["mlp"], "tasks": {}}
    with tempfile.TemporaryDirectory(prefix="nl-bench-") as tmp:
        for task in args.tasks:
            L.seed_everything(args.seed, verbose=False)
            results["tasks"][task] = run_task(task, settings, args.threads, Path(tmp))
            print_table(task, results["tasks"][task])
    results["targets"] = {"thresholds": TARGETS, **{t: check_targets(t, r) for t, r in results["tasks"].items()}}
    results["seconds"] = round(time.perf_counter() - start, 1)
    write_result("pruning", results, args, quick=args.quick)


TITLES = {"classifier": "classifier", "char_lm": "char LM"}


def render(figures: dict[str, Any]) -> str:
    """README section: per task, the pruned model against the unpruned one, variant by variant, and the targets."""
    lines = [
        f"{figures['heads']:.0%} of the attention heads and {figures['mlp']:.0%} of the MLP channels removed by "
        "`prune_structured` (magnitude), then fine-tuned for as many steps as the unpruned model trains on; ratios "
        f"are unpruned / pruned (x > 1: smaller, faster), latency p50 over interleaved rounds, {figures['threads']} "
        "intra-op thread(s) for torch and ONNX Runtime.",
    ]
    for task, r in figures["tasks"].items():
        q = r["ratios"]
        mag, tay = r["importance"]["magnitude"]["after_finetune"], r["importance"]["taylor"]["after_finetune"]
        lines += ["", f"**{TITLES.get(task, task)}** (seq {r['seq_len']}, {r['params']['ratio']:.2f}x the parameters; "
                      f"accuracy {r['unpruned']['accuracy']:.2f}% -> {mag['accuracy']:.2f}%, validation loss "
                      f"{r['unpruned']['loss']:.4f} -> {mag['loss']:.4f}; with Taylor importance "
                      f"{tay['accuracy']:.2f}%, {tay['loss']:.4f}):", "",
                  "| variant | size ratio | latency b1 | latency b32 |", "|---|---|---|---|"]
        for key, label in (("eager", "eager fp32"), ("ort_fp32", "ORT fp32"), ("ort_int8_dynamic", "ORT INT8"),
                           ("ort_int8_dynamic_vs_unpruned_eager", "pruned ORT INT8 vs unpruned eager fp32"),
                           ("ort_int8_dynamic_vs_unpruned_ort_fp32", "pruned ORT INT8 vs unpruned ORT fp32")):
            lines.append(f"| {label} | {q[f'size_{key}']:.2f}x | {q[f'latency_{key}_b1']:.2f}x | "
                         f"{q[f'latency_{key}_b32']:.2f}x |")
    t, th = figures["targets"], figures["targets"]["thresholds"]
    verdicts = "; ".join(
        f"{TITLES.get(n, n)}: {'met' if t[n]['met'] else '**not met**'} ({t[n]['params_ratio']:.2f}x parameters, "
        f"{t[n]['size_ratio']:.2f}x smaller, >= {t[n]['latency_ratio']:.2f}x faster, "
        f"{-t[n]['accuracy_drop']:+.2f} pt, loss {t[n]['loss_delta']:+.4f})" for n in figures["tasks"])
    lines += ["", f"Targets (parameters <= {th['params_ratio']}x, artifact >= {th['size_ratio']}x smaller, >= "
                  f"{th['latency_ratio']}x faster in eager and ORT fp32 at batch 1 and 32, classifier accuracy drop <= "
                  f"{th['accuracy_drop']} point): {verdicts}."]
    return "\n".join(lines)



def headline(figures: dict[str, Any]) -> tuple[str, str]:
    """README's table of headline figures: (what was measured, the figure)."""
    t = figures["targets"]
    parts = [f"{TITLES.get(n, n)}: {t[n]['size_ratio']:.2f}x smaller, >= {t[n]['latency_ratio']:.2f}x faster, "
             f"{-t[n]['accuracy_drop']:+.2f} pt ({'met' if t[n]['met'] else '**not met**'})" for n in figures["tasks"]]
    return ("structured pruning (heads + MLP channels) then fine-tuning, vs the unpruned model", "; ".join(parts))


if __name__ == "__main__":
    main()
