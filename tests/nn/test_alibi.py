"""ALiBi slopes against the paper's reference construction, and the bias values."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from nl_lightning.nn import ALiBi, alibi_bias, alibi_slopes


def paper_slopes(n: int) -> list[float]:
    """``get_slopes`` from the ALiBi paper's code (ofirpress/attention_with_linear_biases)."""

    def get_slopes_power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        ratio = start
        return [start * ratio**i for i in range(n)]

    if math.log2(n).is_integer():
        return get_slopes_power_of_2(n)
    closest_power_of_2 = 2 ** math.floor(math.log2(n))
    return get_slopes_power_of_2(closest_power_of_2) + paper_slopes(2 * closest_power_of_2)[0::2][: n - closest_power_of_2]


@pytest.mark.parametrize("n_heads", [1, 2, 4, 8, 16, 32])
def test_power_of_two_slopes_are_geometric(n_heads):
    expected = torch.tensor([2.0 ** (-8.0 * i / n_heads) for i in range(1, n_heads + 1)])
    assert_close(alibi_slopes(n_heads), expected)


@pytest.mark.parametrize("n_heads", [1, 2, 3, 5, 6, 7, 8, 12, 20, 24, 40])
def test_slopes_match_paper_reference(n_heads):
    assert_close(alibi_slopes(n_heads), torch.tensor(paper_slopes(n_heads), dtype=torch.float32))


def test_slopes_reject_zero_heads():
    with pytest.raises(ValueError, match=r"alibi_slopes needs n_heads >= 1, got 0"):
        alibi_slopes(0)


@pytest.mark.parametrize("t_q, t_k", [(5, 5), (1, 6), (3, 7)])
def test_bias_is_minus_slope_times_distance(t_q, t_k):
    slopes = alibi_slopes(4)
    bias = alibi_bias(slopes, t_q, t_k)
    assert bias.shape == (4, t_q, t_k)
    for h in range(4):
        for qi in range(t_q):
            i = t_k - t_q + qi  # queries are the last t_q positions
            for j in range(t_k):
                assert bias[h, qi, j].item() == pytest.approx(-slopes[h].item() * abs(i - j))


def test_module_adds_a_batch_dim_and_matches_function():
    bias = ALiBi(6)(2, 5)
    assert bias.shape == (1, 6, 2, 5)
    assert torch.equal(bias[0], alibi_bias(alibi_slopes(6), 2, 5))


def test_causal_softmax_equals_paper_implementation(seed):
    """The paper adds slope * j (key position only); under a causal mask each row differs by a
    constant, so the attention probabilities are the same as with -slope * (i - j)."""
    H, T = 6, 7
    scores = torch.randn(H, T, T)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    ours = (scores + alibi_bias(alibi_slopes(H), T, T)).masked_fill(future, -math.inf).softmax(-1)
    paper_bias = torch.tensor(paper_slopes(H))[:, None, None] * torch.arange(T)[None, None, :]
    theirs = (scores + paper_bias).masked_fill(future, -math.inf).softmax(-1)
    assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
