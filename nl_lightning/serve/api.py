"""``ModelAPI``: the LitServe ``LitAPI`` of one model, and ``PredictAPI``, the one of classifiers and regressors.

``ModelAPI`` holds what every inference worker does: load the live version (``hot_swap``) and
follow reloads, die with the server (``PR_SET_PDEATHSIG``: a SIGKILLed server leaves no worker on
the port), and check LitServe's API key in its ``authorize`` hook (constant time, on the event
loop: LitServe's default check is a plain ``!=`` in a sync function FastAPI runs in a thread pool).

``PredictAPI`` answers ``/predict`` (one input) and ``/batch_predict`` (many rows) requests from
``PredictSpec``: a LitServe batch of requests runs as model batches (``tasks.answer``), and each
request's answer is written to JSON here, in the worker, so the HTTP process only forwards bytes.
A model failure on one input is a 500 for that request only, with its request id; the worker keeps
serving. LMs have ``GenerateAPI`` (``serve.generation``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import litserve as ls
import numpy as np
from fastapi import Security

from nl_lightning._io import bytes_sha256
from nl_lightning._process import die_with_parent
from nl_lightning.errors import ConfigError
from nl_lightning.export.signature import ModelSignature
from nl_lightning.serve.auth import API_KEY, ApiKey
from nl_lightning.serve.errors import error_body
from nl_lightning.serve.heap import freeze_startup_objects
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
    tokenizer_sha256: str | None = None
    """The served LM's tokenizer (and chat template): a version with another one is refused."""
    server_pid: int | None = None
    """The ``nl-lightning serve`` process: the worker dies with it."""
    rows_per_forward: int = 128


def tokenizer_identity(runner: Runner) -> str | None:
    """SHA-256 of an LM's stored tokenizer (what the HTTP processes encode prompts with)."""
    stored = runner.codec.to_checkpoint() if runner.codec is not None else None
    return None if stored is None else bytes_sha256(stored.encode())


class ModelAPI(ls.LitAPI):
    """Loading, following reloads and the API key; subclasses handle requests."""

    def __init__(self, plan: WorkerPlan, spec: ls.specs.base.LitSpec | None = None, **litapi: Any) -> None:
        super().__init__(spec=spec, **litapi)
        self.plan = plan
        self.batch_info: dict[str, Any] = {}
        self.live: LiveModel | None = None
        self.api_key = ApiKey()

    async def authorize(self, x_api_key: str | None = Security(API_KEY)) -> None:
        """LitServe's key (``LIT_SERVER_API_KEY``) on every route of the server, compared in constant time."""
        self.api_key.check(x_api_key)

    def health(self) -> bool:
        """LitServe's ``/health`` hook (HTTP process): not ready while every worker is down, even before
        LitServe's monitor (every 2 s) notices and restarts it."""
        return self.spec is None or not self.spec.workers.none_alive()

    # ---- worker start-up ---------------------------------------------------------------------
    def setup(self, device: str) -> None:
        import torch

        if self.plan.server_pid is not None:
            die_with_parent(self.plan.server_pid)
        torch.set_num_threads(self.plan.threads)
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [worker %(process)d] %(message)s")
        registry = ModelRegistry(self.plan.model_dir, self.plan.backend, self.plan.onnx_format)

        def load(version: str) -> Runner:
            return self._checked(load_runner(registry.source(version), device, self.plan.threads, self.plan.task,
                                           self.plan.trust))

        worker = int(os.environ.get("LITSERVE_WORKER_ID", "0"))
        self.live = LiveModel(Rollout(self.plan.state_dir), load, worker, self.plan.contract, self._count_version)
        self.live.start()
        freeze_startup_objects()  # torch and the model: out of every later collection (serve/heap.py)

    def _checked(self, runner: Runner) -> Runner:
        if tokenizer_identity(runner) != self.plan.tokenizer_sha256:
            raise ConfigError(
                f"version {runner.version!r} has another tokenizer or chat template than the one this server encodes "
                "prompts with; serve it from a server of its own"
            )
        return runner

    @staticmethod
    def _count_version(previous: Runner | None, runner: Runner) -> None:
        gauge = process_metrics().model_version
        if previous is not None:
            gauge.labels(previous.version, previous.backend).set(0)
        gauge.labels(runner.version, runner.backend).set(1)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "live": None}  # threads and models stay in their worker


@dataclass
class Job:
    """One request in a worker: ``/predict`` (one item) or ``/batch_predict`` (many)."""

    items: list[Item]
    request_id: str | None
    batch: bool


class PredictAPI(ModelAPI):
    """Classifier / regressor requests in batches (see the module docstring)."""

    def decode_request(self, request: dict[str, Any], **kwargs: Any) -> Job:
        rid = request.get("request_id")
        if "rows" in request:  # an array already (``predict_spec``)
            return Job([Item(x, rid) for x in request["rows"]], rid, batch=True)
        return Job([Item(np.asarray(request["x"], dtype=input_dtype(self.plan.contract)), rid)], rid, batch=False)

    def batch(self, inputs: list[Job]) -> list[Job]:
        return list(inputs)  # rows of different lengths are grouped in predict, not stacked here

    def predict(self, jobs: list[Job] | Job, **kwargs: Any) -> Any:
        single = isinstance(jobs, Job)  # max_batch_size=1 runs LitServe's unbatched loop
        jobs = [jobs] if single else jobs
        items = [item for job in jobs for item in job.items]
        with self.live.use() as runner:
            results = answer(runner, items, self.plan.rows_per_forward)
        errors = sum(isinstance(r, Exception) for r in results)
        self.batch_info = {"version": runner.version, "size": len(jobs), "errors": errors}
        outputs, start = [], 0
        for job in jobs:
            outputs.append((runner.version, job, results[start:start + len(job.items)]))
            start += len(job.items)
        return outputs[0] if single else outputs

    def unbatch(self, output: list[Any]) -> list[Any]:
        return output

    def encode_response(self, output: tuple[str, Job, list[Any]], **kwargs: Any) -> tuple[int, bytes]:
        """(HTTP status, JSON body): written here so the HTTP process only forwards it."""
        version, job, results = output
        failed = next(((i, r) for i, r in enumerate(results) if isinstance(r, Exception)), None)
        if failed is not None:
            where = f"row {failed[0]}" if job.batch else "this input"
            reason = str(failed[1]) if isinstance(failed[1], ModelOutputError) else type(failed[1]).__name__
            detail = f"The model failed on {where} ({reason}); it is logged with request id {job.request_id}."
            return 500, json.dumps(error_body(detail, job.request_id, version=version)).encode()
        answers = [self._task_response(r) for r in results]
        body = {"predictions": answers} if job.batch else answers[0]
        return 200, json.dumps({**body, "version": version}).encode()

    def _task_response(self, result: dict[str, Any]) -> dict[str, Any]:
        if self.plan.contract.task == "regression":
            return {"values": result["values"]}
        response = {"probabilities": result["probabilities"], "label": result["label"]}
        if self.plan.labels:
            response["label_name"] = self.plan.labels[result["label"]]
        return response


def input_dtype(signature: ModelSignature) -> type[np.generic]:
    """The NumPy type of a model's validated input: token ids or float32 features."""
    return np.int64 if signature.inputs == "tokens" else np.float32
