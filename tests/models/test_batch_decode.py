"""BatchDecoder: sequences of different lengths decoded together give what ``generate`` gives each alone."""

from __future__ import annotations

import pytest
import torch

from nl_lightning.models import CausalLM, generate
from nl_lightning.models.batch_decode import BatchDecoder, DecodeRequest, SequentialDecoder, decode_all
from nl_lightning.nn import POSITIONS


def alone(model: CausalLM, request: DecodeRequest) -> list[int]:
    """One-at-a-time reference: ``generate`` on this prompt only, cut after its first stop token."""
    generator = None if request.seed is None else torch.Generator().manual_seed(request.seed)
    out = generate(model, torch.tensor([list(request.prompt)]), request.max_new_tokens, request.temperature,
                   request.top_k, generator, top_p=request.top_p)[0, len(request.prompt):].tolist()
    for i, token in enumerate(out):
        if token in request.stop_ids:
            return out[:i]
    return out


@pytest.fixture
def model(tiny_config, seed):
    def make(**config) -> CausalLM:
        return CausalLM(tiny_config(**{"vocab_size": 64, "max_seq_len": 16, "d_model": 32, **config})).eval()

    return make


def prompts(lengths: list[int], seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 64, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("n_kv_heads", [4, 1])
def test_batched_greedy_equals_one_at_a_time(model, position, n_kv_heads):
    """Prompts of 1 to 20 tokens (past the 16-token window) and lengths that cross it: every row
    is re-filled at its own step, and rows join as others finish (capacity 3 < 6 requests)."""
    lm = model(position=position, n_kv_heads=n_kv_heads)
    requests = [DecodeRequest(p, n) for p, n in zip(prompts([3, 1, 9, 15, 20, 6]), [12, 30, 5, 9, 4, 25])]
    got = decode_all(BatchDecoder(lm, capacity=3), enumerate(requests))
    assert [got[i] for i in range(len(requests))] == [alone(lm, r) for r in requests]


def test_seeded_samples_do_not_depend_on_the_batch(model):
    lm = model(position="rope")
    requests = [DecodeRequest(p, 10, temperature=1.0, top_k=20, top_p=0.9, seed=i)
                for i, p in enumerate(prompts([4, 7, 2]))]
    together = decode_all(BatchDecoder(lm, capacity=3), enumerate(requests))
    assert [together[i] for i in range(3)] == [alone(lm, r) for r in requests]
    assert together[0] != decode_all(BatchDecoder(lm, 1), [(0, DecodeRequest(requests[0].prompt, 10, 1.0, 20, 0.9, 5))])[0]


def test_a_stop_token_ends_its_sequence_only(model):
    lm = model()
    free = decode_all(BatchDecoder(lm, 2), [(0, DecodeRequest(prompts([5])[0], 12))])[0]
    stop = free[4]
    requests = [DecodeRequest(prompts([5])[0], 12, stop_ids=frozenset({stop})), DecodeRequest(prompts([3], 2)[0], 12)]
    decoder = BatchDecoder(lm, 2)
    for i, r in enumerate(requests):
        decoder.add(i, r)
    finishes = {}
    while len(decoder):
        for event in decoder.step():
            if event.finish:
                finishes[event.key] = (event.finish, event.token)
    assert finishes[0] == ("stop", stop) and finishes[1][0] == "length"
    assert decode_all(BatchDecoder(lm, 2), enumerate(requests))[0] == free[: free.index(stop)]


def test_a_removed_sequence_frees_its_row_and_a_new_one_joins(model):
    lm = model()
    requests = [DecodeRequest(p, 20) for p in prompts([4, 6, 3])]
    decoder = BatchDecoder(lm, capacity=2)
    decoder.add("a", requests[0])
    decoder.add("b", requests[1])
    answers = {"a": [], "b": [], "c": []}
    for _ in range(3):
        for e in decoder.step():
            answers[e.key].append(e.token)
    assert decoder.free == 0
    decoder.remove("a")
    assert decoder.free == 1 and "a" not in decoder
    decoder.add("c", requests[2])
    while len(decoder):
        for e in decoder.step():
            answers[e.key].append(e.token)
    assert answers["b"] == alone(lm, requests[1]) and answers["c"] == alone(lm, requests[2])
    assert answers["a"] == alone(lm, requests[0])[:3]


def test_sequential_decoder_gives_the_same_answers(model):
    lm = model(position="alibi")
    requests = [DecodeRequest(p, n) for p, n in zip(prompts([2, 18, 5]), [20, 3, 7])]
    got = decode_all(SequentialDecoder(lm, capacity=2), enumerate(requests))
    assert [got[i] for i in range(3)] == [alone(lm, r) for r in requests]


@pytest.mark.parametrize("kwargs, message", [
    ({"prompt": [], "max_new_tokens": 3}, "needs a non-empty prompt"),
    ({"prompt": [1], "max_new_tokens": 0}, "max_new_tokens=0 must be >= 1"),
    ({"prompt": [1], "max_new_tokens": 2, "top_p": 1.5}, r"top_p=1.5 must be in \(0, 1\]"),
    ({"prompt": [1], "max_new_tokens": 2, "temperature": -1.0}, "temperature=-1.0 must be >= 0"),
])
def test_bad_requests_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DecodeRequest(**kwargs)


def test_a_full_decoder_refuses_more(model):
    decoder = BatchDecoder(model(), capacity=1)
    decoder.add(0, DecodeRequest([1, 2], 3))
    with pytest.raises(ValueError, match="already being decoded"):
        decoder.add(0, DecodeRequest([1], 3))
    with pytest.raises(ValueError, match="The decoder is full"):
        decoder.add(1, DecodeRequest([1], 3))


def test_the_position_mask_keeps_a_sliding_window():
    """Models with sliding-window attention (Mistral) see only the last `window` keys, row by row."""
    from nl_lightning.models.transformer import _position_mask

    mask = _position_mask(torch.tensor([[1], [4]]), 5, None, torch.float32, window=3)[:, 0, 0]
    assert mask.tolist() == [[True, True, False, False, False], [False, False, True, True, True]]
    assert _position_mask(torch.tensor([[4]]), 5, None, torch.float32)[0, 0, 0].all()


def test_batched_greedy_equals_one_at_a_time_with_a_sliding_window(model):
    """A Mistral-style model (RoPE, GQA, ``sliding_window`` 5 < max_seq_len 16): rows at different
    lengths keep their own window, inside and past the 16-token context, as ``generate`` does alone."""
    lm = model(position="rope", n_kv_heads=2, sliding_window=5)
    requests = [DecodeRequest(p, n) for p, n in zip(prompts([2, 7, 13, 18], seed=3), [20, 9, 6, 14])]
    got = decode_all(BatchDecoder(lm, capacity=2), enumerate(requests))
    expected = [alone(lm, r) for r in requests]
    assert [got[i] for i in range(len(requests))] == expected
    full = model(position="rope", n_kv_heads=2)
    full.load_state_dict(lm.state_dict())
    assert expected != [alone(full, r) for r in requests]  # the same weights without the window differ
