"""``nl-lightning export``: a checkpoint from ``fit`` -> ONNX / ORT-optimized / INT8 / .pt2 / TorchScript.

    nl-lightning export --config configs/export.yaml --ckpt_path runs/classifier/checkpoints/last.ckpt

Every artifact is checked against the eager model at several batch and sequence sizes, and a
``manifest.json`` records files, sizes, measured errors, opset and the input spec. Static INT8 is
calibrated on ``--data`` or, by default, on the DataModule recorded in the checkpoint.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import lightning as L
from jsonargparse import ActionConfigFile, ArgumentParser

from nl_lightning.export.bundle import ExportConfig, export_formats
from nl_lightning.models.checkpoint import load_checkpoint, read_checkpoint
from nl_lightning.models.runs import find_checkpoint


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="nl-lightning export", description=__doc__)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--ckpt_path", type=str, required=True, help="A .ckpt written by `nl-lightning fit`.")
    parser.add_argument("--out_dir", type=Optional[str], default=None,
                        help="Output folder (default: <checkpoint folder>/../export).")
    parser.add_argument("--data", type=Optional[L.LightningDataModule], default=None,
                        help="Calibration data for static INT8 (default: the checkpoint's own DataModule).")
    parser.add_class_arguments(ExportConfig, None)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.instantiate_classes(parser.parse_args(argv))
    config = ExportConfig(**{f.name: args[f.name] for f in fields(ExportConfig)})
    args.ckpt_path = str(find_checkpoint(args.ckpt_path))
    model = load_checkpoint(args.ckpt_path)
    out_dir = Path(args.out_dir) if args.out_dir else default_out_dir(args.ckpt_path)
    calibration = None
    if "onnx_int8_static" in config.formats:
        calibration = val_dataloader(args.data or datamodule_from_checkpoint(args.ckpt_path))
    manifest = export_formats(model, out_dir, config, calibration=calibration, source=str(args.ckpt_path))
    for entry in manifest["artifacts"]:
        print(f"{entry['format']:<18} {entry['bytes'] / 1e6:9.3f} MB  max |diff| {entry['max_abs_err']:.2e}  "
              f"{out_dir / entry['files'][0]['path']}")
    print(f"manifest: {out_dir / 'manifest.json'}")
    return 0


def default_out_dir(ckpt_path: str | Path) -> Path:
    """``runs/x/checkpoints/last.ckpt`` -> ``runs/x/export``."""
    parent = Path(ckpt_path).resolve().parent
    return (parent.parent if parent.name == "checkpoints" else parent) / "export"


def datamodule_from_checkpoint(ckpt_path: str | Path) -> L.LightningDataModule | None:
    """Rebuild the DataModule recorded by ``fit`` (only classes inside nl_lightning are trusted)."""
    hparams = dict(read_checkpoint(ckpt_path).get("datamodule_hyper_parameters") or {})
    class_path = hparams.pop("_class_path", None)
    hparams.pop("_instantiator", None)
    if not class_path or not str(class_path).startswith("nl_lightning."):
        if class_path:
            print(f"Not rebuilding the checkpoint's DataModule {class_path!r} (outside nl_lightning); "
                  "pass --data to calibrate on real data.", file=sys.stderr)
        return None
    module_name, _, name = str(class_path).rpartition(".")
    return getattr(importlib.import_module(module_name), name)(**hparams)


def val_dataloader(datamodule: L.LightningDataModule | None) -> Any | None:
    if datamodule is None:
        return None
    datamodule.setup("validate")
    return datamodule.val_dataloader()
