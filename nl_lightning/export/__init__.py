"""Export cores (no lightning import): ONNX, ONNX Runtime optimization and INT8, torch.export,
TorchScript (legacy), Torch-TensorRT (optional), parity checks, checksummed manifests, atomic
export folders, gathering FSDP2-sharded weights, and the profiler.

Names are imported lazily (``ModelSignature`` needs torch alone; onnx / onnxruntime / torchao /
matplotlib are imported only when a function needs them).
"""

from __future__ import annotations

from nl_lightning._lazy import lazy_exports

_EXPORTS = {
    "ExportConfig": "nl_lightning.export.bundle",
    "export_formats": "nl_lightning.export.bundle",
    "compare_variants": "nl_lightning.export.compare",
    "agreement": "nl_lightning.export.evaluate",
    "evaluate": "nl_lightning.export.evaluate",
    "batch_input": "nl_lightning.export.inputs",
    "ManifestError": "nl_lightning.export.manifest",
    "read_manifest": "nl_lightning.export.manifest",
    "export_onnx": "nl_lightning.export.onnx",
    "optimize_onnx": "nl_lightning.export.ort",
    "ort_runner": "nl_lightning.export.ort",
    "ort_session": "nl_lightning.export.ort",
    "quantize_onnx_dynamic": "nl_lightning.export.ort",
    "quantize_onnx_static": "nl_lightning.export.ort",
    "AgreementTolerance": "nl_lightning.export.parity",
    "ParityError": "nl_lightning.export.parity",
    "Tolerance": "nl_lightning.export.parity",
    "check_agreement": "nl_lightning.export.parity",
    "check_parity": "nl_lightning.export.parity",
    "ProfileResult": "nl_lightning.export.profile",
    "profile": "nl_lightning.export.profile",
    "format_table": "nl_lightning.export.report",
    "save_chart": "nl_lightning.export.report",
    "save_results": "nl_lightning.export.report",
    "ModelSignature": "nl_lightning.export.signature",
    "signature_from_manifest": "nl_lightning.export.signature",
    "signature_of": "nl_lightning.export.signature",
    "smooth_glu": "nl_lightning.export.smooth",
    "task_prediction": "nl_lightning.export.signature",
    "TensorRTUnavailableError": "nl_lightning.export.tensorrt",
    "export_tensorrt": "nl_lightning.export.tensorrt",
    "export_pt2": "nl_lightning.export.torch_export",
    "load_pt2": "nl_lightning.export.torch_export",
    "export_torchscript": "nl_lightning.export.torchscript",
    "Variant": "nl_lightning.export.variants",
    "VariantBuilder": "nl_lightning.export.variants",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
