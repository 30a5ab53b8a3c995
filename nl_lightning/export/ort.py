"""ONNX Runtime: sessions, graph optimization saved as its own model, INT8 quantization.

All of it is ONNX Runtime's own machinery: ``SessionOptions.optimized_model_filepath`` for the
optimized graph, ``quant_pre_process`` + ``quantize_dynamic`` / ``quantize_static`` for INT8.
``quant_pre_process`` runs with ``skip_symbolic_shape=True``: its symbolic shape inference
fails on dynamo-exported graphs ("Incomplete symbolic shape inference").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from nl_lightning._imports import ORT_AVAILABLE, require
from nl_lightning._io import atomic_output
from nl_lightning.errors import ConfigError
from nl_lightning.export.onnx import has_external_data

OptimizationLevel = Literal["basic", "extended", "all"]
QuantDType = Literal["int8", "uint8"]
CalibrationMethod = Literal["minmax", "entropy", "percentile"]
QUANTIZED_OPS: tuple[str, ...] = ("MatMul", "Gemm", "Gather")


def ort_session(path: str | Path, threads: int | None = None) -> Any:
    """A CPU ``InferenceSession`` with all graph optimizations; ``threads`` sets intra-op threads."""
    require(ORT_AVAILABLE, "onnxruntime", "export", "Running ONNX models")
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_runner(session: Any) -> Callable[[Tensor], Tensor]:
    """Wrap a session as ``fn(x: Tensor) -> Tensor`` (the first output), like calling the eager model."""
    name = session.get_inputs()[0].name

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {name: as_numpy(x)})[0])

    return run


def optimize_onnx(src: str | Path, dst: str | Path, level: OptimizationLevel = "extended") -> Path:
    """Save ORT's optimized graph (fusions, constant folding) as a model of its own.

    ``extended`` is portable; ``all`` adds layout changes tied to this machine's CPU.
    """
    require(ORT_AVAILABLE, "onnxruntime", "export", "ONNX graph optimization")
    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if level not in levels:
        raise ConfigError(f"optimization level={level!r} is not supported; choose one of {tuple(levels)}.")
    with atomic_output(dst) as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[level]
        options.optimized_model_filepath = str(tmp)
        if has_external_data(src):
            options.add_session_config_entry(
                "session.optimized_model_external_initializers_file_name", f"{Path(dst).name}.data"
            )
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    return Path(dst)


def preprocess_onnx(src: str | Path, dst: str | Path) -> Path:
    """ORT's recommended pre-quantization pass (shape inference + optimization)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    external = has_external_data(src)
    quant_pre_process(
        str(src), str(dst), skip_symbolic_shape=True, save_as_external_data=external,
        all_tensors_to_one_file=True, external_data_location=f"{Path(dst).name}.data" if external else None,
    )
    return Path(dst)


def quantize_onnx_dynamic(
    src: str | Path, dst: str | Path, per_channel: bool = False, op_types: Sequence[str] | None = QUANTIZED_OPS,
) -> Path:
    """INT8 weights, activations quantized on the fly at run time (no calibration data).

    ``op_types``: Linear layers (MatMul / Gemm) and the token embedding (Gather).
    """
    require(ORT_AVAILABLE, "onnxruntime", "export", "ONNX Runtime quantization")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with atomic_output(dst) as tmp:
        pre = preprocess_onnx(src, tmp.with_name("pre.onnx"))
        quantize_dynamic(
            pre, tmp, op_types_to_quantize=list(op_types) if op_types else None, per_channel=per_channel,
            weight_type=QuantType.QInt8, use_external_data_format=has_external_data(src),
        )
        _remove(pre)
    return Path(dst)


def quantize_onnx_static(
    src: str | Path, dst: str | Path, reader: Any, per_channel: bool = True,
    op_types: Sequence[str] | None = QUANTIZED_OPS, activation_type: QuantDType = "int8",
    weight_type: QuantDType = "int8", method: CalibrationMethod = "minmax",
) -> Path:
    """INT8 weights and activations with ranges calibrated on ``reader`` (a ``CalibrationDataReader``).

    QDQ format, which ORT fuses into integer kernels on CPU.
    """
    require(ORT_AVAILABLE, "onnxruntime", "export", "ONNX Runtime quantization")
    from onnxruntime.quantization import CalibrationMethod as Method, QuantFormat, QuantType, quantize_static

    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    methods = {"minmax": Method.MinMax, "entropy": Method.Entropy, "percentile": Method.Percentile}
    for arg, value, allowed in (("activation_type", activation_type, types), ("weight_type", weight_type, types),
                                ("calibration method", method, methods)):
        if value not in allowed:
            raise ConfigError(f"{arg}={value!r} is not supported; choose one of {tuple(allowed)}.")
    with atomic_output(dst) as tmp:
        pre = preprocess_onnx(src, tmp.with_name("pre.onnx"))
        quantize_static(
            pre, tmp, reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types) if op_types else None,
            per_channel=per_channel, activation_type=types[activation_type], weight_type=types[weight_type],
            calibrate_method=methods[method], use_external_data_format=has_external_data(src),
            extra_options={"TensorQuantOverrides": _per_tensor_vectors(pre)} if per_channel else None,
        )
        _remove(pre)
    return Path(dst)


def _per_tensor_vectors(model_path: Path) -> dict[str, list[dict]]:
    """Per-tensor scales for rank-1 weights (e.g. attention pooling's query vector): they have no channel
    axis, and without this override ORT logs "Axis 1 is out-of-range" and falls back to it by itself."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    return {init.name: [{}] for init in model.graph.initializer if len(init.dims) == 1}


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".data")):
        p.unlink(missing_ok=True)


def as_numpy(x: Tensor) -> np.ndarray:
    """A model input as ORT wants it: int64 ids or float32 features, contiguous."""
    x = x.detach().cpu()
    return (x.long() if not x.is_floating_point() else x.float()).contiguous().numpy()
