"""KV-cached decoding against full forwards, greedy/top-k/seeded sampling, and errors."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from nl_lightning.models import CausalLM, generate
from nl_lightning.models.generate import sample_next
from nl_lightning.nn import POSITIONS


@pytest.fixture
def lm(tiny_config, seed) -> CausalLM:
    return CausalLM(tiny_config(n_kv_heads=2)).eval()


@pytest.mark.parametrize("chunks", [(1,) * 10, (4, 1, 1, 1, 3), (7, 3), (10,)], ids=str)
@pytest.mark.parametrize("norm_style", ["pre", "post"])
@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("position", POSITIONS)
def test_incremental_decoding_equals_full_forward(position, n_kv_heads, norm_style, chunks, tiny_config, seed):
    model = CausalLM(tiny_config(position=position, n_kv_heads=n_kv_heads, norm_style=norm_style)).eval()
    idx = torch.randint(0, 32, (2, sum(chunks)))
    with torch.no_grad():
        full = model(idx)
        caches = model.transformer.new_kv_caches(2, idx.size(1))
        pieces, start = [], 0
        for size in chunks:
            pieces.append(model(idx[:, start : start + size], kv_caches=caches))
            start += size
    assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)
    assert [c.length for c in caches] == [idx.size(1)] * len(caches)


@pytest.mark.parametrize("position", ["rope", "alibi", "none"])
def test_decoding_past_max_seq_len_matches_full_forward(position, tiny_config, seed):
    """RoPE, ALiBi and no positions have no length limit: the cache may outgrow max_seq_len."""
    model = CausalLM(tiny_config(position=position, max_seq_len=8)).eval()
    idx = torch.randint(0, 32, (1, 12))
    with torch.no_grad():
        caches = model.transformer.new_kv_caches(1, 12)
        steps = [model(idx[:, :6], kv_caches=caches)] + [model(idx[:, t : t + 1], kv_caches=caches) for t in range(6, 12)]
        assert_close(torch.cat(steps, dim=1), model(idx), atol=1e-5, rtol=1e-5)


def _greedy_by_full_forwards(model: CausalLM, idx: torch.Tensor, n: int) -> torch.Tensor:
    with torch.no_grad():
        for _ in range(n):
            idx = torch.cat([idx, model(idx)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


@pytest.mark.parametrize("position", POSITIONS)
def test_temperature_zero_is_greedy_argmax(position, tiny_config, seed):
    model = CausalLM(tiny_config(position=position, n_kv_heads=1)).eval()
    prompt = torch.randint(0, 32, (3, 4))
    out = generate(model, prompt, max_new_tokens=12, temperature=0.0)
    assert out.shape == (3, 16) and torch.equal(out[:, :4], prompt)
    assert torch.equal(out, _greedy_by_full_forwards(model, prompt, 12))


def test_top_k_one_is_greedy(lm):
    prompt = torch.randint(0, 32, (2, 3))
    out = generate(lm, prompt, 8, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, _greedy_by_full_forwards(lm, prompt, 8))


def test_top_k_restricts_generated_tokens(lm):
    prompt = torch.randint(0, 32, (4, 3))
    out = generate(lm, prompt, 10, temperature=2.0, top_k=3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for t in range(3, out.size(1)):
            allowed = lm(out[:, :t])[:, -1].topk(3).indices  # (B, 3)
            assert (allowed == out[:, t : t + 1]).any(-1).all(), f"step {t} sampled outside the top 3"


def test_sample_next_top_k_support_and_coverage():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0, -1.0]]).repeat(4000, 1)
    tokens = sample_next(logits, temperature=1.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(tokens.unique().tolist()) == {1, 3}


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sample_next_follows_tempered_softmax(temperature):
    logits = torch.tensor([[1.0, 0.0, -1.0]])
    tokens = sample_next(logits.repeat(20_000, 1), temperature, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens.flatten(), minlength=3).float() / tokens.numel()
    assert_close(freq, (logits[0] / temperature).softmax(-1), atol=0.015, rtol=0)


def test_seeded_generation_is_reproducible(lm):
    prompt = torch.randint(0, 32, (2, 3))

    def sample(seed: int) -> torch.Tensor:
        return generate(lm, prompt, 16, temperature=1.0, top_k=None, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(sample(7), sample(7))
    assert not torch.equal(sample(7), sample(8))


def test_zero_new_tokens_returns_the_prompt(lm):
    prompt = torch.randint(0, 32, (2, 3))
    assert torch.equal(generate(lm, prompt, 0), prompt)


@pytest.mark.parametrize(
    "prompt, kwargs, match",
    [
        (torch.zeros(2, 0, dtype=torch.long), {}, r"non-empty prompt of shape \(batch, seq\), got \(2, 0\)"),
        (torch.zeros(5, dtype=torch.long), {}, r"non-empty prompt of shape \(batch, seq\), got \(5,\)"),
        (torch.zeros(1, 2, dtype=torch.long), dict(temperature=-0.5), r"temperature=-0.5 must be >= 0 \(0 = greedy\)"),
        (torch.zeros(1, 2, dtype=torch.long), dict(top_k=0), r"top_k=0 must be >= 1 or None"),
    ],
)
def test_generate_user_errors(lm, prompt, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(lm, prompt, 4, **kwargs)


def test_learned_positions_cache_cannot_exceed_max_seq_len(tiny_config, seed):
    model = CausalLM(tiny_config(position="learned", max_seq_len=8)).eval()
    with pytest.raises(ValueError, match=r"Decoding 10 positions exceeds max_seq_len=8 of learned positions"):
        model.transformer.new_kv_caches(1, 10)


def _greedy_windowed_by_full_forwards(model: CausalLM, idx: torch.Tensor, n: int, keep: int) -> torch.Tensor:
    """The reference: each token from a full forward over the tokens since the last re-fill, which
    happens whenever that span already holds max_seq_len tokens (it restarts at the last ``keep``)."""
    window, start = model.config.max_seq_len, max(0, idx.size(1) - model.config.max_seq_len)
    with torch.no_grad():
        for _ in range(n):
            next_token = model(idx[:, start:])[:, -1].argmax(-1, keepdim=True)
            idx = torch.cat([idx, next_token], dim=1)
            if idx.size(1) - start > window:
                start = idx.size(1) - keep
    return idx


@pytest.mark.parametrize("prompt_len", [3, 5, 8, 11])
@pytest.mark.parametrize("position", POSITIONS)
def test_generation_past_max_seq_len_refills_a_half_window(position, prompt_len, tiny_config, seed):
    """Past max_seq_len no position >= max_seq_len is ever used: the cache restarts from the last half."""
    model = CausalLM(tiny_config(position=position, max_seq_len=8)).eval()
    prompt = torch.randint(0, 32, (2, prompt_len))
    out = generate(model, prompt, max_new_tokens=21, temperature=0.0)
    assert torch.equal(out, _greedy_windowed_by_full_forwards(model, prompt, 21, keep=4))


def test_generation_past_max_seq_len_stays_incremental(tiny_config, seed):
    """One token per forward except one 4-token re-fill per 5 new tokens (window 8, keep 4): the old
    sliding window ran a full 8-token forward for every token past the window."""
    model = CausalLM(tiny_config(max_seq_len=8)).eval()
    lengths: list[int] = []
    model.transformer.register_forward_pre_hook(lambda module, args: lengths.append(args[0].size(1)))
    generate(model, torch.randint(0, 32, (1, 6)), max_new_tokens=14, temperature=0.0)
    # prefill 6; two single steps fill the cache (8); then [re-fill 4, 4 single steps]; the 14th
    # token needs no forward after it
    assert lengths == [6, 1, 1] + [4, 1, 1, 1, 1] * 2 + [4]


def test_generate_keep_must_fit_the_window(lm):
    with pytest.raises(ValueError, match=r"keep=40 must be in \[1, max_seq_len=32\]"):
        generate(lm, torch.zeros(1, 2, dtype=torch.long), 4, keep=40)


def test_cache_overflow_through_the_model(lm):
    caches = lm.transformer.new_kv_caches(1, 4)
    with torch.no_grad():
        lm(torch.zeros(1, 3, dtype=torch.long), kv_caches=caches)
        with pytest.raises(ValueError, match=r"KVCache is full: 3 cached \+ 2 new > max_len=4"):
            lm(torch.zeros(1, 2, dtype=torch.long), kv_caches=caches)


def test_compiled_decoding_is_one_graph_per_phase(tiny_config, seed):
    """generate over torch.compile(model, dynamic=True): prefill and decode each trace whole (no
    graph break, fullgraph=True), with the cache length symbolic, and give the eager tokens."""
    import torch._dynamo

    model = CausalLM(tiny_config(n_kv_heads=2)).eval()
    prompt = torch.randint(0, 32, (2, 5))
    torch._dynamo.reset()
    with torch._dynamo.config.patch(allow_unspec_int_on_nn_module=True):
        compiled = torch.compile(model, backend="eager", dynamic=True, fullgraph=True)
        assert torch.equal(generate(compiled, prompt, 6, temperature=0.0), generate(model, prompt, 6, temperature=0.0))
