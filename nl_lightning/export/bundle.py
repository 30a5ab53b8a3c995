"""``export_formats``: write a model in several formats, check each against eager, write the manifest.

The one entry point behind ``ExportCallback`` and ``nl-lightning export``. ONNX-derived formats
(optimized, INT8 dynamic / static) are built from ``model.onnx``, which is therefore always written
when any of them is asked for: from its graph fused for ONNX Runtime (``export/fusion.py``;
``fuse=False`` to skip), INT8 with the recipe of the exporting CPU's instruction sets
(``ort.int8_recipe``); the manifest records the fusions, the recipe and the instruction sets. The whole export is built in a hidden folder beside ``out_dir``
and replaces it in one step, so ``out_dir`` always holds one complete export (see ``atomic``).
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from nl_lightning._io import staged_dir
from nl_lightning.errors import ConfigError, DataError
from nl_lightning.export.fusion import fuse_onnx
from nl_lightning.export.inputs import batch_input
from nl_lightning.export.signature import ModelSignature, signature_of
from nl_lightning.export.prepare import prepare_int8
from nl_lightning.export.smooth import DEFAULT_ALPHA
from nl_lightning.export.manifest import (
    MANIFEST_NAME, artifact_entry, build_manifest, file_entries, listed_files, write_manifest,
)
from nl_lightning.export.onnx import DEFAULT_OPSET, export_onnx, inference_copy, onnx_files
from nl_lightning.export.ort import Int8Recipe, OptimizationLevel, int8_recipe
from nl_lightning.export.parity import (
    AgreementTolerance, ParityError, Tolerance, check_agreement, check_parity, parity_inputs,
)

ExportFormat = Literal[
    "onnx", "onnx_optimized", "onnx_int8_dynamic", "onnx_int8_static", "pt2", "torchscript", "tensorrt",
]
FILENAMES: dict[str, str] = {
    "onnx": "model.onnx",
    "onnx_optimized": "model.optimized.onnx",
    "onnx_int8_dynamic": "model.int8_dynamic.onnx",
    "onnx_int8_static": "model.int8_static.onnx",
    "pt2": "model.pt2",
    "torchscript": "model.torchscript.pt",
    "tensorrt": "model.trt.ep",
}
QUANTIZED_FORMATS = ("onnx_int8_dynamic", "onnx_int8_static")
DERIVED_FORMATS = ("onnx_optimized", *QUANTIZED_FORMATS)
FUSED_NAME = "model.fused.onnx"
PREPARED_NAMES = ("model.int8_prepared.onnx", "model.int8_prepared.fused.onnx")
"""Intermediates: the graph the INT8 formats quantize as the recipe prepares it (``export/prepare.py``), plain
and fused."""


@dataclass
class ExportConfig:
    """What to write and how strictly to check it."""

    formats: list[ExportFormat] = field(default_factory=lambda: ["onnx", "onnx_optimized", "onnx_int8_dynamic"])
    opset: int = DEFAULT_OPSET
    external_data: bool | None = None
    """Weights in a separate ``.data`` file: True, False, or None (only beyond 2 GB)."""
    optimization_level: OptimizationLevel = "extended"
    parity_batch_sizes: list[int] = field(default_factory=lambda: [1, 4])
    parity_seq_lens: list[int] | None = None
    """Sequence lengths to check; None = [L // 2, L] with L = min(32, max_seq_len)."""
    atol: float = 1e-4
    rtol: float = 1e-3
    min_agreement: float = 95.0
    """INT8 formats: percent of top-1 predictions on real batches that must equal eager's."""
    max_relative_error: float = 0.2
    """INT8 formats: bound on RMS(int8 - eager) / RMS(eager logits - their mean) on those batches."""
    check_batches: int = 8
    """Batches of the validation / calibration data the INT8 check runs on."""
    calibration_batches: int = 8
    fuse: bool = True
    """Build onnx_optimized and the INT8 formats from the graph fused for ONNX Runtime (attention,
    norms, rotary in ORT's fused kernels); ``model.onnx`` itself stays plain ONNX."""
    per_channel: bool = True
    """Per-channel weight scales for INT8 (dynamic and static)."""
    reduce_range: bool | None = None
    """7-bit INT8 weights; None = from the exporting CPU: True without VNNI / AMX (``ort.int8_recipe``)."""
    smooth_alpha: float | None = DEFAULT_ALPHA
    """SmoothQuant strength for gated MLPs' down projections before INT8 (``export/smooth.py``), applied when
    calibration data is given; None = off."""
    token_scale: bool = True
    """Scale gated MLPs' down-projection input per token before INT8 (``export/token_scale.py``): closer to
    fp32's predictions (98.5 -> 99.1% top-1 agreement on the llama preset) for 4-16% more INT8 time; false
    trades that agreement for the time."""
    random_calibration: bool = False
    """Calibrate static INT8 on random inputs when no data is given. Off: that is an error, since
    ranges measured on noise do not match real data (pass the data, e.g. ``--data``)."""
    strict: bool = True
    """Raise ``ParityError`` when a format fails its check (the export and manifest are written first)."""

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FILENAMES]
        if unknown or not self.formats:
            raise ConfigError(f"ExportConfig.formats={self.formats!r}: choose one or more of {tuple(FILENAMES)}.")
        if self.opset < 18:
            raise ConfigError(f"ExportConfig.opset={self.opset} is too old for the dynamo exporter; use 18 or newer.")
        for name in ("parity_batch_sizes", "parity_seq_lens"):
            values = getattr(self, name)
            if values is not None and (not values or any(v < 1 for v in values)):
                raise ConfigError(f"ExportConfig.{name}={values!r} must be a non-empty list of positive sizes.")
        Tolerance(self.atol, self.rtol)
        self.quantized_tolerance()
        self.int8_recipe()  # a bad smooth_alpha / token_scale fails here, not at the first INT8 format
        for name in ("calibration_batches", "check_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ExportConfig.{name}={getattr(self, name)} must be >= 1.")

    def tolerance(self, fmt: str) -> Tolerance | None:
        """The elementwise tolerance on the shape grid; None for INT8 (judged by ``quantized_tolerance``)."""
        return None if fmt in QUANTIZED_FORMATS else Tolerance(self.atol, self.rtol)

    def quantized_tolerance(self) -> AgreementTolerance:
        return AgreementTolerance(self.min_agreement, self.max_relative_error)

    def int8_recipe(self) -> Int8Recipe:
        """The INT8 settings: this config's per_channel / reduce_range over the CPU's recipe."""
        reduce_range = int8_recipe().reduce_range if self.reduce_range is None else self.reduce_range
        return Int8Recipe(per_channel=self.per_channel, reduce_range=reduce_range, smooth_alpha=self.smooth_alpha,
                          token_scale=self.token_scale)


def export_formats(
    model: nn.Module, out_dir: str | Path, config: ExportConfig | None = None,
    signature: ModelSignature | None = None, calibration: Iterable[Any] | None = None, source: str | None = None,
    source_sha256: str | None = None, validation: Iterable[Any] | None = None, about: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``config.formats`` of ``model`` into ``out_dir`` and return the manifest (also saved).

    ``calibration``: batches for static INT8 (e.g. a ``val_dataloader()``); None = random inputs.
    ``validation``: batches INT8 artifacts are checked on (default: ``calibration``); without
    either, they are checked on random inputs, by their error only. ``source`` /
    ``source_sha256`` name the checkpoint the model came from; ``about`` adds entries to the
    manifest (``weights``: which checkpoint, ``data``: what INT8 was calibrated on). ``out_dir``
    must be new, empty or an earlier export: it is replaced as a whole.
    """
    config = config or ExportConfig()
    if "tensorrt" in config.formats:
        from nl_lightning.export.tensorrt import check_tensorrt

        check_tensorrt()  # fail before spending time on the other formats
    out_dir = Path(out_dir)
    check_replaceable(out_dir)
    signature = signature or signature_of(model)
    net = inference_copy(model)
    calibration = _take(calibration, max(config.calibration_batches, config.check_batches))
    checks = _check_inputs(signature, validation if validation is not None else calibration, config)
    with staged_dir(out_dir) as build:
        manifest = _write_all(net, build, signature, config, calibration, checks)
        manifest.update(source=source, source_sha256=source_sha256, **signature.manifest_task(), **(about or {}))
        manifest.update(_tokenizer_entry(model, signature, build))
        write_manifest(build, manifest)
    failures = [a["format"] for a in manifest["artifacts"] if not a["parity_ok"]]
    if failures:
        message = f"Parity check failed for {failures}; measured errors are in {out_dir / MANIFEST_NAME}."
        if config.strict:
            raise ParityError(message + " Loosen atol / min_agreement / max_relative_error only if the loss is "
                                        "expected, or drop the format.")
        warnings.warn(message, stacklevel=2)
    return manifest


def check_replaceable(out_dir: Path) -> None:
    """Refuse to replace a folder that holds anything an export did not write (checkpoints, ...)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ConfigError(f"out_dir {out_dir} is a file; pass a folder for the export.")
    entries = {p.name for p in out_dir.iterdir()}
    if not entries:
        return
    try:
        listed = {name.split("/")[0] for name in listed_files(json.loads((out_dir / MANIFEST_NAME).read_text()))}
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        listed = set()
    extra = sorted(entries - listed) if listed else sorted(entries)
    if extra:
        raise ConfigError(
            f"out_dir {out_dir} holds {extra[:5]}, which no export wrote there. An export replaces its whole "
            "folder, so pass a new or empty folder, or the folder of an earlier export."
        )


def _write_all(net: nn.Module, out_dir: Path, signature: ModelSignature, config: ExportConfig,
               calibration: list[Any] | None, checks: tuple[list[Tensor], str] | None) -> dict[str, Any]:
    inputs = parity_inputs(signature.example, config.parity_batch_sizes, _seq_lens(signature, config))
    artifacts, fusions, prepared = [], None, None
    for fmt in _ordered(config.formats):
        path = out_dir / FILENAMES[fmt]
        if fmt in DERIVED_FORMATS and fusions is None and config.fuse:
            fusions = fuse_onnx(out_dir / FILENAMES["onnx"], out_dir / FUSED_NAME)
        if fmt in QUANTIZED_FORMATS and prepared is None:
            prepared = _prepare(net, signature, config, out_dir, calibration)
        runner = _WRITERS[fmt](net, path, signature, config, out_dir, calibration)
        tol = config.tolerance(fmt)
        records = check_parity(net, runner, inputs, tol, name=fmt, strict=False)
        files = onnx_files(path) if fmt.startswith("onnx") else [path]
        entry = artifact_entry(fmt, files, out_dir, asdict(tol) if tol else None, records)
        if fmt in QUANTIZED_FORMATS:
            qtol = config.quantized_tolerance()
            entry["tolerance"] = asdict(qtol)
            entry["agreement"] = check_agreement(net, runner, checks[0], qtol, data=checks[1])
            entry["parity_ok"] = entry["parity_ok"] and entry["agreement"]["ok"]
        artifacts.append(entry)
    intermediates = ([FUSED_NAME] if fusions is not None else []) + [n for n in PREPARED_NAMES if (out_dir / n).exists()]
    for file in [f for name in intermediates for f in onnx_files(out_dir / name)]:
        file.unlink()  # the formats built from them are the artifacts
    opset = config.opset if any(f.startswith("onnx") for f in config.formats) else None
    manifest = build_manifest(artifacts, signature.manifest_input(), opset)
    if fusions is not None:
        manifest["fusions"] = fusions
    if any(f in QUANTIZED_FORMATS for f in config.formats):
        manifest["int8_recipe"] = config.int8_recipe().to_dict()
        manifest["int8_smoothed_mlps"] = prepared["smoothed"] if prepared else 0
        manifest["int8_token_scaled_mlps"] = prepared["token_scaled"] if prepared else 0
    return manifest


def _tokenizer_entry(model: nn.Module, signature: ModelSignature, out_dir: Path) -> dict[str, Any]:
    """An LM's tokenizer (and chat template) beside its graph, listed and hashed like the artifacts,
    so a server of the export turns text into the ids the model was trained on; nothing for bytes."""
    codec = getattr(model, "codec", None)
    if signature.task != "lm" or codec is None:
        return {}
    files = codec.save(out_dir / "tokenizer")
    return {"tokenizer": {"files": file_entries(files, out_dir)}} if files else {}


def _fused_source(out_dir: Path, config: ExportConfig) -> Path:
    """What the ONNX-derived formats are built from: the fused graph, or ``model.onnx``."""
    return out_dir / (FUSED_NAME if config.fuse else FILENAMES["onnx"])


def _prepare(net: nn.Module, signature: ModelSignature, config: ExportConfig, out_dir: Path,
             calibration: list[Any] | None) -> dict[str, int]:
    """Export (and fuse) the graph the INT8 formats quantize, as the recipe prepares the model
    (``export/prepare.py``); returns how many gated MLPs each step changed (all 0: nothing written)."""
    prepared, counts = prepare_int8(net, config.int8_recipe(), calibration or None, config.calibration_batches)
    if any(counts.values()):
        plain, fused = (out_dir / name for name in PREPARED_NAMES)
        export_onnx(prepared, plain, signature, config.opset, config.external_data)
        if config.fuse:
            fuse_onnx(plain, fused)
    return counts


def _int8_source(out_dir: Path, config: ExportConfig) -> Path:
    """What the INT8 formats quantize: the prepared graph where :func:`_prepare` wrote one, else the fused one."""
    prepared = out_dir / PREPARED_NAMES[1 if config.fuse else 0]
    return prepared if prepared.exists() else _fused_source(out_dir, config)


def _take(batches: Iterable[Any] | None, n: int) -> list[Any] | None:
    """The first ``n`` batches, read once (a generator is not re-iterable)."""
    return None if batches is None else list(itertools.islice(batches, n))


def _check_inputs(signature: ModelSignature, batches: Iterable[Any] | None,
                  config: ExportConfig) -> tuple[list[Tensor], str] | None:
    """Model inputs for the INT8 check: real batches, or (with a warning) random ones."""
    if not any(f in QUANTIZED_FORMATS for f in config.formats):
        return None
    if batches is not None:
        inputs = [batch_input(b) for b in itertools.islice(batches, config.check_batches)]
        if not inputs:
            raise DataError("The validation / calibration data is empty: the INT8 check needs at least one batch.")
        return inputs, "real"
    warnings.warn(
        "INT8 artifacts are checked on random inputs because no data was given, by their error only; pass "
        "validation batches (ExportCallback and `nl-lightning export` do) to check their top-1 agreement.",
        stacklevel=3,
    )
    seq = signature.clamp_seq(32)
    return [signature.example(8, seq, seed=100 + i) for i in range(config.check_batches)], "random"


def _seq_lens(signature: ModelSignature, config: ExportConfig) -> list[int]:
    if config.parity_seq_lens is not None:
        return [signature.clamp_seq(t) for t in config.parity_seq_lens]
    longest = signature.clamp_seq(32)
    return sorted({max(1, longest // 2), longest})


def _ordered(formats: list[str]) -> list[str]:
    """Base ONNX first (the others derive from it), then the rest in the order given."""
    wanted = list(dict.fromkeys(formats))
    if any(f.startswith("onnx_") for f in wanted) and "onnx" not in wanted:
        wanted.insert(0, "onnx")
    return sorted(wanted, key=lambda f: f != "onnx")


Runner = Callable[[Tensor], Tensor]
Writer = Callable[[nn.Module, Path, ModelSignature, ExportConfig, Path, Any], Runner]


def _write_onnx(
    net: nn.Module, path: Path, signature: ModelSignature, config: ExportConfig, out_dir: Path, calibration: Any,
) -> Runner:
    from nl_lightning.export.ort import ort_runner, ort_session

    export_onnx(net, path, signature, config.opset, config.external_data)
    return ort_runner(ort_session(path))


def _write_optimized(
    net: nn.Module, path: Path, signature: ModelSignature, config: ExportConfig, out_dir: Path, calibration: Any,
) -> Runner:
    from nl_lightning.export.ort import optimize_onnx, ort_runner, ort_session

    optimize_onnx(_fused_source(out_dir, config), path, config.optimization_level)
    return ort_runner(ort_session(path))


def _write_int8_dynamic(
    net: nn.Module, path: Path, signature: ModelSignature, config: ExportConfig, out_dir: Path, calibration: Any,
) -> Runner:
    from nl_lightning.export.ort import ort_runner, ort_session, quantize_onnx_dynamic

    quantize_onnx_dynamic(_int8_source(out_dir, config), path, config.int8_recipe())
    return ort_runner(ort_session(path))


def _write_int8_static(
    net: nn.Module, path: Path, signature: ModelSignature, config: ExportConfig, out_dir: Path, calibration: Any,
) -> Runner:
    from nl_lightning.export.calibration import calibration_reader
    from nl_lightning.export.ort import ort_runner, ort_session, quantize_onnx_static

    reader = calibration_reader(signature, calibration, config.calibration_batches, config.random_calibration)
    quantize_onnx_static(_int8_source(out_dir, config), path, reader, config.int8_recipe())
    return ort_runner(ort_session(path))


def _write_pt2(
    net: nn.Module, path: Path, signature: ModelSignature, config: ExportConfig, out_dir: Path, calibration: Any,
) -> Runner:
    from nl_lightning.export.torch_export import export_pt2, pt2_runner

    export_pt2(net, path, signature)
    return pt2_runner(path)


def _write_torchscript(
    net: nn.Module, path: Path, signature: ModelSignature, config: ExportConfig, out_dir: Path, calibration: Any,
) -> Runner:
    from nl_lightning.export.torchscript import export_torchscript, torchscript_runner

    export_torchscript(net, path, signature)
    return torchscript_runner(path)


def _write_tensorrt(
    net: nn.Module, path: Path, signature: ModelSignature, config: ExportConfig, out_dir: Path, calibration: Any,
) -> Runner:
    from nl_lightning.export.tensorrt import export_tensorrt

    export_tensorrt(net, path, signature)
    module = torch.export.load(str(path)).module()
    return lambda x: module(x.cuda()).float().cpu()


_WRITERS: dict[str, Writer] = {
    "onnx": _write_onnx,
    "onnx_optimized": _write_optimized,
    "onnx_int8_dynamic": _write_int8_dynamic,
    "onnx_int8_static": _write_int8_static,
    "pt2": _write_pt2,
    "torchscript": _write_torchscript,
    "tensorrt": _write_tensorrt,
}
