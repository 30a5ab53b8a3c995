"""RoPE frequency scaling by name: how a model trained on short contexts stretches its rotations.

A scaling is a plain dict (it lives in ``TransformerConfig.rope_scaling`` and so in YAML and
checkpoints): ``{"type": "linear", "factor": 4.0}`` divides every frequency by ``factor``;
``{"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
"original_max_seq_len": 8192}`` is Llama 3.1's rule: long wavelengths are divided by ``factor``,
short ones are kept, and those in between are blended smoothly.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from nl_lightning.errors import ConfigError

#: Scaling type -> the keys it needs (besides ``type``).
ROPE_SCALINGS: dict[str, tuple[str, ...]] = {
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_seq_len"),
}


def validate_rope_scaling(scaling: Any, field: str = "TransformerConfig.rope_scaling") -> None:
    """Raise ``ConfigError`` (a ``ValueError``) naming ``field``, the value and what is accepted, unless ``scaling`` is
    None or a dict of a known type with exactly its keys and positive numbers."""
    if scaling is None:
        return
    if not isinstance(scaling, dict) or scaling.get("type") not in ROPE_SCALINGS:
        kind = scaling.get("type") if isinstance(scaling, dict) else scaling
        raise ConfigError(
            f"{field} type {kind!r} is not supported; use None (plain RoPE) or a dict with 'type' one of "
            f"{tuple(ROPE_SCALINGS)}, e.g. {{'type': 'linear', 'factor': 2.0}}."
        )
    needed = ROPE_SCALINGS[scaling["type"]]
    keys = set(scaling) - {"type"}
    if keys != set(needed):
        raise ConfigError(
            f"{field}={scaling!r}: type {scaling['type']!r} takes exactly the keys {list(needed)}; "
            f"missing {sorted(set(needed) - keys)}, unknown {sorted(keys - set(needed))}."
        )
    for key in needed:
        value = scaling[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{field}[{key!r}]={value!r} must be a positive number.")
    if scaling["type"] == "llama3" and not scaling["high_freq_factor"] > scaling["low_freq_factor"]:
        raise ConfigError(
            f"{field}: high_freq_factor={scaling['high_freq_factor']} must be > low_freq_factor="
            f"{scaling['low_freq_factor']} (Llama 3.1 uses 4.0 and 1.0)."
        )


def scale_inv_freq(inv_freq: Tensor, scaling: dict[str, Any] | None) -> Tensor:
    """Inverse frequencies (D/2,) after ``scaling`` (None returns them unchanged)."""
    if scaling is None:
        return inv_freq
    factor = float(scaling["factor"])
    if scaling["type"] == "linear":
        return inv_freq / factor
    return _llama3(inv_freq, factor, scaling["low_freq_factor"], scaling["high_freq_factor"],
                   scaling["original_max_seq_len"])


def _llama3(inv_freq: Tensor, factor: float, low: float, high: float, original_len: int) -> Tensor:
    """Wavelengths above ``original_len / low`` are stretched by ``factor``, below ``original_len /
    high`` kept; in between the two are mixed linearly in ``original_len / wavelength``."""
    wavelen = 2 * math.pi / inv_freq
    stretched = inv_freq / factor
    smooth = (original_len / wavelen - low) / (high - low)
    mixed = (1 - smooth) * inv_freq / factor + smooth * inv_freq  # transformers' order of operations
    out = inv_freq.where(wavelen < original_len / high, mixed)  # short wavelengths: unchanged
    return out.where(wavelen <= original_len / low, stretched)  # long wavelengths: stretched
