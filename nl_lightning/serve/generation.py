"""``GenerateAPI``: an LM's inference worker, decoding every running generation together.

It speaks LitServe's continuous-batching contract (``ContinuousBatchingLoop``, run here as
``DecodeLoop``): ``add_request`` queues a generation, ``step`` admits queued ones into the
decoder as rows free up (``BatchDecoder``: each prefilled alone, then one shared forward per
token), drops those whose client went away (``Cancellations``), and returns one event per
running generation. Events are what ``GenerateSpec`` turns into ``/predict`` answers and OpenAI
completions: ``{"text", "tokens"}`` per token (text through ``TextStream``: pieces that add up to
the whole answer), then ``{"finish_reason", "prompt_tokens", "completion_tokens", "version"}``.

A generation runs wholly on the version that started it: after a reload, new ones start on the new
version while the old decoder finishes its own.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from litserve.loops import Output
from litserve.utils import LitAPIStatus

from nl_lightning.serve.api import ModelAPI
from nl_lightning.serve.cancel import Cancellations
from nl_lightning.serve.metrics import process_metrics
from nl_lightning.serve.runners import Runner
from nl_lightning.serve.schemas import text_codec
from nl_lightning.serve.textstream import TextStream

logger = logging.getLogger(__name__)


@dataclass
class Generation:
    """One running request: where its text stands, and its counts."""

    uid: str
    request_id: str | None
    version: str
    prompt_tokens: int
    text: TextStream | None
    made: int = 0


class GenerateAPI(ModelAPI):
    """LM requests decoded together (see the module docstring)."""

    def setup(self, device: str) -> None:
        """Load the model (``ModelAPI``) and start with no generation."""
        super().setup(device)
        self.waiting: deque[tuple[str, dict[str, Any]]] = deque()  # appended by the loop's event-loop thread
        self.running: dict[str, Generation] = {}
        self.decoders: dict[int, tuple[Runner, Any]] = {}
        self.cancels = Cancellations(self.plan.state_dir)

    # ---- LitServe's continuous-batching hooks --------------------------------------------------
    def add_request(self, uid: str, request: dict[str, Any]) -> None:
        """Queue a generation (called from the loop's event-loop thread; ``step`` admits it)."""
        self.waiting.append((uid, request))

    def has_capacity(self) -> bool:
        """Room for this worker's running generations plus as many waiting for a row."""
        return len(self.running) + len(self.waiting) < 2 * self.max_batch_size

    def has_active_requests(self) -> bool:
        """Generations running or waiting for a row."""
        return bool(self.running or self.waiting)

    def step(self, prev_outputs: Any = None) -> list[Output]:
        """One token for every running generation; admissions and cancellations first."""
        outputs: list[Output] = []
        try:
            with self.live.use() as runner:
                self._drop_cancelled(outputs)
                self._admit(runner, outputs)
                for key, (owner, decoder) in list(self.decoders.items()):
                    if len(decoder):
                        self._advance(owner, decoder, outputs)
                    elif owner is not runner:
                        del self.decoders[key]  # a reload: the old version's last generation finished
        except Exception:  # a bug: LitServe fails every request it tracks and forgets them; so do we
            self.running.clear()
            self.waiting.clear()
            self.decoders.clear()
            raise
        return outputs

    def encode_response(self, output: Any, **kwargs: Any) -> Any:
        """Events are plain dicts already (LitServe writes them as JSON lines)."""
        return output

    # ---- the decode cycle ----------------------------------------------------------------------
    def _decoder(self, runner: Runner) -> Any:
        if id(runner) not in self.decoders:
            self.decoders[id(runner)] = (runner, runner.decoder(self.max_batch_size))
        return self.decoders[id(runner)][1]

    def _admit(self, runner: Runner, outputs: list[Output]) -> None:
        from nl_lightning.models.batch_decode import DecodeRequest

        decoder = self._decoder(runner)
        while self.waiting and decoder.free:
            uid, r = self.waiting.popleft()
            codec = text_codec(self.plan.contract, runner.codec)
            stops = frozenset() if runner.codec is None or runner.codec.eos_id is None else {runner.codec.eos_id}
            try:
                decoder.add(uid, DecodeRequest(r["tokens"], r["max_new_tokens"], r["temperature"], r["top_k"],
                                               r["top_p"], r["seed"], frozenset(stops)))
            except Exception as err:  # a model failure on this prompt (prefill): its request fails alone
                logger.exception("Model %s failed on request %s", runner.version, r.get("request_id"))
                outputs += _failed(uid, runner.version, err)
                continue
            text = TextStream(codec, r["stop"]) if codec is not None else None
            self.running[uid] = Generation(uid, r.get("request_id"), runner.version, len(r["tokens"]), text)

    def _advance(self, runner: Runner, decoder: Any, outputs: list[Output]) -> None:
        started = time.perf_counter()
        try:
            events = decoder.step()
        except Exception as err:  # the model failed mid-batch: its generations end, the worker lives
            logger.exception("Model %s failed while decoding %s", runner.version, list(self.running))
            for uid in [u for u, g in self.running.items() if g.version == runner.version and u in decoder]:
                decoder.remove(uid)
                del self.running[uid]
                outputs += _failed(uid, runner.version, err)
            return
        metrics = process_metrics()
        metrics.inference.labels(runner.version).observe(time.perf_counter() - started)
        metrics.batch_size.observe(len(events))
        for event in events:
            outputs += self._emit(self.running[event.key], event.token, event.finish, decoder)

    def _emit(self, g: Generation, token: int, finish: str | None, decoder: Any) -> list[Output]:
        tokens: list[int] = []
        piece: str | None = "" if g.text is not None else None  # None: a vocabulary without text
        if finish != "stop":  # a stop token is not part of the answer
            g.made += 1
            tokens = [token]
            piece = g.text.push(token) if g.text is not None else None
            if g.text is not None and g.text.stopped:  # a stop string: the answer ends before it
                finish = "stop"
                decoder.remove(g.uid)
        if finish is None:
            return [Output(g.uid, {"text": piece, "tokens": tokens}, LitAPIStatus.OK)]
        del self.running[g.uid]
        last = {"text": None if g.text is None else piece + g.text.finish(), "tokens": tokens, "finish_reason": finish, "prompt_tokens": g.prompt_tokens,
                "completion_tokens": g.made, "version": g.version}
        return [Output(g.uid, last, LitAPIStatus.OK), Output(g.uid, "", LitAPIStatus.FINISH_STREAMING)]

    def _drop_cancelled(self, outputs: list[Output]) -> None:
        for uid in self.cancels.take(self.running):
            for _, decoder in self.decoders.values():
                decoder.remove(uid)
            self.running.pop(uid)
            outputs.append(Output(uid, "", LitAPIStatus.FINISH_STREAMING))  # nobody listens; frees LitServe's slot


def _failed(uid: str, version: str, err: Exception) -> list[Output]:
    event = {"error": f"The model failed on this request ({type(err).__name__}).", "version": version}
    return [Output(uid, event, LitAPIStatus.OK), Output(uid, "", LitAPIStatus.FINISH_STREAMING)]
