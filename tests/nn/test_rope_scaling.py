"""RoPE frequency scaling: linear and Llama 3.1's rule against their formulas, and the checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from nl_lightning.nn import RotaryEmbedding, rope_cache, scale_inv_freq, validate_rope_scaling

HEAD_DIM = 64
LLAMA3 = {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_seq_len": 64}


def _inv_freq(base: float = 10000.0) -> torch.Tensor:
    return 1.0 / base ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM)


def test_linear_scaling_stretches_positions():
    """Dividing frequencies by f puts position p where plain RoPE puts p / f."""
    cos, sin = rope_cache(40, HEAD_DIM, scaling={"type": "linear", "factor": 4.0})
    plain_cos, plain_sin = rope_cache(10, HEAD_DIM)
    assert_close(cos[::4], plain_cos, atol=1e-5, rtol=0)
    assert_close(sin[::4], plain_sin, atol=1e-5, rtol=0)


def test_llama3_scaling_matches_its_definition_per_frequency():
    """Each frequency written out as Meta's reference code does: keep short wavelengths, divide long
    ones by the factor, blend the ones in between."""
    inv = _inv_freq(500000.0)
    got = scale_inv_freq(inv, LLAMA3)
    low_wavelen, high_wavelen = 64 / 1.0, 64 / 4.0
    kinds = set()
    for freq, out in zip(inv.tolist(), got.tolist()):
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            expected, kind = freq, "kept"
        elif wavelen > low_wavelen:
            expected, kind = freq / 8.0, "stretched"
        else:
            smooth = (64 / wavelen - 1.0) / (4.0 - 1.0)
            expected, kind = (1 - smooth) * freq / 8.0 + smooth * freq, "blended"
        kinds.add(kind)
        assert out == pytest.approx(expected, rel=1e-6)
    assert kinds == {"kept", "stretched", "blended"}  # the config exercises all three regimes


def test_module_keeps_its_scaling_through_a_dtype_round_trip():
    rope = RotaryEmbedding(HEAD_DIM, 32, scaling=LLAMA3).to(torch.bfloat16).float()
    assert_close(rope(32)[0], rope_cache(32, HEAD_DIM, scaling=LLAMA3)[0])
    assert not torch.allclose(rope(32)[0], rope_cache(32, HEAD_DIM)[0])


@pytest.mark.parametrize(
    "scaling, match",
    [
        ({"type": "yarn", "factor": 2.0}, r"type 'yarn' is not supported; use None \(plain RoPE\) or a dict with 'type' one of"),
        ("linear", r"type 'linear' is not supported"),
        ({"type": "linear"}, r"takes exactly the keys \['factor'\]; missing \['factor'\], unknown \[\]"),
        ({"type": "linear", "factor": 2.0, "beta": 1}, r"missing \[\], unknown \['beta'\]"),
        ({"type": "linear", "factor": -2.0}, r"rope_scaling\['factor'\]=-2.0 must be a positive number"),
        ({**LLAMA3, "high_freq_factor": 0.5}, r"high_freq_factor=0.5 must be > low_freq_factor=1.0"),
    ],
)
def test_invalid_scalings_are_named(scaling, match):
    with pytest.raises(ValueError, match=match):
        validate_rope_scaling(scaling)
