"""Backends that run one model version: PyTorch (a checkpoint) or ONNX Runtime (an export artifact).

Both take and return NumPy arrays and compute the same function: the model's raw outputs
(classifier logits / regression values, LM logits), with whatever input normalization the model
holds inside it. Nothing here normalizes inputs: that belongs to the model, so the checkpoint,
its ONNX export and both backends agree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from nl_lightning._io import file_sha256
from nl_lightning.errors import ConfigError, WrongTypeError
from nl_lightning.export.signature import ModelSignature, signature_from_manifest, signature_of
from nl_lightning.serve.registry import ModelSource

if TYPE_CHECKING:  # nl_lightning.models / .data import Lightning; batch jobs on ONNX need none of it
    from nl_lightning.data.tokenizer import TextCodec
    from nl_lightning.models.batch_decode import BatchDecoder, SequentialDecoder


class Runner(ABC):
    """A loaded version: ``forward`` for classifiers / regressors / LM logits, ``generate`` and
    ``decoder`` for LMs, and the LM's ``codec`` (its tokenizer, or the byte vocabulary).

    The interface of ``TorchRunner`` and ``OnnxRunner``; the server and batch jobs use only this."""

    backend: str
    source: ModelSource
    signature: ModelSignature
    sha256: str
    codec: TextCodec | None = None
    """The LM's text codec (None for classifiers / regressors)."""

    @property
    def version(self) -> str:
        return self.source.version

    @abstractmethod
    def forward(self, x: np.ndarray) -> np.ndarray:
        """(B, T) ids or (B, T, F) / (B, F) features -> (B, C) outputs, or (B, T, V) LM logits; float32."""

    @abstractmethod
    def generate(self, idx: np.ndarray, max_new_tokens: int, temperature: float, top_k: int | None,
                 seed: int | None = None) -> np.ndarray:
        """(B, T) prompt ids -> (B, max_new_tokens) sampled ids (``temperature=0`` is greedy)."""

    def decoder(self, capacity: int) -> BatchDecoder | SequentialDecoder:
        """A decoder for up to ``capacity`` concurrent generations on this version (LMs only)."""
        raise WrongTypeError(f"Version {self.version!r} is a {self.signature.task} model; only LMs generate.")

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "backend": self.backend, "path": str(self.source.path),
                "sha256": self.sha256, "onnx_format": self.source.onnx_format, "export_manifest": self.source.manifest}


class TorchRunner(Runner):
    """An nl_lightning ``TaskModule`` from ``load_checkpoint`` (``torch.load(weights_only=True)``)."""

    backend = "torch"

    def __init__(self, source: ModelSource, device: str = "cpu", task: str = "auto", trust: Sequence[str] = ()) -> None:
        from nl_lightning.models.checkpoint import load_checkpoint

        self.source, self.device = source, torch.device(device)
        model = load_checkpoint(source.path, map_location="cpu", merge_lora=True, trust=trust)
        self.model = model.eval().to(self.device)
        # a task module without a ``task`` (distillation) classifies
        self.signature = signature_of(self.model, default_task="classification")
        if task != "auto" and task != self.signature.task:
            raise ConfigError(f"task={task!r} contradicts the checkpoint {source.path}, a {self.signature.task} model.")
        self.sha256 = file_sha256(source.path)
        if self.signature.task == "lm":
            from nl_lightning.data.tokenizer import BYTES

            self.codec = getattr(self.model, "codec", None) or BYTES

    def decoder(self, capacity: int) -> BatchDecoder:
        from nl_lightning.models.batch_decode import BatchDecoder

        return BatchDecoder(self.model.model, capacity)

    @torch.inference_mode()
    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(x).to(self.device)).float().cpu().numpy()

    def generate(self, idx: np.ndarray, max_new_tokens: int, temperature: float, top_k: int | None,
                 seed: int | None = None) -> np.ndarray:
        from nl_lightning.models.generate import generate

        generator = None if seed is None else torch.Generator(self.device).manual_seed(seed)
        prompt = torch.from_numpy(idx).to(self.device)
        out = generate(self.model.model, prompt, max_new_tokens, temperature, top_k, generator)
        return out[:, idx.shape[1]:].cpu().numpy()


class OnnxRunner(Runner):
    """An ONNX Runtime session on the artifact the export manifest names (fp32, optimized or INT8)."""

    backend = "onnx"

    def __init__(self, source: ModelSource, threads: int | None = 1, task: str = "auto") -> None:
        from nl_lightning.export.ort import ort_session

        if source.manifest is None:
            raise ConfigError(f"Version {source.version!r}: an ONNX source needs its export manifest.")
        self.source = source
        self.session = ort_session(source.path, threads=threads)
        self.input_name = self.session.get_inputs()[0].name
        self.signature = signature_from_manifest(source.manifest, self._num_outputs(), task)
        recorded = [f.get("sha256") for a in source.manifest.get("artifacts", []) for f in a["files"]
                     if source.path.name == Path(f["path"]).name]
        self.sha256 = recorded[0] if recorded and recorded[0] else file_sha256(source.path)
        if self.signature.task == "lm":
            self.codec = _exported_codec(source)

    def decoder(self, capacity: int) -> SequentialDecoder:
        """The graph has no KV cache to share: each generation re-runs it over its own window."""
        from nl_lightning.models.batch_decode import SequentialDecoder

        return SequentialDecoder(_OnnxCausalLM(self, self.signature.max_seq_len or 1 << 30), capacity)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0].astype(np.float32, copy=False)

    def generate(self, idx: np.ndarray, max_new_tokens: int, temperature: float, top_k: int | None,
                 seed: int | None = None) -> np.ndarray:
        """The same sampling loop as the PyTorch backend (``nl_lightning.models.generate``), driving
        the graph through :class:`_OnnxCausalLM`, so both backends decode alike past the window too."""
        from nl_lightning.models.generate import generate

        generator = None if seed is None else torch.Generator().manual_seed(seed)
        window = self.signature.max_seq_len or idx.shape[1] + max_new_tokens
        out = generate(_OnnxCausalLM(self, window), torch.from_numpy(idx), max_new_tokens, temperature, top_k, generator)
        return out[:, idx.shape[1]:].numpy()

    def _num_outputs(self) -> int:
        size = self.session.get_outputs()[0].shape[-1]
        if isinstance(size, int):
            return size
        spec = self.source.manifest["input"]
        probe = (np.zeros((1, 1), np.int64) if spec.get("feature_dim") is None
                 else np.zeros((1, 1, spec["feature_dim"]), np.float32))
        return int(self.forward(probe).shape[-1])


class _TokenCache:
    """Stands in for one layer's KV cache: the token ids it would hold (the graph has no cache)."""

    def __init__(self, max_len: int) -> None:
        self.max_len, self.tokens = max_len, None

    @property
    def length(self) -> int:
        return 0 if self.tokens is None else self.tokens.shape[1]

    def reset(self) -> None:
        self.tokens = None


class _OnnxCausalLM:
    """What ``generate`` calls on a ``CausalLM`` (``config.max_seq_len``, ``transformer.new_kv_caches``,
    ``model(idx, kv_caches)``), on an ONNX graph: each call re-runs the graph over every token the
    cache would hold and returns the logits of the new positions."""

    def __init__(self, runner: OnnxRunner, max_seq_len: int) -> None:
        self.runner, self.config, self.transformer = runner, SimpleNamespace(max_seq_len=max_seq_len), self

    def new_kv_caches(self, batch_size: int, max_len: int) -> list[_TokenCache]:
        return [_TokenCache(max_len)]

    def __call__(self, idx: torch.Tensor, kv_caches: list[_TokenCache] | None = None) -> torch.Tensor:
        if kv_caches is None:
            return torch.from_numpy(self.runner.forward(idx.numpy()))
        cache = kv_caches[0]
        cache.tokens = idx if cache.tokens is None else torch.cat([cache.tokens, idx], dim=1)
        return torch.from_numpy(self.runner.forward(cache.tokens.numpy()))[:, -idx.shape[1]:]


def _exported_codec(source: ModelSource) -> TextCodec:
    """The tokenizer an LM export carries beside its graph (``manifest["tokenizer"]``), else the bytes."""
    from nl_lightning.data.tokenizer import BYTES, load_codec

    files = ((source.manifest or {}).get("tokenizer") or {}).get("files") or []
    if not files:
        return BYTES
    return load_codec(source.path.parent / Path(files[0]["path"]).parent)


def load_runner(source: ModelSource, device: str = "cpu", threads: int | None = 1, task: str = "auto",
                trust: Sequence[str] = ()) -> Runner:
    """The runner of ``source``'s backend; ``trust``: class paths a checkpoint may name besides the
    allow-list (the ``trust:`` setting, ``models/trust.py``)."""
    if source.backend == "torch":
        return TorchRunner(source, device, task, trust)
    if not str(device).startswith("cpu"):
        raise ConfigError(f"The ONNX backend runs on the CPU here; got device={device!r}. Use backend='torch'.")
    return OnnxRunner(source, threads, task)
