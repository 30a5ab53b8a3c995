"""Draw the docs gallery: every picture nl_lightning makes, from small real runs, at build time.

    python docs/_scripts/gallery.py OUT_DIR

Each ``draw_*`` function runs the commands a user would (``nl-lightning fit / plot / lr-find /
profile / tune`` with the shipped configs, shrunk to a few steps) in a scratch folder and copies the
PNG the project wrote into ``OUT_DIR`` under a fixed name. Nothing here draws by itself: the
pictures are the project's own output, so the gallery shows what a user gets today. The docs build
(``docs/_ext/nl_gallery.py``) runs this script and the gallery page (``docs/gallery.md``) shows each
file beside the function that made it. About a minute on two cores.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
#: The classifier config, shrunk: 2 epochs of 8 batches, 1 layer of width 32.
SMALL_CLASSIFIER = [
    "--trainer.max_epochs=3", "--trainer.limit_train_batches=8", "--trainer.limit_val_batches=4",
    "--trainer.log_every_n_steps=2", "--model.init_args.config.n_layers=1", "--model.init_args.config.d_model=32",
    "--data.init_args.num_samples=1024",
]


def cli(*args: str) -> None:
    """``nl-lightning ARGS`` in this process; a non-zero exit fails the gallery (and so the docs build)."""
    from nl_lightning.cli import main

    code = main(list(args))
    if code:
        raise SystemExit(f"nl-lightning {' '.join(args)} exited with {code}")


def draw_curves(out: Path) -> Path:
    """Training curves: ``CurvesCallback`` writes ``curves.png`` into every run folder at fit end."""
    cli("fit", "--config", str(CONFIGS / "char_lm.yaml"), "--config", str(CONFIGS / "track/csv.yaml"),
        "--trainer.max_steps=120", "--trainer.val_check_interval=30", "--trainer.limit_val_batches=4",
        "--trainer.log_every_n_steps=5", "--model.init_args.config.n_layers=2", "--model.init_args.config.d_model=64",
        *QUIET)
    return _copy(Path("runs/char_lm/version_0/curves.png"), out / "curves.png")


def draw_confusion_matrix(out: Path) -> Path:
    """``ConfusionMatrixMonitor``: torchmetrics' own plot of the matrix; with a CSV logger it is a PNG in
    the run folder, one per validation."""
    cli("fit", "--config", str(CONFIGS / "classifier.yaml"), "--config", str(CONFIGS / "track/csv.yaml"),
        "--config", str(CONFIGS / "track/confusion_matrix.yaml"), *SMALL_CLASSIFIER, *QUIET)
    run = Path("runs/classifier/version_0")
    return _copy(sorted(run.glob("val_confusion_matrix_step_*.png"))[-1], out / "confusion_matrix.png")


def draw_compare(out: Path) -> Path:
    """``nl-lightning plot RUN RUN``: two runs of the classifier (two learning rates) overlaid."""
    cli("fit", "--config", str(CONFIGS / "classifier.yaml"), "--config", str(CONFIGS / "track/csv.yaml"),
        *SMALL_CLASSIFIER, "--model.init_args.optimizer.lr=0.0003", *QUIET)
    cli("plot", "runs/classifier/version_0", "runs/classifier/version_1", "--out", str(out / "compare.png"))
    return out / "compare.png"


def draw_lr_find(out: Path) -> Path:
    """``nl-lightning lr-find``: Lightning's range test on a fit config; the curve with the suggestion."""
    cli("lr-find", "--config", str(CONFIGS / "classifier.yaml"), *SMALL_CLASSIFIER,
        "--trainer.max_epochs=10", "--num_training", "40", "--output_dir", "runs/lr_find", *QUIET[:1])
    return _copy(Path("runs/lr_find/lr_find.png"), out / "lr_find.png")


def draw_latency(out: Path) -> Path:
    """``nl-lightning profile``: p50 latency (whiskers: p95) of a checkpoint's variants, per batch size."""
    cli("profile", "--config", str(CONFIGS / "profile.yaml"), "--ckpt_path", "runs/classifier/version_0",
        "--iters", "5", "--rounds", "2", "--warmup", "2", "--json_path", "runs/profile.json",
        "--chart_path", str(out / "latency.png"))
    return out / "latency.png"


def draw_study(out: Path) -> list[Path]:
    """``nl-lightning tune`` on the classifier: Optuna's own optimization history, parameter
    importances and intermediate values (pruning), written into the study's ``plots/``."""
    config = _tune_config("classifier.yaml", n_trials=8)
    cli("tune", "--config", str(config))
    plots = Path("runs/tune/gallery_classifier/plots")
    return [_copy(plots / f"{name}.png", out / f"tune_{name}.png")
            for name in ("optimization_history", "param_importances", "intermediate_values")]


def draw_pareto(out: Path) -> Path:
    """``nl-lightning tune`` with two objectives (accuracy against parameter count): the Pareto front."""
    config = _tune_config("nas.yaml", n_trials=8)
    cli("tune", "--config", str(config))
    return _copy(Path("runs/tune/gallery_nas/plots/pareto_front.png"), out / "tune_pareto_front.png")


def _tune_config(name: str, n_trials: int) -> Path:
    """A shipped tune config with trials shrunk to seconds, run inline (in this process)."""
    config = yaml.safe_load((CONFIGS / "tune" / name).read_text())
    config.update(fit_config=str(CONFIGS / "classifier.yaml"), study_name=f"gallery_{Path(name).stem}",
                  n_trials=n_trials, launcher="inline")
    config["overrides"] = {**config.get("overrides", {}), "trainer.max_epochs": 3, "trainer.limit_train_batches": 6,
                           "trainer.limit_val_batches": 3, "data.init_args.num_samples": 768,
                           "trainer.enable_model_summary": False}
    if "sampler" in config and config["sampler"].get("name") == "tpe":
        config["sampler"]["n_startup_trials"] = 3
    if isinstance(config.get("pruner"), dict):
        config["pruner"]["n_startup_trials"] = 2
    path = Path(f"tune_{name}")
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _copy(source: Path, target: Path) -> Path:
    if not source.is_file():
        raise SystemExit(f"gallery: {source} was not written (looked in {Path.cwd()})")
    shutil.copyfile(source, target)
    return target


DRAWINGS = [draw_curves, draw_confusion_matrix, draw_compare, draw_lr_find, draw_latency, draw_study, draw_pareto]


def main(out_dir: str) -> int:
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore")
    import logging

    import torch

    torch.set_num_threads(1)
    for name in ("lightning.pytorch", "lightning.fabric", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="nl-gallery-") as scratch:
        os.chdir(scratch)
        for draw in DRAWINGS:
            start = time.perf_counter()
            draw(out)
            print(f"gallery: {draw.__name__} {time.perf_counter() - start:.1f} s", file=sys.stderr)
        os.chdir(REPO)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
