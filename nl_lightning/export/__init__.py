"""Export cores (no lightning import): ONNX, ONNX Runtime optimization and INT8, torch.export,
TorchScript (legacy), Torch-TensorRT (optional), parity checks, checksummed manifests, atomic
export folders, gathering FSDP2-sharded weights, and the profiler.

onnx / onnxruntime / torchao / matplotlib are imported only when a function needs them.
"""

from nl_lightning.export.bundle import ExportConfig, export_formats
from nl_lightning.export.compare import compare_variants
from nl_lightning.export.evaluate import agreement, evaluate
from nl_lightning.export.inputs import InputSpec, input_spec
from nl_lightning.export.manifest import ManifestError, read_manifest
from nl_lightning.export.onnx import export_onnx
from nl_lightning.export.ort import optimize_onnx, ort_runner, ort_session, quantize_onnx_dynamic, quantize_onnx_static
from nl_lightning.export.parity import AgreementTolerance, ParityError, Tolerance, check_agreement, check_parity
from nl_lightning.export.profile import ProfileResult, profile
from nl_lightning.export.report import format_table, save_chart, save_results
from nl_lightning.export.tensorrt import TensorRTUnavailableError, export_tensorrt
from nl_lightning.export.torch_export import export_pt2, load_pt2
from nl_lightning.export.torchscript import export_torchscript
from nl_lightning.export.variants import Variant, VariantBuilder

__all__ = [
    "AgreementTolerance", "ExportConfig", "InputSpec", "ManifestError", "ParityError", "ProfileResult",
    "TensorRTUnavailableError", "Tolerance", "Variant", "VariantBuilder", "agreement", "check_agreement",
    "check_parity", "compare_variants", "evaluate", "export_formats", "export_onnx", "export_pt2", "export_tensorrt",
    "export_torchscript", "format_table", "input_spec", "load_pt2", "optimize_onnx", "ort_runner", "ort_session",
    "profile", "quantize_onnx_dynamic", "quantize_onnx_static", "read_manifest", "save_chart", "save_results",
]
