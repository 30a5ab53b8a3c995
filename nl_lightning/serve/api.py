"""``ModelAPI``: the LitServe ``LitAPI`` for any nl_lightning model (LM, classifier, regressor).

Requests arrive validated (``schemas``, in the HTTP process) as plain dicts; the worker turns them
into arrays, runs them in batches (``tasks.answer``) on the live version (``hot_swap``) and
answers each with its outputs and the version that computed them. A model failure on one request
is a 500 for that request only, with its request id; the worker keeps serving.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import litserve as ls
import numpy as np
from fastapi.responses import JSONResponse

from nl_lightning.export.signature import ModelSignature
from nl_lightning.serve.errors import error_body
from nl_lightning.serve.hot_swap import LiveModel
from nl_lightning.serve.metrics import process_metrics
from nl_lightning.serve.registry import ModelRegistry
from nl_lightning.serve.rollout import Rollout
from nl_lightning.serve.runners import Runner, load_runner
from nl_lightning.serve.tasks import Item, ModelOutputError, answer


@dataclass(frozen=True)
class WorkerPlan:
    """What a worker needs to load versions; plain values, pickled into each spawned worker."""

    model_dir: str
    state_dir: str
    contract: ModelSignature
    backend: str = "auto"
    onnx_format: str = "auto"
    task: str = "auto"
    labels: tuple[str, ...] | None = None
    threads: int = 1
    trust: tuple[str, ...] = ()
    """Class paths a checkpoint may name besides the allow-list (``ServeConfig.trust``)."""


class ModelAPI(ls.LitAPI):
    """The LitServe ``LitAPI`` of ``nl-lightning serve``: requests (validated in the HTTP process) run
    in batches on the live model version in each worker, and each answer names that version; a
    model failure is a 500 for that request only."""

    def __init__(self, plan: WorkerPlan, max_batch_size: int = 8, batch_timeout: float = 0.005) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/predict")
        self.plan = plan
        self.batch_info: dict[str, Any] = {}
        self.live: LiveModel | None = None

    # ---- worker start-up ---------------------------------------------------------------------
    def setup(self, device: str) -> None:
        import torch

        torch.set_num_threads(self.plan.threads)
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [worker %(process)d] %(message)s")
        registry = ModelRegistry(self.plan.model_dir, self.plan.backend, self.plan.onnx_format)

        def load(version: str) -> Runner:
            return load_runner(registry.source(version), device, self.plan.threads, self.plan.task, self.plan.trust)

        worker = int(os.environ.get("LITSERVE_WORKER_ID", "0"))
        self.live = LiveModel(Rollout(self.plan.state_dir), load, worker, self.plan.contract, self._count_version)
        self.live.start()

    @staticmethod
    def _count_version(previous: Runner | None, runner: Runner) -> None:
        gauge = process_metrics().model_version
        if previous is not None:
            gauge.labels(previous.version, previous.backend).set(0)
        gauge.labels(runner.version, runner.backend).set(1)

    # ---- per request / per batch -------------------------------------------------------------
    def decode_request(self, request: dict[str, Any], **kwargs: Any) -> Item:
        if self.plan.contract.task == "lm":
            from nl_lightning.data.text import encode  # LM servers only (it imports Lightning)

            ids = request["tokens"] if request.get("tokens") is not None else encode(request["prompt"]).tolist()
            return Item(np.asarray(ids, dtype=np.int64), request.get("request_id"), request["max_new_tokens"],
                        float(request["temperature"]), request["top_k"], request["seed"])
        if "tokens" in request:
            return Item(np.asarray(request["tokens"], dtype=np.int64), request.get("request_id"))
        return Item(np.asarray(request["features"], dtype=np.float32), request.get("request_id"))

    def batch(self, inputs: list[Item]) -> list[Item]:
        return list(inputs)  # requests of different lengths are grouped in predict, not stacked here

    def predict(self, items: list[Item] | Item, **kwargs: Any) -> Any:
        single = isinstance(items, Item)  # max_batch_size=1 runs LitServe's unbatched loop
        batch = [items] if single else items
        with self.live.use() as runner:
            results = answer(runner, batch)
        errors = sum(isinstance(r, Exception) for r in results)
        self.batch_info = {"version": runner.version, "size": len(batch), "errors": errors}
        outputs = [(runner.version, item.request_id, result) for item, result in zip(batch, results)]
        return outputs[0] if single else outputs

    def unbatch(self, output: list[Any]) -> list[Any]:
        return output

    def encode_response(self, output: tuple[str, str | None, Any], **kwargs: Any) -> Any:
        version, request_id, result = output
        if isinstance(result, Exception):
            reason = str(result) if isinstance(result, ModelOutputError) else type(result).__name__
            detail = f"The model failed on this input ({reason}); it is logged with request id {request_id}."
            return JSONResponse(error_body(detail, request_id, version=version), status_code=500)
        return {**self._task_response(result), "version": version}

    def _task_response(self, result: dict[str, Any]) -> dict[str, Any]:
        task = self.plan.contract.task
        if task == "lm":
            from nl_lightning.data.text import decode

            tokens = result["tokens"]
            text = decode(tokens) if self.plan.contract.vocab_size >= 256 else None
            return {"text": text, "tokens": tokens}
        if task == "regression":
            return {"values": result["values"]}
        response = {"probabilities": result["probabilities"], "label": result["label"]}
        if self.plan.labels:
            response["label_name"] = self.plan.labels[result["label"]]
        return response

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "live": None}  # threads and models stay in their worker
