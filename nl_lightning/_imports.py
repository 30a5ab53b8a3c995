"""Optional-dependency flags, one place for the whole package (pyproject extras name the packages).

Checked without importing the packages, so imports stay cheap, and a missing extra becomes an
error that names the ``pip install`` to run.
"""

from __future__ import annotations

import importlib
from importlib.util import find_spec
from types import ModuleType

from nl_lightning.errors import MissingPackageError

ONNX_AVAILABLE = find_spec("onnx") is not None and find_spec("onnxscript") is not None
ORT_AVAILABLE = find_spec("onnxruntime") is not None
TORCHAO_AVAILABLE = find_spec("torchao") is not None
MATPLOTLIB_AVAILABLE = find_spec("matplotlib") is not None
TORCH_TENSORRT_AVAILABLE = find_spec("torch_tensorrt") is not None
TENSORBOARD_AVAILABLE = find_spec("tensorboard") is not None
MLFLOW_AVAILABLE = find_spec("mlflow") is not None
WANDB_AVAILABLE = find_spec("wandb") is not None
PLOTLY_AVAILABLE = find_spec("plotly") is not None
PYARROW_AVAILABLE = find_spec("pyarrow") is not None


def require(flag: bool, package: str, extra: str, what: str) -> None:
    """Raise ``ModuleNotFoundError`` naming the extra that provides ``package``."""
    if not flag:
        raise MissingPackageError(
            f"{what} needs the `{package}` package, which is not installed. "
            f"Install it with: pip install 'nl-lightning[{extra}]'"
        )


def import_optional(module: str, extra: str, what: str) -> ModuleType:
    """``importlib.import_module(module)``, or ``MissingPackageError`` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is None or module.split(".")[0] != err.name.split(".")[0]:
            raise  # the package is there but one of its own imports is missing: its traceback says which
        raise MissingPackageError(
            f"{what} needs `{module.split('.')[0]}`, which is not installed. "
            f"Install it with: pip install 'nl-lightning[{extra}]'"
        ) from err
