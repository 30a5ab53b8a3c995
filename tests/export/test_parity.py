from __future__ import annotations

import pytest
import torch

from nl_lightning.export.parity import (
    AgreementTolerance, ParityError, Tolerance, check_agreement, check_parity, compare, parity_inputs,
)


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


def _logits(n: int = 20) -> torch.Tensor:
    """(n, 3) logits whose argmax is class i % 3, with a margin of 2."""
    logits = torch.zeros(n, 3)
    logits[torch.arange(n), torch.arange(n) % 3] = 2.0
    return logits


def _flip(rows: int):
    """A candidate that moves the argmax of the first ``rows`` rows of every input to another class."""
    def run(x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        out[:rows] = out[:rows].roll(1, dims=-1)
        return out
    return run


def test_agreement_counts_changed_predictions_and_holds_real_data_to_the_minimum():
    inputs = [_logits(), _logits()]
    same = check_agreement(lambda x: x, lambda x: x, inputs, AgreementTolerance(95.0, 0.2))
    assert same == {"data": "validation", "batches": 2, "predictions": 40, "top1_agreement": 100.0,
                    "relative_error": 0.0, "agreement_checked": True, "ok": True}
    tol = AgreementTolerance(min_agreement=95.0, max_relative_error=10.0)
    flipped = check_agreement(lambda x: x, _flip(2), inputs, tol)  # 4 of 40 predictions change
    assert flipped["top1_agreement"] == 90.0 and not flipped["ok"]
    assert check_agreement(lambda x: x, _flip(1), inputs, AgreementTolerance(95.0, 10.0))["ok"]  # 95.0%
    random = check_agreement(lambda x: x, _flip(2), inputs, tol, data="random")
    assert random["top1_agreement"] == 90.0 and not random["agreement_checked"] and random["ok"]


def test_agreement_bounds_the_relative_error_even_on_random_inputs():
    inputs = [_logits()]
    # Centered logits of [2, 0, 0] have RMS sqrt(8/9); a shift of 0.1 on one logit per row is
    # RMS 0.1 / sqrt(3): relative error sqrt(3 / 8) / 10.
    def noisy(x):
        return x + torch.tensor([0.0, 0.1, 0.0])
    record = check_agreement(lambda x: x, noisy, inputs, AgreementTolerance(95.0, 0.2), data="random")
    assert record["relative_error"] == pytest.approx((3 / 8) ** 0.5 / 10) and record["ok"]
    assert not check_agreement(lambda x: x, noisy, inputs, AgreementTolerance(95.0, 0.05), data="random")["ok"]
    shifted = check_agreement(lambda x: x, lambda x: x + 5.0, inputs, AgreementTolerance(95.0, 0.01))
    assert shifted["relative_error"] == pytest.approx(5.0 * (9 / 8) ** 0.5)  # raw logits: a shift counts
    assert not shifted["ok"]


def test_agreement_fails_on_non_finite_outputs_and_judges_regression_by_error():
    nan = check_agreement(lambda x: x, lambda x: x * float("nan"), [_logits()], AgreementTolerance(0.0, 1e9))
    assert not nan["ok"]
    values = [torch.tensor([[1.0], [2.0]])]
    regression = check_agreement(lambda x: x, lambda x: x * 1.01, values, AgreementTolerance(95.0, 0.02))
    assert regression["top1_agreement"] is None and regression["relative_error"] == pytest.approx(0.01)
    assert regression["ok"]


def test_parity_without_tolerance_only_requires_finite_outputs():
    records = check_parity(lambda x: x, lambda x: x + 1.0, _inputs(), None)
    assert all(r["ok"] and r["atol_used"] is None and r["max_abs_err"] == pytest.approx(1.0) for r in records)
    with pytest.raises(ParityError, match="int8 gives non-finite outputs at batch 1, seq 4"):
        check_parity(lambda x: x, lambda x: x / 0.0 * 0.0, _inputs(), None, name="int8")


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(min_agreement=101.0), r"min_agreement=101.0 is a percentage"),
    (dict(max_relative_error=0.0), r"max_relative_error=0.0 must be > 0"),
])
def test_agreement_tolerance_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AgreementTolerance(**kwargs)
