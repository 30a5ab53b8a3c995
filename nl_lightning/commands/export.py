"""``nl-lightning export``: a checkpoint from ``fit`` -> ONNX / ORT-optimized / INT8 / .pt2 / TorchScript.

    nl-lightning export --config configs/export.yaml --ckpt_path runs/classifier

Every fp32 artifact is checked against the eager model at several batch and sequence sizes, INT8
ones by their top-1 agreement with it on validation batches; ``manifest.json`` records files,
sizes, SHA-256s, measured errors, the checkpoint's SHA-256, opset and the input spec. Static INT8
is calibrated, and INT8 checked, on ``--data`` or, by default, on the validation split of the
DataModule recorded in the checkpoint (only DataModules on nl_lightning's allow-list, or listed in
``--trust``, are rebuilt from a checkpoint); the manifest's ``data`` entry names it. Without data,
static INT8 is an error unless ``--random_calibration=true``.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, Sequence

import lightning as L
from jsonargparse import ActionConfigFile, ArgumentParser

from nl_lightning.data.datamodule import describe_data
from nl_lightning.errors import ConfigError
from nl_lightning.export.bundle import QUANTIZED_FORMATS, ExportConfig, export_formats
from nl_lightning._io import path_sha256
from nl_lightning.models.checkpoint import load_checkpoint, read_checkpoint
from nl_lightning.models.runs import find_checkpoint
from nl_lightning.models.trust import UntrustedClassError, bind_arguments, resolve_class
from nl_lightning.commands.help import CommandHelpFormatter


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="nl-lightning export", description=__doc__, formatter_class=CommandHelpFormatter)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--ckpt_path", type=str, required=True,
                        help="A .ckpt written by `nl-lightning fit`, or its run folder (newest last.ckpt).")
    parser.add_argument("--out_dir", type=Optional[str], default=None,
                        help="Output folder, replaced as a whole (default: export/ beside checkpoints/).")
    parser.add_argument("--data", type=Optional[L.LightningDataModule], default=None,
                        help="Data to calibrate and check INT8 on (default: the checkpoint's own DataModule).")
    parser.add_argument("--trust", type=Optional[list[str]], default=None,
                        help="Your own classes the checkpoint may name (its model, its DataModule), e.g. "
                             "[mypkg.models.MyModel]: importable (installed or on PYTHONPATH). Only these are imported.")
    parser.add_class_arguments(ExportConfig, None)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.instantiate_classes(parser.parse_args(argv))
    config = ExportConfig(**{f.name: args[f.name] for f in fields(ExportConfig)})
    args.ckpt_path = str(find_checkpoint(args.ckpt_path))
    trust = tuple(args.trust or ())
    model = load_checkpoint(args.ckpt_path, merge_lora=True, trust=trust)  # LoRA folded in: an ordinary graph
    out_dir = Path(args.out_dir) if args.out_dir else default_out_dir(args.ckpt_path)
    calibration, data = None, None
    if any(f in QUANTIZED_FORMATS for f in config.formats):
        datamodule = args.data or datamodule_from_checkpoint(args.ckpt_path, trust)
        if datamodule is None and "onnx_int8_static" in config.formats and not config.random_calibration:
            raise ConfigError(
                f"{args.ckpt_path} records no DataModule to calibrate static INT8 on (its DataModule did not save its "
                "settings). Pass the data: --data.class_path=nl_lightning.data.FileDataModule "
                "--data.init_args.train_path=... (the validation split is used), or --random_calibration=true to "
                "calibrate on random inputs (activation ranges will not match real data)."
            )
        calibration = val_dataloader(datamodule, model)
        data = describe_data(datamodule, "val") if datamodule is not None else "random"
    manifest = export_formats(model, out_dir, config, calibration=calibration, source=str(args.ckpt_path),
                              source_sha256=path_sha256(args.ckpt_path), about={"data": data})
    for entry in manifest["artifacts"]:
        check = entry.get("agreement") or {}
        quality = (f"top-1 agreement {check['top1_agreement']:6.2f}%" if check.get("top1_agreement") is not None
                   else f"max |diff| {entry['max_abs_err']:.2e}")
        print(f"{entry['format']:<18} {entry['bytes'] / 1e6:9.3f} MB  {quality}  {out_dir / entry['files'][0]['path']}")
    print(f"manifest: {out_dir / 'manifest.json'}")
    return 0


def default_out_dir(ckpt_path: str | Path) -> Path:
    """``runs/x/checkpoints/last.ckpt`` -> ``runs/x/export``."""
    parent = Path(ckpt_path).resolve().parent
    return (parent.parent if parent.name == "checkpoints" else parent) / "export"


def datamodule_from_checkpoint(ckpt_path: str | Path, trust: Sequence[str] = ()) -> L.LightningDataModule | None:
    """Rebuild the DataModule recorded by ``fit``: only a class on nl_lightning's allow-list
    (``models.trust``) or in ``trust``, called with arguments its own signature accepts; anything
    else is refused before it is imported. None when the checkpoint records no DataModule."""
    hparams = dict(read_checkpoint(ckpt_path).get("datamodule_hyper_parameters") or {})
    class_path = hparams.pop("_class_path", None)
    hparams.pop("_instantiator", None)
    if class_path is None:
        return None
    try:
        cls = resolve_class(class_path, L.LightningDataModule, "DataModule", source=ckpt_path, trust=trust)
        arguments = bind_arguments(cls, hparams, source=ckpt_path)
    except UntrustedClassError as err:
        raise UntrustedClassError(f"{err} To export anyway, pass the data yourself: --data.class_path=... "
                                  "(or export formats without INT8).") from None
    return cls(**arguments)


def val_dataloader(datamodule: L.LightningDataModule | None, model: L.LightningModule) -> Any | None:
    """The validation batches (raw features: the DataModule normalizes on the device, in a hook that
    only a Trainer runs; nl_lightning models hold the statistics and take raw features)."""
    if datamodule is None:
        return None
    norm = getattr(getattr(model, "model", None), "input_norm", None)
    if getattr(datamodule, "normalize", False) and getattr(norm, "fitted", False):
        datamodule.model_normalizes = True  # as in fit: no pass over the training split for statistics
    datamodule.setup("validate")
    return datamodule.val_dataloader()
