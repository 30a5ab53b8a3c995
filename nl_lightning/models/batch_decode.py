"""``BatchDecoder``: several generations share one ``CausalLM``, each at its own length (continuous batching).

Each sequence is prefilled alone (its prompt, at positions 0..P-1) and copied into a row of a
``RaggedKVCache``; then every ``step`` samples one token per sequence and runs one forward for all
of them, each row at its own position (``Transformer.forward(positions=...)``), so no row is padded
and none waits for another. A sequence leaves the batch when it samples one of its stop tokens or
reaches its ``max_new_tokens`` (or when the caller removes it); a new one may join between any two
steps. A row whose cache reaches ``max_seq_len`` is re-filled from its last ``keep`` tokens, as
``generate`` does, so each sequence gets exactly the tokens ``generate`` gives it alone (greedy:
token for token; sampled: the same draws from its own seeded generator).

``SequentialDecoder`` has the same interface for models without a shared cache (an ONNX graph
behind ``generate``'s model protocol): it advances each sequence's own ``generate_tokens``.
No Lightning and no serving import: the server drives either decoder from its worker.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from nl_lightning.errors import ConfigError
from nl_lightning.models.generate import check_sampling, generate_tokens, sample_next, window_keep
from nl_lightning.nn.kv_cache import RaggedKVCache

__all__ = ["BatchDecoder", "DecodeEvent", "DecodeRequest", "SequentialDecoder"]

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class DecodeRequest:
    """One generation: its prompt ids, length and sampling settings, and the ids that end it."""

    prompt: Sequence[int]
    max_new_tokens: int
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    """Seeds this sequence's own generator: its samples do not depend on its batch neighbours."""
    stop_ids: frozenset[int] = frozenset()
    """Token ids that end the sequence (an end-of-text token); the stop token is not part of the answer."""

    def __post_init__(self) -> None:
        if not self.prompt:
            raise ConfigError("A generation needs a non-empty prompt.")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={self.max_new_tokens} must be >= 1.")
        check_sampling(self.temperature, self.top_k, self.top_p)


@dataclass(frozen=True)
class DecodeEvent:
    """One sampled token of sequence ``key``; ``finish`` is set on its last event: ``"stop"`` when
    ``token`` is one of its stop ids (not part of the answer), ``"length"`` at ``max_new_tokens``."""

    key: Hashable
    token: int
    finish: FinishReason | None = None


@dataclass
class _Sequence:
    key: Hashable
    request: DecodeRequest
    tokens: list[int]
    generator: torch.Generator | None
    logits: Tensor | None = None
    made: int = 0
    steps: Iterator[Tensor] | None = field(default=None, repr=False)

    def sample(self) -> DecodeEvent:
        """The next token from the logits of the last forward."""
        r = self.request
        return self.record(int(sample_next(self.logits[None], r.temperature, r.top_k, self.generator, r.top_p)))

    def record(self, token: int) -> DecodeEvent:
        """Append ``token``; the event says whether it ends the sequence."""
        self.made += 1
        self.tokens.append(token)
        finish: FinishReason | None = "stop" if token in self.request.stop_ids else None
        if finish is None and self.made == self.request.max_new_tokens:
            finish = "length"
        return DecodeEvent(self.key, token, finish)


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    return None if seed is None else torch.Generator(device).manual_seed(seed)


class _Decoder:
    """What both decoders share: up to ``capacity`` sequences, in ``rows``."""

    def __init__(self, model: Any, capacity: int, keep: int | None = None) -> None:
        if capacity < 1:
            raise ConfigError(f"capacity={capacity} must be >= 1.")
        self.model, self.capacity, self.keep = model, capacity, keep
        self.rows: list[_Sequence] = []

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, key: Hashable) -> bool:
        return any(s.key == key for s in self.rows)

    @property
    def free(self) -> int:
        """Sequences that can still join."""
        return self.capacity - len(self.rows)

    def _check_join(self, key: Hashable) -> None:
        if key in self:
            raise ConfigError(f"Sequence {key!r} is already being decoded.")
        if not self.free:
            raise ConfigError(f"The decoder is full ({len(self.rows)} sequences); wait for one to finish.")


class BatchDecoder(_Decoder):
    """Decode up to ``capacity`` sequences of ``model`` together (see the module docstring)."""

    def __init__(self, model: Any, capacity: int, keep: int | None = None) -> None:
        """``model``: a ``CausalLM`` in eval mode; ``keep``: tokens a full row is re-filled from
        (default half of ``max_seq_len``, as ``generate``)."""
        super().__init__(model, capacity, keep)
        self.window, self.keep = window_keep(model, keep)
        config, weight = model.config, next(model.parameters())
        # one spare position: a full row takes its step token there before it is re-filled (see step)
        self.caches = [RaggedKVCache(capacity, config.n_kv_heads, self.window + 1, config.head_dim, weight.device,
                                     weight.dtype) for _ in range(config.n_layers)]
        self.device = weight.device

    @torch.inference_mode()
    def add(self, key: Hashable, request: DecodeRequest) -> None:
        """Prefill ``request`` now; its first token comes from the next ``step``."""
        self._check_join(key)
        sequence = _Sequence(key, request, list(request.prompt), _generator(request.seed, self.device))
        kv, sequence.logits = self._prefill(sequence.tokens[-self.window:])
        for cache, (k, v) in zip(self.caches, kv):
            cache.add(k, v)
        self.rows.append(sequence)

    def remove(self, key: Hashable) -> None:
        """Drop sequence ``key`` (a cancelled request); unknown keys are ignored."""
        for row, sequence in enumerate(self.rows):
            if sequence.key == key:
                self._drop(row)
                return

    @torch.inference_mode()
    def step(self) -> list[DecodeEvent]:
        """One token for every sequence (in row order); finished ones leave, the rest advance."""
        events = [s.sample() for s in self.rows]
        for row in reversed(range(len(self.rows))):
            if events[row].finish is not None:
                self._drop(row)
        if not self.rows:
            return events
        lengths = self.caches[0].lengths
        full = [row for row, length in enumerate(lengths) if length >= self.window]
        # One forward for every row, each at its own position. A full row takes its token in the one
        # spare slot at position 0 (its output is discarded) and is then re-filled, as in `generate`,
        # from its last `keep` tokens, the new one included.
        tokens = torch.tensor([[s.tokens[-1]] for s in self.rows], device=self.device)
        positions = torch.tensor([[0 if n >= self.window else n] for n in lengths], device=self.device)
        logits = self.model(tokens, kv_caches=self.caches, positions=positions)[:, -1]
        for sequence, row_logits in zip(self.rows, logits):
            sequence.logits = row_logits
        for row in full:
            sequence = self.rows[row]
            kv, sequence.logits = self._prefill(sequence.tokens[-self.keep:])
            for cache, (k, v) in zip(self.caches, kv):
                cache.load(row, k, v)
        return events

    def _prefill(self, tokens: list[int]) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
        """Keys and values of ``tokens`` at positions 0..n-1 (one per layer) and the next-token logits."""
        temp = self.model.transformer.new_kv_caches(1, len(tokens))
        logits = self.model(torch.tensor([tokens], device=self.device), kv_caches=temp)[0, -1]
        return [(c.k[0], c.v[0]) for c in temp], logits

    def _drop(self, row: int) -> None:
        for cache in self.caches:
            cache.remove(row)
        last = self.rows.pop()
        if row < len(self.rows):
            self.rows[row] = last


class SequentialDecoder(_Decoder):
    """``BatchDecoder``'s interface for a model without a shared cache: each sequence advances its own
    ``generate_tokens`` (one forward per sequence and step), so output equals ``generate``'s too."""

    def add(self, key: Hashable, request: DecodeRequest) -> None:
        """Start ``request`` (its prefill runs with its first ``step``)."""
        self._check_join(key)
        r = request
        sequence = _Sequence(key, r, list(r.prompt), _generator(r.seed, torch.device("cpu")))
        prompt = torch.tensor([list(r.prompt)])
        sequence.steps = generate_tokens(self.model, prompt, r.max_new_tokens, r.temperature, r.top_k,
                                         sequence.generator, self.keep, r.top_p)
        self.rows.append(sequence)

    def remove(self, key: Hashable) -> None:
        """Drop sequence ``key``; unknown keys are ignored."""
        self.rows = [s for s in self.rows if s.key != key]

    def step(self) -> list[DecodeEvent]:
        """One token for every sequence, in row order; finished ones leave."""
        events = []
        for sequence in list(self.rows):
            events.append(sequence.record(int(next(sequence.steps))))
            if events[-1].finish is not None:
                self.rows.remove(sequence)
        return events


def decode_all(decoder: BatchDecoder | SequentialDecoder, requests: Iterable[tuple[Hashable, DecodeRequest]]
               ) -> dict[Hashable, list[int]]:
    """Run ``requests`` to the end (joining as rows free up); each key's answer tokens (stop token excluded)."""
    waiting, answers = list(requests), {}
    while waiting or len(decoder):
        while waiting and decoder.free:
            key, request = waiting.pop(0)
            decoder.add(key, request)
            answers[key] = []
        for event in decoder.step():
            if event.finish != "stop":
                answers[event.key].append(event.token)
    return answers
