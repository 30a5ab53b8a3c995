"""Distillation benchmark: a student 4-10x smaller than its teacher, distilled against trained alone.

    python benchmarks/distill.py            # full: digits classifier (5 folds) and char LM (~20 min on 2 cores)
    python benchmarks/distill.py --quick    # smoke test (< 2 min): few steps, figures mean nothing

Classifier: scikit-learn's handwritten digits (1,797 8x8 images that ship inside scikit-learn; each
image row is a token of 8 pixels), in 5 folds: each fold's teacher trains on the other four, then
one student architecture trains twice from the same initial weights, on the same batches, for the
same steps: alone (cross-entropy on the labels) and distilled (``DistillationModule``: the labels
plus the teacher's softened distribution). Accuracy is counted over all 1,797 held-out predictions.
Char LM: Python's own help text (``CharTextDataModule``), a teacher, then the student alone and
distilled the same way; validation loss and perplexity.
Targets: student >= 4x smaller; classifier: distilled accuracy within 1.0 point of the teacher and
above the student trained alone. Figures go to ``benchmarks/results/distill.json``.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import warnings
from typing import Any

import lightning as L
import torch
from _results import write_result
from torch.utils.data import DataLoader, TensorDataset

from nl_lightning.data import CharTextDataModule
from nl_lightning.export.evaluate import evaluate
from nl_lightning.models import TransformerClassifier, TransformerLM
from nl_lightning.models.distill import DistillationModule

TARGETS = {"min_size_ratio": 4.0, "max_size_ratio": 10.0, "max_gap_to_teacher": 1.0}
DIGITS = dict(input_dim=8, max_seq_len=8, position="learned", causal=False)
TEACHER = {**DIGITS, "n_layers": 2, "d_model": 64, "n_heads": 4, "dropout": 0.1}
STUDENT = {**DIGITS, "n_layers": 1, "d_model": 32, "n_heads": 4}  # 7.5x fewer parameters
SETTINGS: dict[str, dict[str, Any]] = {
    "quick": {
        "classifier": dict(teacher=TEACHER, student=STUDENT, folds=2, teacher_epochs=2, student_epochs=2,
                           batch_size=64, lr=2e-3),
        "char_lm": dict(teacher=dict(n_layers=2, d_model=64, n_heads=4, max_seq_len=32),
                        student=dict(n_layers=1, d_model=32, n_heads=4, max_seq_len=32),
                        seq_len=32, batch_size=16, teacher_steps=20, student_steps=20, lr=2e-3, eval_batches=4),
    },
    "full": {
        "classifier": dict(teacher=TEACHER, student=STUDENT, folds=5, teacher_epochs=60, student_epochs=30,
                           batch_size=64, lr=2e-3),
        "char_lm": dict(teacher=dict(n_layers=4, d_model=128, n_heads=4, max_seq_len=64),
                        student=dict(n_layers=2, d_model=64, n_heads=4, max_seq_len=64),
                        seq_len=64, batch_size=32, teacher_steps=800, student_steps=800, lr=2e-3, eval_batches=40),
    },
}


def _fit(module: L.LightningModule, data: Any, epochs: int | None = None, steps: int = -1) -> L.LightningModule:
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, max_steps=steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, gradient_clip_val=1.0)
    trainer.fit(module, data)
    return module


def params(module: L.LightningModule) -> int:
    return sum(p.numel() for p in module.model.parameters())


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """(1797, 8, 8) pixels in [0, 1] and labels 0-9, from the copy inside scikit-learn (no download)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.data, dtype=torch.float32).view(-1, 8, 8) / 16.0, torch.tensor(d.target)


class Fold(L.LightningDataModule):
    """Training batches of one fold (shuffled by the global seed, so two arms seeded alike see the same ones)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size, shuffle=True)


def classifier_task(spec: dict[str, Any], seed: int) -> dict[str, Any]:
    x, y = digits()
    folds = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).chunk(spec["folds"])
    correct = {"teacher": 0, "alone": 0, "distilled": 0}
    sizes: dict[str, int] = {}
    for k, test in enumerate(folds):
        train = torch.cat([f for j, f in enumerate(folds) if j != k])
        data = Fold(x[train], y[train], spec["batch_size"])
        arms = _classifier_arms(spec, data, seed + k)
        for name, module in arms.items():
            model = module.model.eval()
            correct[name] += round(evaluate(lambda z: model(z), [(x[test], y[test])])["accuracy"] * len(test) / 100)
            sizes[name] = params(module)
    accuracy = {name: 100.0 * c / len(x) for name, c in correct.items()}
    kept = ("alpha", "temperature", "folds", "teacher", "student", "teacher_epochs", "student_epochs")
    return {"params": sizes, "size_ratio": sizes["teacher"] / sizes["alone"], "accuracy": accuracy,
            "predictions": len(x), **{k: spec[k] for k in kept}}


def _classifier_arms(spec: dict[str, Any], data: Fold, seed: int) -> dict[str, Any]:
    L.seed_everything(seed, verbose=False)
    teacher = _fit(TransformerClassifier(spec["teacher"], num_classes=10, optimizer=dict(lr=spec["lr"])), data,
                   epochs=spec["teacher_epochs"])
    return {"teacher": teacher, **_students(
        lambda: TransformerClassifier(spec["student"], num_classes=10, optimizer=dict(lr=spec["lr"])), teacher,
        data, spec, seed, epochs=spec["student_epochs"])}


def _students(make: Any, teacher: L.LightningModule, data: Any, spec: dict[str, Any], seed: int,
              **budget: Any) -> dict[str, L.LightningModule]:
    """The same student (same initial weights, same batches, same steps) alone and distilled."""
    L.seed_everything(seed + 1000, verbose=False)
    alone = make()
    distilled = make()
    distilled.model.load_state_dict(alone.model.state_dict())
    L.seed_everything(seed + 2000, verbose=False)
    _fit(alone, data, **budget)
    L.seed_everything(seed + 2000, verbose=False)
    kd = DistillationModule(distilled, teacher=teacher.model, alpha=spec.get("alpha"),
                            temperature=spec.get("temperature"))
    spec["alpha"], spec["temperature"] = kd.alpha, kd.temperature  # None: the task's defaults, recorded
    _fit(kd, data, **budget)
    return {"alone": alone, "distilled": distilled}


def lm_task(spec: dict[str, Any], seed: int) -> dict[str, Any]:
    data = CharTextDataModule(seq_len=spec["seq_len"], batch_size=spec["batch_size"], seed=seed)
    L.seed_everything(seed, verbose=False)
    teacher = _fit(TransformerLM(spec["teacher"], optimizer=dict(lr=spec["lr"])), data, steps=spec["teacher_steps"])
    arms = {"teacher": teacher, **_students(lambda: TransformerLM(spec["student"], optimizer=dict(lr=spec["lr"])),
                                            teacher, data, spec, seed, steps=spec["student_steps"])}
    data.setup("validate")
    val = list(data.val_dataloader())[: spec["eval_batches"]]
    loss = {}
    for name, module in arms.items():
        model = module.model.eval()
        loss[name] = evaluate(lambda z: model(z), val)["loss"]
    sizes = {name: params(module) for name, module in arms.items()}
    kept = ("alpha", "temperature", "teacher", "student", "teacher_steps", "student_steps")
    return {"params": sizes, "size_ratio": sizes["teacher"] / sizes["alone"], "loss": loss,
            "perplexity": {name: math.exp(v) for name, v in loss.items()}, **{k: spec[k] for k in kept}}


def check_targets(classifier: dict[str, Any] | None, lm: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if classifier is not None:
        acc = classifier["accuracy"]
        out["classifier"] = {"size_ratio": classifier["size_ratio"],
                             "gap_to_teacher": acc["teacher"] - acc["distilled"],
                             "gain_over_alone": acc["distilled"] - acc["alone"]}
        out["classifier"]["met"] = (TARGETS["min_size_ratio"] <= classifier["size_ratio"] <= TARGETS["max_size_ratio"]
                                    and out["classifier"]["gap_to_teacher"] <= TARGETS["max_gap_to_teacher"]
                                    and out["classifier"]["gain_over_alone"] > 0)
    if lm is not None:
        ppl = lm["perplexity"]
        out["char_lm"] = {"size_ratio": lm["size_ratio"], "perplexity_ratio_alone_over_distilled":
                          ppl["alone"] / ppl["distilled"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps: checks the script runs")
    parser.add_argument("--tasks", nargs="+", default=["classifier", "char_lm"], choices=["classifier", "char_lm"])
    parser.add_argument("--alpha", type=float, default=None,
                        help="weight of the teacher term (default: DistillationModule's default for the task)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="softmax temperature (default: DistillationModule's default for the task)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = SETTINGS["quick" if args.quick else "full"]
    overrides = {k: v for k, v in (("alpha", args.alpha), ("temperature", args.temperature)) if v is not None}
    start = time.perf_counter()
    results: dict[str, Any] = {"mode": "quick" if args.quick else "full"}
    if "classifier" in args.tasks:
        results["classifier"] = classifier_task({**settings["classifier"], **overrides}, args.seed)
        print("classifier", results["classifier"]["accuracy"], f"{results['classifier']['size_ratio']:.2f}x smaller")
    if "char_lm" in args.tasks:
        results["char_lm"] = lm_task({**settings["char_lm"], **overrides}, args.seed)
        print("char_lm", results["char_lm"]["perplexity"], f"{results['char_lm']['size_ratio']:.2f}x smaller")
    results["targets"] = {"thresholds": TARGETS, **check_targets(results.get("classifier"), results.get("char_lm"))}
    results["seconds"] = round(time.perf_counter() - start, 1)
    write_result("distill", results, args, quick=args.quick)


def render(figures: dict[str, Any]) -> str:
    """README section: teacher, student alone and student distilled, side by side."""
    lines = ["The student alone and distilled start from the same weights and see the same batches for the same "
             "steps; alpha is the weight of the teacher term, T the softmax temperature."]
    c = figures.get("classifier")
    if c:
        a, t = c["accuracy"], figures["targets"]["classifier"]
        lines += ["", f"**digits classifier** ({c['predictions']} held-out predictions over {c['folds']} folds; "
                      f"student {c['size_ratio']:.1f}x smaller; alpha {c['alpha']}, T {c['temperature']}):", "",
                  "| model | parameters | accuracy |", "|---|---|---|",
                  f"| teacher | {c['params']['teacher']:,} | {a['teacher']:.2f}% |",
                  f"| student alone | {c['params']['alone']:,} | {a['alone']:.2f}% |",
                  f"| student distilled | {c['params']['distilled']:,} | {a['distilled']:.2f}% |", "",
                  f"Target (>= 4x smaller, within 1.0 point of the teacher, above the student alone): "
                  f"{'met' if t['met'] else '**not met**'} (distilled - teacher {-t['gap_to_teacher']:+.2f} pt, "
                  f"distilled - alone {t['gain_over_alone']:+.2f} pt)."]
    lm = figures.get("char_lm")
    if lm:
        p = lm["perplexity"]
        lines += ["", f"**char LM** (validation perplexity; student {lm['size_ratio']:.1f}x smaller; alpha "
                      f"{lm['alpha']}, T {lm['temperature']}): teacher "
                      f"{p['teacher']:.3f}, student alone {p['alone']:.3f}, student distilled {p['distilled']:.3f}."]
    return "\n".join(lines)



def headline(figures: dict[str, Any]) -> tuple[str, str]:
    """README's table of headline figures: (what was measured, the figure)."""
    c = figures.get("classifier")
    if not c:
        return ("distillation into a smaller student", "see its page")
    a, t = c["accuracy"], figures["targets"]["classifier"]
    return (f"digits classifier distilled into a {c['size_ratio']:.1f}x smaller student, accuracy",
            f"teacher {a['teacher']:.2f}%, alone {a['alone']:.2f}%, distilled {a['distilled']:.2f}% "
            f"({'met' if t['met'] else '**not met**'})")


if __name__ == "__main__":
    main()
