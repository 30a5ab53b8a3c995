"""INT8 of the llama-style LM on real text: fused ONNX Runtime graphs against eager and ORT fp32.

    python benchmarks/int8_llama.py             # full: llama preset (4 x 256, 8 heads, 2 KV heads), T=128
    python benchmarks/int8_llama.py --quick     # < 60 s on 2 cores: 2 layers, few steps (a smoke test)

``TransformerConfig.from_preset("llama")`` is trained briefly on the char LM's text
(``CharTextDataModule``, Python's own docs), then every variant is built from the same weights
and measured in this process (``compression.measure``): top-1 agreement with eager fp32 on the
held-out validation text, size ratio (fp32 state dict bytes / artifact bytes), and latency at
batch 1 and 32 (p50 of interleaved, rotating rounds, ``export/profile.py``) against eager fp32
and ORT fp32 with the same thread count. ``ort_optimized`` and the INT8 variants start from the
graph fused for ONNX Runtime (GroupQueryAttention with rotary, SkipSimplifiedLayerNormalization);
``*_unfused`` rows quantize the plain graph, so the fusion's share shows apart, ``*_unsmoothed`` rows
skip SmoothQuant (``export/smooth.py``; its scales and static INT8's ranges come from 8 training
batches, never the held-out text agreement is measured on), and ``*_unscaled`` rows skip the
per-token scaling (``export/token_scale.py``, on by default); their targets are checked too. The ``bf16`` row
(eager PyTorch, weights cast) is a reference, not an INT8 candidate: on a CPU with AMX-BF16 its
matmuls run on the tile unit. INT8 uses this CPU's recipe (``ort.int8_recipe``); the CPU's
instruction sets are recorded with the figures, and each kind of CPU keeps its latest run
(``results/cpus/int8_llama/``); ``python benchmarks/isa_mask.py avx2 benchmarks/int8_llama.py`` adds
the AVX2 figure on a CPU with VNNI (AVX-512 and VNNI hidden from CPUID: ``isa_mask.py``).
Figures go to ``benchmarks/results/int8_llama.json``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from _results import changed_code, cpu_label, cpu_records, write_result
from compression import latency_cell, print_table, train_lm
from compression import measure as measure_variants

from nl_lightning.export.isa import cpu_isa, has_vnni
from nl_lightning.export.ort import int8_recipe
from nl_lightning.models import TransformerConfig

TARGETS = {"b1_vs_eager": 3.0, "b32_vs_eager": 2.5, "vs_ort_fp32": 1.5, "size_ratio": 3.5, "agreement": 99.0}
TARGET_VARIANT = "ort_int8_dynamic"
OPT_OUT_VARIANT = "ort_int8_dynamic_unscaled"
"""Checked against the same targets: what turning the per-token scaling off (``token_scale: false``) trades."""
SEQ_LEN = 128

SETTINGS: dict[str, dict[str, Any]] = {
    "quick": {"layers": 2, "steps": 10, "eval_batches": 2, "warmup": 1, "timing": {1: (2, 1), 32: (2, 1)},
              "variants": ["ort_fp32", "ort_int8_dynamic"], "unfused": [], "unscaled": ["ort_int8_dynamic"]},
    "full": {"layers": 4, "steps": 600, "eval_batches": 16, "warmup": 3, "timing": {1: (10, 30), 32: (10, 6)},
             "variants": ["ort_fp32", "ort_optimized", "ort_int8_dynamic", "ort_int8_static", "bf16"],
             "unfused": ["ort_int8_dynamic"], "unsmoothed": ["ort_int8_dynamic"], "unscaled": ["ort_int8_dynamic"]},
}


def llama_config(layers: int) -> dict[str, Any]:
    config = TransformerConfig.from_preset("llama").to_dict()
    return {**config, "n_layers": layers, "max_seq_len": SEQ_LEN}


def check_targets(task: dict[str, Any], variant: str = TARGET_VARIANT) -> dict[str, Any]:
    row = next(r for r in task["variants"] if r["variant"] == variant)
    result = {
        "b1_vs_eager": row["latency_b1_vs_eager"], "b32_vs_eager": row["latency_b32_vs_eager"],
        "vs_ort_fp32": min(row["latency_b1_vs_ort_fp32"], row["latency_b32_vs_ort_fp32"]),
        "size_ratio": row["size_ratio"], "agreement": row["agreement"],
    }
    result["met"] = {k: result[k] >= TARGETS[k] for k in TARGETS}
    result["all_met"] = all(result["met"].values())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 layers, few steps (< 60 s on 2 cores)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for torch and ONNX Runtime")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: full 600, quick 15)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    settings = {**SETTINGS["quick" if args.quick else "full"], "prune": False}
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    L.seed_everything(args.seed, verbose=False)
    steps = args.steps or settings["steps"]
    lm, data = train_lm({"config": llama_config(settings["layers"]), "seq_len": SEQ_LEN, "steps": steps})
    with tempfile.TemporaryDirectory(prefix="nl-bench-") as tmp:
        task = measure_variants("llama", lm, data, SEQ_LEN, settings, args.threads, Path(tmp))
    isa = cpu_isa()
    results = {"mode": "quick" if args.quick else "full", "threads": args.threads, "steps": steps,
               "config": llama_config(settings["layers"]), "isa": isa, "vnni": has_vnni(isa),
               "int8_recipe": int8_recipe(isa).to_dict(), "task": task}
    print_table("llama", task)
    results["targets"] = {"thresholds": TARGETS, "variant": TARGET_VARIANT, **check_targets(task)}
    if any(r["variant"] == OPT_OUT_VARIANT for r in task["variants"]):
        results["targets_opt_out"] = {"thresholds": TARGETS, "variant": OPT_OUT_VARIANT,
                                      **check_targets(task, OPT_OUT_VARIANT)}
    results["seconds"] = round(time.perf_counter() - start, 1)
    write_result("int8_llama", results, args, quick=args.quick, per_cpu=True)


def render(figures: dict[str, Any]) -> str:
    """README section: each variant against eager and ORT fp32, the targets, and the ISA they hold on."""
    isa = ", ".join(figures["isa"]) or "unknown"
    lines = [
        f"`TransformerConfig.from_preset(\"llama\")` ({figures['config']['n_layers']} layers x "
        f"{figures['config']['d_model']}, {figures['config']['n_heads']} heads, {figures['config']['n_kv_heads']} KV "
        f"heads) trained {figures['steps']} steps on the char LM's text, T={SEQ_LEN}, {figures['threads']} thread(s) for "
        f"torch and ONNX Runtime; agreement = top-1 predictions equal to eager fp32's on held-out text. CPU "
        f"instruction sets: {isa} ({'with' if figures['vnni'] else '**without**'} VNNI); INT8 recipe "
        f"{figures['int8_recipe']}.",
        "", "| variant | size ratio | latency b1 | latency b32 | agreement |", "|---|---|---|---|---|",
    ]
    for r in figures["task"]["variants"]:
        if r["variant"] != "eager":
            agree = f"{r['agreement']:.2f}%" if r.get("agreement") is not None else "-"
            lines.append(f"| {r['variant']} | {r['size_ratio']:.2f}x | {latency_cell(r, 1)} | {latency_cell(r, 32)} | {agree} |")
    for key in ("targets", "targets_opt_out"):
        if key in figures:
            t = figures[key]
            checks = "; ".join(f"{k} {t[k]:.2f} (>= {v}: {'met' if t['met'][k] else '**not met**'})"
                               for k, v in t["thresholds"].items())
            opt_out = " (`token_scale: false`)" if key == "targets_opt_out" else ""
            lines += ["", f"Targets for `{t['variant']}`{opt_out}: {checks}."]
    return "\n".join(lines + render_cpus(cpu_records("int8_llama")))


def render_cpus(records: list[dict[str, Any]]) -> list[str]:
    """Each kind of CPU's latest run side by side: the targets hold on one CPU and not another (eager fp32 is
    the baseline, and its speed differs more between CPUs than INT8's does)."""
    if not records:
        return []
    lines = ["", "Each kind of CPU's latest full run (`benchmarks/results/cpus/int8_llama/`), per-token scaling on "
             "and off; eager fp32 is the baseline of both speed ratios:", "",
             "| CPU (INT8 unit) | token_scale | b1 vs eager | b32 vs eager | vs ORT fp32 | size | agreement | "
             "targets | eager b1 / b32 | measured |", "|---|---|---|---|---|---|---|---|---|---|"]
    for record in records:
        figures, m = record["figures"], record["machine"]
        eager = next(r for r in figures["task"]["variants"] if r["variant"] == "eager")
        state = "code changed since" if changed_code(record) else "current code"
        measured = f"{m['time_utc'][:10]}, `{m['git_commit']}` ({state})"
        for t, on in recipe_rows(figures):
            met = "all met" if t["all_met"] else "not met: " + ", ".join(k for k, ok in t["met"].items() if not ok)
            lines.append(
                f"| {cpu_label(m)} | {'on' if on else 'off'} | {t['b1_vs_eager']:.2f}x | "
                f"{t['b32_vs_eager']:.2f}x | {t['vs_ort_fp32']:.2f}x | {t['size_ratio']:.2f}x | {t['agreement']:.2f}% | "
                f"{met} | {eager['latency_ms_b1']:.2f} / {eager['latency_ms_b32']:.1f} ms | {measured} |")
    return lines



def recipe_rows(figures: dict[str, Any]) -> list[tuple[dict[str, Any], bool]]:
    """A run's target checks as ``(targets, token_scale)``, scaling on first: its default recipe's, and the
    opt-out row (or, before scaling was the default, the opt-in one)."""
    default = figures["int8_recipe"].get("token_scale", False)
    rows = [(figures[key], on) for key, on in (("targets", default), ("targets_opt_in", True),
                                               ("targets_opt_out", False)) if key in figures]
    return sorted(rows, key=lambda row: not row[1])


def headline(figures: dict[str, Any]) -> tuple[str, str]:
    """README's table of headline figures: (what was measured, the figure)."""
    t = figures["targets"]
    checks = ", ".join(f"{k} {t[k]:.2f}" for k in t["thresholds"])
    vnni = "with" if figures["vnni"] else "without"
    figure = f"{checks} ({'met' if all(t['met'].values()) else '**not met**'})"
    if "targets_opt_out" in figures:
        o = figures["targets_opt_out"]
        figure += (f"; `token_scale: false`: agreement {o['agreement']:.2f}, b1 {o['b1_vs_eager']:.2f}, "
                   f"b32 {o['b32_vs_eager']:.2f} ({'met' if all(o['met'].values()) else '**not met**'})")
    for record in cpu_records("int8_llama"):  # the other kinds of CPU, with per-token scaling on
        if record["figures"] == figures:
            continue
        m, (other, _) = record["machine"], recipe_rows(record["figures"])[0]
        changed = ", code changed since" if changed_code(record) else ""
        figure += (f"; on {cpu_label(m)} (`{m['git_commit']}`{changed}): "
                   f"b1 {other['b1_vs_eager']:.2f}, b32 {other['b32_vs_eager']:.2f}, agreement "
                   f"{other['agreement']:.2f} ({'met' if other['all_met'] else '**not met**'})")
    return f"llama-preset LM, `{t['variant']}` vs eager fp32 ({vnni} VNNI)", figure


if __name__ == "__main__":
    main()
