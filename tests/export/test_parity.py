from __future__ import annotations

import pytest
import torch

from nl_lightning.export.parity import ParityError, Tolerance, check_parity, compare, parity_inputs


def _inputs():
    return parity_inputs(lambda b, t: torch.randn(b, t), batch_sizes=[1, 3], seq_lens=[4, 8])


def test_parity_records_every_input_and_passes_within_tolerance():
    records = check_parity(lambda x: x * 2, lambda x: x * 2 + 1e-6, _inputs(), Tolerance(atol=1e-4))
    assert [(r["batch_size"], r["seq_len"]) for r in records] == [(1, 4), (1, 8), (3, 4), (3, 8)]
    assert all(r["ok"] and 0 < r["max_abs_err"] < 1e-5 for r in records)


def test_parity_fails_loudly_beyond_tolerance():
    match = r"int8 disagrees with eager PyTorch: max \|diff\| = 0.01 at batch \d, seq \d, beyond atol=0.001"
    with pytest.raises(ParityError, match=match):
        check_parity(lambda x: x, lambda x: x + 0.01, _inputs(), Tolerance(atol=1e-3, rtol=0), name="int8")


def test_parity_not_strict_returns_the_failures():
    records = check_parity(lambda x: x, lambda x: x + 0.01, _inputs(), Tolerance(atol=1e-3, rtol=0), strict=False)
    assert not any(r["ok"] for r in records)


def test_relative_tolerance_scales_with_the_largest_logit():
    ref = torch.tensor([[10.0, -2.0]])
    assert compare(ref, ref + 0.9, Tolerance(0.1, 0.0, relative=True))["ok"]
    assert not compare(ref, ref + 1.1, Tolerance(0.1, 0.0, relative=True))["ok"]


def test_non_finite_and_shape_mismatch_fail():
    assert not compare(torch.zeros(2), torch.tensor([0.0, float("nan")]), Tolerance())["ok"]
    with pytest.raises(ParityError, match=r"Output shape \(3,\) differs from eager \(2,\)"):
        compare(torch.zeros(2), torch.zeros(3), Tolerance())


def test_tolerance_must_be_non_negative():
    with pytest.raises(ValueError, match="atol=-1 and rtol=0.001 must be >= 0"):
        Tolerance(atol=-1)
