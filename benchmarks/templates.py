"""The classifier templates on real data: which defaults fit, against scikit-learn's baselines.

    python benchmarks/templates.py            # full: 3 datasets x 4 variants x 3 seeds, plus the workers timing
    python benchmarks/templates.py --quick    # smoke test: digits only, 2 variants, 1 seed, 2 epochs

As a new user would: scikit-learn's bundled datasets (no download) are written to our formats --
digits as HDF5 sequences (each 8x8 image = 8 rows of 8 pixels, ``configs/classifier_hdf5.yaml``),
wine and breast cancer as Parquet tables (one numeric column per feature,
``configs/classifier_parquet.yaml``) -- with a stratified 75/25 train/test split per seed, the test
rows in their own file. Each variant is the template YAML with a few keys changed, trained with
``nl-lightning fit`` (``build_cli``) through ``FileDataModule`` (the template's ``val_fraction``
held out of the training file for early stopping and checkpoint selection), then tested from the
best checkpoint. The ``template`` variant is the file as shipped; the others change what the table
says. Baselines on the same training rows: logistic regression and an MLP (scikit-learn, features
standardized). Figures: test accuracy (mean and min-max over seeds), epochs run, seconds per fit.

Workers: the same fit of digits (3 epochs, no early stop) with the template's ``num_workers: 0``
and with ``2``, alternating order, median of the repeats: the DataLoader start-up per epoch
against tiny in-memory batches.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import write_result  # noqa: E402

CONFIGS = HERE.parent / "configs"
CKPT, ES = "trainer.callbacks.0.init_args", "trainer.callbacks.1.init_args"  # in both templates
SHORT_PATIENCE = {  # how the templates stopped before: on val/acc after 3 epochs without a new best, at most 10
    "trainer.max_epochs": 10, f"{CKPT}.monitor": "val/acc", f"{CKPT}.mode": "max",
    f"{ES}.monitor": "val/acc", f"{ES}.mode": "max", f"{ES}.patience": 3,
}
#: Template keys each variant changes (on top of the dataset's own shape keys).
VARIANTS: dict[str, dict[str, Any]] = {
    "template": {},
    "previous": {**SHORT_PATIENCE, "model.init_args.config.position": "none"},  # the HDF5 template before
    "short_patience": SHORT_PATIENCE,  # the Parquet template before (it had learned positions)
    "no_positions": {"model.init_args.config.position": "none"},
    "rope": {"model.init_args.config.position": "rope"},
}
QUICK_VARIANTS = ("template", "previous")


def datasets() -> dict[str, dict[str, Any]]:
    from sklearn.datasets import load_breast_cancer, load_digits, load_wine

    return {
        "digits": {"load": load_digits, "format": "hdf5", "template": "classifier_hdf5.yaml"},
        "wine": {"load": load_wine, "format": "parquet", "template": "classifier_parquet.yaml"},
        "breast_cancer": {"load": load_breast_cancer, "format": "parquet", "template": "classifier_parquet.yaml"},
    }


def write_split(folder: Path, fmt: str, x: Any, y: Any) -> str:
    """One split as a user would save it: HDF5 /x (N, 8, 8) and /y, or Parquet f0..fK and label."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "hdf5":
        import h5py

        path = folder / "data.h5"
        with h5py.File(path, "w") as f:
            f["x"], f["y"] = x.reshape(len(x), 8, 8).astype("float32"), y.astype("int64")
        return str(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / "data.parquet"
    columns = {f"f{i}": x[:, i].astype("float32") for i in range(x.shape[1])}
    pq.write_table(pa.table({**columns, "label": y.astype("int64")}), path)
    return str(path)


def shape_keys(fmt: str, n_features: int, n_classes: int) -> dict[str, Any]:
    """What a user changes to point the template at this data (its shape, its classes)."""
    keys: dict[str, Any] = {"model.init_args.num_classes": n_classes}
    if fmt == "hdf5":
        return {**keys, "model.init_args.config.input_dim": 8, "model.init_args.config.max_seq_len": 8}
    return {**keys, "model.init_args.config.max_seq_len": n_features,
            "data.init_args.features": [f"f{i}" for i in range(n_features)]}


def fit_and_test(folder: Path, template: str, keys: dict[str, Any], test: bool = True) -> dict[str, float]:
    """``nl-lightning fit`` of the edited template, then ``test`` of its best checkpoint."""
    import yaml

    from nl_lightning.cli import build_cli
    from nl_lightning.tune.keys import with_keys

    config = with_keys(yaml.safe_load((CONFIGS / template).read_text()), keys)
    path = folder / "fit.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    start = time.perf_counter()
    cli = build_cli(["fit", "--config", str(path)])
    seconds = time.perf_counter() - start
    if not test:
        return {"seconds": seconds}
    result = cli.trainer.test(datamodule=cli.datamodule, ckpt_path="best", verbose=False)[0]
    return {"test_acc": float(result["test/acc"]), "epochs": cli.trainer.current_epoch, "seconds": seconds}


def baselines(x_train: Any, y_train: Any, x_test: Any, y_test: Any, seed: int) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    models = {
        "logreg": LogisticRegression(max_iter=5000),
        "mlp": MLPClassifier(hidden_layer_sizes=(100,), max_iter=2000, random_state=seed),
    }
    return {name: float(make_pipeline(StandardScaler(), model).fit(x_train, y_train).score(x_test, y_test))
            for name, model in models.items()}


def run_dataset(root: Path, name: str, spec: dict[str, Any], seeds: list[int], variants: list[str],
                extra: dict[str, Any]) -> dict[str, Any]:
    from sklearn.model_selection import train_test_split

    data = spec["load"]()
    x, y = data.data, data.target
    per_variant: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    base: dict[str, list[float]] = {"logreg": [], "mlp": []}
    for seed in seeds:
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=seed)
        folder = root / name / f"seed{seed}"
        train, test = write_split(folder / "train", spec["format"], x_tr, y_tr), write_split(folder / "test", spec["format"], x_te, y_te)
        for key, value in baselines(x_tr, y_tr, x_te, y_te, seed).items():
            base[key].append(value)
        order = variants if seed % 2 == 0 else variants[::-1]
        for variant in order:
            keys = {**shape_keys(spec["format"], x.shape[1], len(set(y))), **VARIANTS[variant], **extra,
                    "seed_everything": seed, "data.init_args.seed": seed, "data.init_args.train_path": train,
                    "data.init_args.test_path": test, "trainer.logger.init_args.save_dir": str(folder / variant),
                    "trainer.enable_progress_bar": False, "trainer.enable_model_summary": False}
            run = folder / variant
            run.mkdir(parents=True, exist_ok=True)
            per_variant[variant].append(fit_and_test(run, spec["template"], keys))
            print(f"{name} seed {seed} {variant}: {per_variant[variant][-1]}", flush=True)
    return {"rows": int(len(x)), "features": int(x.shape[1]), "classes": int(len(set(y))), "format": spec["format"],
            "template": spec["template"], "variants": per_variant, "baselines": base}


def time_workers(root: Path, repeats: int, epochs: int) -> dict[str, Any]:
    """Seconds of one digits fit with num_workers 0 and 2 (alternating), early stopping off."""
    from sklearn.datasets import load_digits

    data = load_digits()
    train = write_split(root / "workers", "hdf5", data.data, data.target)
    times: dict[int, list[float]] = {0: [], 2: []}
    for r in range(repeats):
        for workers in ((0, 2) if r % 2 == 0 else (2, 0)):
            keys = {**shape_keys("hdf5", 64, 10), "data.init_args.train_path": train, "data.init_args.num_workers": workers,
                    "trainer.max_epochs": epochs, f"{ES}.patience": 10**6, "trainer.enable_progress_bar": False,
                    "trainer.enable_model_summary": False, "trainer.logger.init_args.save_dir": str(root / f"w{workers}r{r}")}
            folder = root / f"w{workers}r{r}"
            folder.mkdir(parents=True, exist_ok=True)
            times[workers].append(fit_and_test(folder, "classifier_hdf5.yaml", keys, test=False)["seconds"])
    w0, w2 = statistics.median(times[0]), statistics.median(times[2])
    return {"epochs": epochs, "repeats": repeats, "num_workers_0_s": w0, "num_workers_2_s": w2, "ratio_2_over_0": w2 / w0,
            "runs": {str(k): v for k, v in times.items()}}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="digits only, 2 variants, 1 seed, 2 epochs")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (splits and training) per dataset")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--worker-repeats", type=int, default=None)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    variants = list(QUICK_VARIANTS if args.quick else VARIANTS)
    extra: dict[str, Any] = {"trainer.max_epochs": 2} if args.quick else {}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="nl-bench-templates-") as tmp:
        root = Path(tmp)
        cwd = os.getcwd()
        os.chdir(root)  # the templates' relative folders (runs/) land here
        try:
            for name, spec in datasets().items():
                if args.quick and name != "digits":
                    continue
                results[name] = run_dataset(root, name, spec, seeds, variants, extra)
            workers = time_workers(root, args.worker_repeats or (1 if args.quick else 3), 2 if args.quick else 3)
        finally:
            os.chdir(cwd)
    figures = {"seeds": seeds, "variants": {v: VARIANTS[v] for v in variants}, "datasets": results, "workers": workers}
    write_result("templates", figures, args, quick=args.quick)


def _acc(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def render(figures: dict) -> str:
    """docs/templates.md section: test accuracy per dataset and variant, the baselines, the workers timing."""
    variants = list(figures["variants"])
    lines = [
        f"Test accuracy, mean (min-max) over {len(figures['seeds'])} seeds (a stratified 75/25 split and a training "
        "seed each); epochs run and seconds per fit are means:",
        "",
        "| dataset | " + " | ".join(f"`{v}`" for v in variants) + " | logistic regression | MLP |",
        "|---|" + "---|" * (len(variants) + 2),
    ]
    for name, d in figures["datasets"].items():
        cells = [f"{_acc([r['test_acc'] for r in d['variants'][v]])}<br>{statistics.mean(r['epochs'] for r in d['variants'][v]):.0f} ep, "
                 f"{statistics.mean(r['seconds'] for r in d['variants'][v]):.0f} s" for v in variants]
        label = f"{name} ({d['rows']} rows, {d['features']} features, {d['classes']} classes; {d['format']})"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_acc(d['baselines']['logreg'])} | {_acc(d['baselines']['mlp'])} |")
    lines += ["", "Variants (keys changed from the shipped template):", ""]
    for v in variants:
        keys = figures["variants"][v]
        lines.append(f"- `{v}`: " + (", ".join(f"`{k}: {val}`" for k, val in keys.items()) if keys else "the template as shipped"))
    w = figures["workers"]
    lines += ["", f"DataLoader workers, digits, {w['epochs']} epochs (median of {w['repeats']}, alternating): "
              f"`num_workers: 0` {w['num_workers_0_s']:.1f} s, `num_workers: 2` {w['num_workers_2_s']:.1f} s "
              f"(**{w['ratio_2_over_0']:.1f}x** the time)."]
    return "\n".join(lines) + "\n"


def headline(figures: dict) -> tuple[str, str]:
    """README's table of headline figures: (what was measured, the figure)."""
    cells = []
    for name, d in figures["datasets"].items():
        ours = statistics.mean(r["test_acc"] for r in d["variants"]["template"])
        cells.append(f"{name} {ours:.3f} (logistic regression {statistics.mean(d['baselines']['logreg']):.3f})")
    return ("Classifier templates on real data, test accuracy (mean over seeds)", "; ".join(cells))


if __name__ == "__main__":
    main()
