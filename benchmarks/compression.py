"""Compression benchmark: size, latency and accuracy of quantized / pruned variants against eager fp32.

    python benchmarks/compression.py            # full: char LM (char_lm.yaml architecture) + classifier
    python benchmarks/compression.py --quick    # < 60 s on 2 cores: smaller models, fewer steps

Both models are trained briefly in this process, then every variant is built from the same weights
and measured in the same process: size_ratio (fp32 state dict bytes / artifact bytes), latency_ratio
at batch 1 and 32 (fp32 p50 / variant p50, same thread count for torch and ONNX Runtime) and the
change in validation accuracy (points) and loss. The last stdout line is one JSON object.
Targets for ORT INT8 (dynamic): >= 2.5x faster than eager fp32, >= 3.5x smaller, accuracy drop <= 1 point.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

from nl_lightning.callbacks import PruningCallback
from nl_lightning.data import CharTextDataModule, SyntheticSequenceDataModule
from nl_lightning.export.compare import compare_variants
from nl_lightning.export.variants import VariantBuilder
from nl_lightning.models import TransformerClassifier, TransformerLM

TARGETS = {"latency_ratio": 2.5, "size_ratio": 3.5, "accuracy_drop": 1.0}
TARGET_VARIANT = "ort_int8_dynamic"

SETTINGS: dict[str, dict[str, Any]] = {
    "quick": {
        "lm": dict(config=dict(n_layers=2, d_model=64, n_heads=4, max_seq_len=64), seq_len=64, steps=100),
        "classifier": dict(config=dict(input_dim=8, n_layers=2, d_model=64, n_heads=4, max_seq_len=16,
                                       position="none", causal=False), samples=2048, epochs=3),
        "variants": ["ort_fp32", "ort_int8_dynamic", "ort_int8_static"],
        "eval_batches": 8, "warmup": 2, "iters": 10, "prune": False,
    },
    "full": {
        "lm": dict(config=dict(n_layers=4, d_model=128, n_heads=4, max_seq_len=128), seq_len=128, steps=400),
        "classifier": dict(config=dict(input_dim=8, n_layers=2, d_model=64, n_heads=4, max_seq_len=16,
                                       position="none", causal=False), samples=4096, epochs=6),
        "variants": ["ort_fp32", "ort_optimized", "ort_int8_dynamic", "ort_int8_static", "torchao_int8_weight",
                     "bf16"],
        "eval_batches": 40, "warmup": 3, "iters": 20, "prune": True,
    },
}


def _trainer(**kwargs: Any) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, **kwargs)


def train_lm(spec: dict[str, Any]) -> tuple[TransformerLM, CharTextDataModule]:
    data = CharTextDataModule(seq_len=spec["seq_len"], batch_size=32)
    model = TransformerLM(spec["config"], optimizer=dict(lr=2e-3), scheduler=dict(warmup_steps=20))
    _trainer(max_steps=spec["steps"], gradient_clip_val=1.0).fit(model, data)
    return model, data


def train_classifier(spec: dict[str, Any]) -> tuple[TransformerClassifier, SyntheticSequenceDataModule]:
    data = SyntheticSequenceDataModule(num_samples=spec["samples"], batch_size=64)
    model = TransformerClassifier(spec["config"], num_classes=3, optimizer=dict(lr=3e-3))
    _trainer(max_epochs=spec["epochs"]).fit(model, data)
    return model, data


def prune_and_fine_tune(model: L.LightningModule, data: L.LightningDataModule, steps: int) -> L.LightningModule:
    """50% global L1 pruning of the Linear weights after ``steps // 2`` steps, then ``steps // 2`` of fine-tuning."""
    pruned = copy.deepcopy(model)
    callback = PruningCallback(amount=0.5, scope="global", start_epoch=0)
    trainer = _trainer(max_epochs=2, limit_train_batches=max(1, steps // 2), callbacks=[callback])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(pruned, data)
    return pruned


def measure(name: str, model: L.LightningModule, data: L.LightningDataModule, seq_len: int, settings: dict,
            threads: int, work_dir: Path) -> dict[str, Any]:
    data.setup("validate")
    val = data.val_dataloader()
    builder = VariantBuilder(model, work_dir / name, calibration=val, calibration_batches=8, threads=threads)
    rows = compare_variants(builder, settings["variants"], val, settings["eval_batches"], (1, 32), seq_len,
                            settings["warmup"], settings["iters"])
    if settings["prune"]:
        pruned = prune_and_fine_tune(model, data, steps=40)
        pruned_builder = VariantBuilder(pruned, work_dir / f"{name}_pruned", threads=threads)
        extra = compare_variants(pruned_builder, ["ort_int8_dynamic"], val, settings["eval_batches"], (1, 32),
                                 seq_len, settings["warmup"], settings["iters"])
        base = rows[0]
        for row in extra:  # re-express against the unpruned fp32 baseline
            row["variant"] = f"pruned50_{row['variant']}"
            row["size_ratio"] = base["bytes"] / row["bytes"]
            for b in (1, 32):
                row[f"latency_ratio_b{b}"] = base[f"latency_ms_b{b}"] / row[f"latency_ms_b{b}"]
            row["accuracy_delta"] = row["accuracy"] - base["accuracy"]
            row["loss_delta"] = row["loss"] - base["loss"]
        rows += extra
    for row in rows:
        row.pop("path", None)
    return {"seq_len": seq_len, "variants": rows}


def check_targets(task: dict[str, Any]) -> dict[str, Any]:
    row = next(r for r in task["variants"] if r["variant"] == TARGET_VARIANT)
    result = {
        "latency_ratio_b1": row["latency_ratio_b1"], "latency_ratio_b32": row["latency_ratio_b32"],
        "size_ratio": row["size_ratio"], "accuracy_drop": -row["accuracy_delta"],
    }
    result["met"] = (min(result["latency_ratio_b1"], result["latency_ratio_b32"]) >= TARGETS["latency_ratio"]
                     and result["size_ratio"] >= TARGETS["size_ratio"]
                     and result["accuracy_drop"] <= TARGETS["accuracy_drop"])
    return result


def print_table(task_name: str, task: dict[str, Any]) -> None:
    print(f"\n{task_name} (seq {task['seq_len']})")
    print(f"{'variant':<28}{'MB':>8}{'size x':>8}{'b1 ms':>9}{'b1 x':>7}{'b32 ms':>9}{'b32 x':>7}{'acc %':>8}"
          f"{'d acc':>7}{'d loss':>8}")
    for r in task["variants"]:
        print(f"{r['variant']:<28}{r['bytes'] / 1e6:8.3f}{r['size_ratio']:8.2f}{r['latency_ms_b1']:9.2f}"
              f"{r['latency_ratio_b1']:7.2f}{r['latency_ms_b32']:9.2f}{r['latency_ratio_b32']:7.2f}"
              f"{r['accuracy']:8.2f}{r['accuracy_delta']:+7.2f}{r['loss_delta']:+8.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models and few steps (< 60 s on 2 cores)")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads for torch (training and timing) and ONNX Runtime; 1 is steadiest on "
                             "a shared machine (2 OpenMP threads on 2 busy cores can run 10-50x slower)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    settings = SETTINGS["quick" if args.quick else "full"]
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    L.seed_everything(args.seed, verbose=False)
    results: dict[str, Any] = {"mode": "quick" if args.quick else "full", "threads": args.threads, "tasks": {}}
    with tempfile.TemporaryDirectory(prefix="nl-bench-") as tmp:
        lm, lm_data = train_lm(settings["lm"])
        results["tasks"]["char_lm"] = measure("char_lm", lm, lm_data, settings["lm"]["seq_len"], settings,
                                              args.threads, Path(tmp))
        clf, clf_data = train_classifier(settings["classifier"])
        results["tasks"]["classifier"] = measure("classifier", clf, clf_data, 16, settings, args.threads, Path(tmp))
    for name, task in results["tasks"].items():
        print_table(name, task)
    results["targets"] = {"thresholds": TARGETS, "variant": TARGET_VARIANT,
                          **{name: check_targets(task) for name, task in results["tasks"].items()}}
    results["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
