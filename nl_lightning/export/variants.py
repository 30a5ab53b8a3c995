"""Build runnable variants of one model by name: eager, compiled, ORT fp32 / optimized / INT8, torchao, FP16.

Every variant is a ``Variant``: a ``run(x) -> fp32 logits`` callable, plus the artifact on disk
and its size where there is one. The profiler, ``QuantizationCallback`` and the benchmark all
compare variants built here, so a name means the same thing everywhere. ONNX variants share one
exported ``model.onnx`` in ``work_dir``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from nl_lightning.compress.quantize import TORCH_METHODS, module_runner, quantize_model
from nl_lightning._io import save_torch
from nl_lightning.errors import ConfigError
from nl_lightning.export.signature import ModelSignature, signature_of
from nl_lightning.export.onnx import DEFAULT_OPSET, export_onnx, inference_copy, onnx_files
from nl_lightning.export.ort import Int8Recipe, int8_recipe

VariantName = Literal[
    "eager", "compile", "ort_fp32", "ort_optimized", "ort_int8_dynamic", "ort_int8_static",
    "torchao_int8_dynamic", "torchao_int8_weight", "fp16", "bf16",
]
VARIANTS: tuple[str, ...] = (
    "eager", "compile", "ort_fp32", "ort_optimized", "ort_int8_dynamic", "ort_int8_static",
    "torchao_int8_dynamic", "torchao_int8_weight", "fp16", "bf16",
)
ALIASES = {"fp32": "eager", "ort_int8": "ort_int8_dynamic", "torchao_int8": "torchao_int8_dynamic"}


@dataclass
class Variant:
    """A built variant of a model: its name, a function from inputs to outputs, and its file and size."""

    name: str
    run: Callable[[Tensor], Tensor]
    path: Path | None = None
    bytes: int | None = None


def resolve_variant(name: str) -> str:
    """Canonical name (``ort_int8`` -> ``ort_int8_dynamic``), or an error listing the valid ones."""
    name = ALIASES.get(name, name)
    if name not in VARIANTS:
        raise ConfigError(f"Unknown variant {name!r}; choose one of {VARIANTS} (aliases: {sorted(ALIASES)}).")
    return name


class VariantBuilder:
    """Builds variants of ``model`` into ``work_dir``; ``calibration`` feeds static INT8 (without it,
    static INT8 is an error unless ``random_calibration``: for timing only, as ``profile`` does)."""

    def __init__(
        self, model: nn.Module, work_dir: str | Path, signature: ModelSignature | None = None,
        calibration: Iterable[Any] | None = None, calibration_batches: int = 8, threads: int | None = None,
        opset: int = DEFAULT_OPSET, random_calibration: bool = False, fuse: bool = True,
        recipe: Int8Recipe | None = None,
    ) -> None:
        self.signature = signature or signature_of(model)
        self.net = inference_copy(model)
        self.work_dir = Path(work_dir)
        self.calibration, self.calibration_batches = calibration, calibration_batches
        self.threads, self.opset, self.random_calibration = threads, opset, random_calibration
        self.fuse, self.recipe = fuse, recipe
        self._int8_source: Path | None = None

    def build(self, name: str) -> Variant:
        name = resolve_variant(name)
        if name == "eager":
            return self._saved(name, self.net)
        if name == "compile":
            compiled = torch.compile(self.net, dynamic=True)
            return Variant(name, module_runner(compiled))
        if name in TORCH_METHODS:
            return self._saved(name, quantize_model(self.net, name))
        return self._ort(name)

    def _saved(self, name: str, model: nn.Module) -> Variant:
        path = save_torch(model.state_dict(), self.work_dir / f"model.{name}.pt")
        return Variant(name, module_runner(model), path, path.stat().st_size)

    def onnx_path(self) -> Path:
        path = self.work_dir / "model.onnx"
        if not path.exists():
            export_onnx(self.net, path, self.signature, self.opset)
        return path

    def fused_path(self) -> Path:
        """The graph the optimized and INT8 variants start from: fused, or ``model.onnx`` itself."""
        from nl_lightning.export.fusion import fuse_onnx

        if not self.fuse:
            return self.onnx_path()
        path = self.work_dir / "model.fused.onnx"
        if not path.exists():
            fuse_onnx(self.onnx_path(), path)
        return path

    def int8_source(self) -> Path:
        """The graph INT8 variants quantize: the model as the recipe prepares it (SmoothQuant with calibration
        data, per-token scaling; ``export/prepare.py``; the same fp32 function), exported and fused, or
        :meth:`fused_path` where the recipe changes nothing."""
        from nl_lightning.export.prepare import prepare_int8

        if self._int8_source is None:
            prepared, counts = prepare_int8(self.net, self.recipe or int8_recipe(), self.calibration,
                                            self.calibration_batches)
            steps = ".".join(step for step, n in counts.items() if n)  # e.g. "smoothed.token_scaled"
            self._int8_source = self._export_fused(prepared, f"model.{steps}") if steps else self.fused_path()
        return self._int8_source

    def _export_fused(self, model: nn.Module, stem: str) -> Path:
        """Export ``model`` as ``<stem>.onnx``; return ``<stem>.fused.onnx`` (or the plain graph without fusion)."""
        from nl_lightning.export.fusion import fuse_onnx

        plain = self.work_dir / f"{stem}.onnx"
        export_onnx(model, plain, self.signature, self.opset)
        if not self.fuse:
            return plain
        fused = self.work_dir / f"{stem}.fused.onnx"
        fuse_onnx(plain, fused)
        return fused

    def _ort(self, name: str) -> Variant:
        from nl_lightning.export import ort

        path = self.work_dir / {"ort_fp32": "model.onnx", "ort_optimized": "model.optimized.onnx",
                                "ort_int8_dynamic": "model.int8_dynamic.onnx",
                                "ort_int8_static": "model.int8_static.onnx"}[name]
        if name == "ort_fp32":
            self.onnx_path()
        elif name == "ort_optimized":
            ort.optimize_onnx(self.fused_path(), path)
        elif name == "ort_int8_dynamic":
            ort.quantize_onnx_dynamic(self.int8_source(), path, self.recipe)
        elif name == "ort_int8_static":
            ort.quantize_onnx_static(self.int8_source(), path, self._reader(), self.recipe)
        size = sum(p.stat().st_size for p in onnx_files(path))
        return Variant(name, ort.ort_runner(ort.ort_session(path, self.threads)), path, size)

    def _reader(self) -> Any:
        from nl_lightning.export.calibration import calibration_reader

        return calibration_reader(self.signature, self.calibration, self.calibration_batches, self.random_calibration)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Temporarily set torch's intra-op threads (None = leave as is)."""
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
