"""``prepare_int8``: the rewrites an INT8 recipe makes to a model before it is exported and quantized.

SmoothQuant (``smooth.py``, where calibration data is given), then per-token scaling
(``token_scale.py``), which wraps the plain ``down`` layers SmoothQuant rescales. Both keep the
fp32 function and only move where INT8 rounds. ``VariantBuilder`` and ``export_formats`` quantize
what this returns, so a recipe means the same in the benchmarks as in an export.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from nl_lightning.export.ort import Int8Recipe
from nl_lightning.export.smooth import smooth_glu
from nl_lightning.export.token_scale import scale_tokens

__all__ = ["prepare_int8"]


def prepare_int8(model: nn.Module, recipe: Int8Recipe, calibration: Iterable[Any] | None = None,
                 calibration_batches: int = 8) -> tuple[nn.Module, dict[str, int]]:
    """``(prepared, counts)``: ``counts`` says how many gated MLPs were ``smoothed`` and ``token_scaled``;
    ``prepared`` is ``model`` itself when both are 0, else a copy (``model`` is never modified)."""
    counts = {"smoothed": 0, "token_scaled": 0}
    prepared = model
    if recipe.smooth_alpha is not None and calibration is not None:
        prepared, counts["smoothed"] = smooth_glu(prepared, calibration, recipe.smooth_alpha, calibration_batches)
    if recipe.token_scale:
        prepared, counts["token_scaled"] = scale_tokens(prepared)
    return prepared, counts
