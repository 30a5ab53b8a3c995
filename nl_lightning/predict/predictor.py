"""``Predictor``: batch inference with ``Trainer.predict`` from a checkpoint or an ONNX export.

The model comes from a file, not from YAML architecture settings: a checkpoint (PyTorch,
``weights_only=True``), a run folder (its newest ``last.ckpt``), a folder of versions, or an
export folder (ONNX Runtime on the manifest's artifact, often faster on a CPU). Outputs are the
server's: ``probabilities`` + ``label``, ``values``, or next-token ``log_probs``. With a
``PredictionWriter`` it skips the batches an interrupted run already wrote.

Inputs are held to the server's rules (``ModelSignature.input_problems``: shape, ``max_seq_len``,
token range, finite features), and a row the model answers with NaN or Inf (the server's 500) is
an error naming the input rows, not a row of NaN probabilities: a batch job has no client to
retry, so its output must never hold answers the server would have refused to give. The shards
written before stay, and a resume (after fixing those rows) continues from them.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from nl_lightning.errors import DataError
from nl_lightning.export.inputs import batch_input
from nl_lightning.predict.writer import batch_written, row_ids
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
        trust: list[str] | None = None,
    ) -> None:
        """
        Args:
            source: a checkpoint, a run folder, a folder of versions, or an export folder.
            version: which version of a folder of versions (None = the newest).
            backend: ``torch``, ``onnx`` or ``auto`` (a checkpoint if there is one, else the export).
            onnx_format: the manifest's artifact; ``auto`` = optimized, then fp32, then INT8.
            task: needed only for exports that do not record it.
            threads: ONNX Runtime intra-op threads (None = its default).
            trust: your own model classes the checkpoint may name, e.g. ``[mypkg.models.MyModel]``
                (``nl-lightning predict --trust [...]`` sets it; see ``models/trust.py``).
        """
        super().__init__()
        self.source, self.version, self.backend, self.onnx_format = source, version, backend, onnx_format
        self.task, self.threads, self.trust = task, threads, list(trust or [])
        self.runner: Runner | None = None
        self.model: nn.Module | None = None

    def setup(self, stage: str) -> None:
        """Load the model on every rank (not in ``__init__``: parsing a config must not need the file)."""
        if self.runner is not None:
            return
        source = ModelRegistry(self.source, self.backend, self.onnx_format).source(self.version)
        self.runner = load_runner(source, "cpu", self.threads, self.task, self.trust)
        if isinstance(self.runner, TorchRunner):
            self.model = self.runner.model  # a submodule: Lightning moves it to the device

    def prediction_identity(self) -> dict[str, Any]:
        """What a resumed job must match (``predict/identity.py``): the backend, the artifact, the task
        and the SHA-256 of the file that answers (not its path: a moved file is the same model)."""
        source = self.runner.source
        return {"class": "nl_lightning.predict.Predictor", "backend": self.runner.backend,
                "onnx_format": source.onnx_format, "task": self.runner.signature.task,
                "model_sha256": self.runner.sha256}

    def forward(self, x: Tensor) -> Tensor:
        if self.model is not None:
            return self.model(x)
        return torch.from_numpy(self.runner.forward(x.cpu().numpy()))

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor] | None:
        if batch_written(self.trainer, batch_idx, dataloader_idx):
            return None  # written by an earlier run: no need to run the model again
        x = batch_input(batch)
        self._refuse(batch, batch_idx, dataloader_idx, self.runner.signature.input_problems(x), "the server answers 422")
        outputs = self.runner.signature.outputs(self(x))
        finite = torch.stack([torch.isfinite(v.float()).reshape(len(v), -1).all(1) for v in outputs.values()]).all(0)
        problems = dict.fromkeys(torch.nonzero(~finite).flatten().tolist(), "the model returned NaN or Inf")
        self._refuse(batch, batch_idx, dataloader_idx, problems, "the server answers 500")
        return outputs

    def _refuse(self, batch: Any, batch_idx: int, dataloader_idx: int, problems: dict[int, str], server: str) -> None:
        if not problems:
            return
        ids = row_ids(self.trainer, batch, self.trainer.predict_loop.current_batch_indices, batch_idx, dataloader_idx)
        by_reason: dict[str, list[int]] = {}
        for i, why in problems.items():
            by_reason.setdefault(why, []).append(int(ids[i]))
        shown = "; ".join(f"{why} (input rows {', '.join(map(str, rows[:5]))}{' ...' if len(rows) > 5 else ''})"
                          for why, rows in by_reason.items())
        raise DataError(
            f"Cannot predict {len(problems)} input row(s) of batch {batch_idx}: {shown}; {server} for such inputs. "
            "Fix or drop those rows (FileDataModule's on_bad: drop drops NaN rows) and run again; the shards written "
            "so far are kept."
        )
