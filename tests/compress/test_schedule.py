from __future__ import annotations

import pytest

from nl_lightning.compress.schedule import (
    is_pruning_epoch,
    step_amount,
    step_count,
    target_sparsity,
    validate_schedule,
)


def test_one_shot_schedule():
    assert [target_sparsity(e, 0.5, start_epoch=2) for e in range(4)] == [0.0, 0.0, 0.5, 0.5]


def test_linear_and_cubic_grow_to_the_target():
    linear = [target_sparsity(e, 0.8, 0, 3, "linear") for e in range(5)]
    assert linear == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8])
    cubic = [target_sparsity(e, 0.8, 0, 3, "cubic") for e in range(5)]
    assert cubic == pytest.approx([0.8 * (1 - (1 - p / 4) ** 3) for p in (1, 2, 3, 4)] + [0.8])
    assert cubic[0] > linear[0]  # cubic prunes fast first
    assert all(a <= b for a, b in zip(cubic, cubic[1:]))


def test_pruning_epochs_respect_frequency_and_end():
    assert [e for e in range(8) if is_pruning_epoch(e, 1, 6, 2)] == [1, 3, 5, 6]
    assert [e for e in range(4) if is_pruning_epoch(e, 2, None, 1)] == [2]


def test_step_amount_compounds_on_what_is_left():
    assert step_amount(0.0, 0.5) == 0.5
    assert step_amount(0.5, 0.75) == pytest.approx(0.5)
    assert step_amount(0.6, 0.5) == 0.0
    assert step_count(zeros=10, total=100, target=0.3) == 20


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 2, 1, "exp"), "curve='exp' is not supported"),
        ((-1, None, 1, "cubic"), "start_epoch=-1 must be >= 0"),
        ((3, 1, 1, "cubic"), "end_epoch=1 is before start_epoch=3"),
        ((0, 2, 0, "cubic"), "every_n_epochs=0 must be >= 1"),
    ],
)
def test_schedule_errors(args, match):
    with pytest.raises(ValueError, match=match):
        validate_schedule(*args)
