"""``Predictor``: batch inference with ``Trainer.predict`` from a checkpoint or an ONNX export.

The model comes from a file, not from YAML architecture settings: a checkpoint (PyTorch,
``weights_only=True``), a run folder (its newest ``last.ckpt``), a folder of versions, or an
export folder (ONNX Runtime on the manifest's artifact, often faster on a CPU). Outputs are the
server's: ``probabilities`` + ``label``, ``values``, or next-token ``log_probs``. With a
``PredictionWriter`` it skips the batches an interrupted run already wrote.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from nl_lightning.export.inputs import batch_input
from nl_lightning.predict.writer import batch_written
from nl_lightning.serve.config import Backend, OnnxFormat, Task
from nl_lightning.serve.registry import ModelRegistry
from nl_lightning.serve.runners import Runner, TorchRunner, load_runner


class Predictor(L.LightningModule):
    """A trained model for ``Trainer.predict``: a checkpoint (PyTorch) or an export folder (ONNX Runtime).

    Loads the model from a file the way the server does, so a batch job and the server compute the
    same function of raw features; pair it with :class:`~nl_lightning.callbacks.PredictionWriter`.
    """

    def __init__(
        self,
        source: str = "runs/classifier",
        version: str | None = None,
        backend: Backend = "auto",
        onnx_format: OnnxFormat = "auto",
        task: Task = "auto",
        threads: int | None = None,
    ) -> None:
        """
        Args:
            source: a checkpoint, a run folder, a folder of versions, or an export folder.
            version: which version of a folder of versions (None = the newest).
            backend: ``torch``, ``onnx`` or ``auto`` (a checkpoint if there is one, else the export).
            onnx_format: the manifest's artifact; ``auto`` = optimized, then fp32, then INT8.
            task: needed only for exports that do not record it.
            threads: ONNX Runtime intra-op threads (None = its default).
        """
        super().__init__()
        self.source, self.version, self.backend, self.onnx_format = source, version, backend, onnx_format
        self.task, self.threads = task, threads
        self.runner: Runner | None = None
        self.model: nn.Module | None = None

    def setup(self, stage: str) -> None:
        """Load the model on every rank (not in ``__init__``: parsing a config must not need the file)."""
        if self.runner is not None:
            return
        source = ModelRegistry(self.source, self.backend, self.onnx_format).source(self.version)
        self.runner = load_runner(source, "cpu", self.threads, self.task)
        if isinstance(self.runner, TorchRunner):
            self.model = self.runner.model  # a submodule: Lightning moves it to the device

    def forward(self, x: Tensor) -> Tensor:
        if self.model is not None:
            return self.model(x)
        return torch.from_numpy(self.runner.forward(x.cpu().numpy()))

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor] | None:
        if batch_written(self.trainer, batch_idx, dataloader_idx):
            return None  # written by an earlier run: no need to run the model again
        return self.runner.signature.outputs(self(batch_input(batch)))
