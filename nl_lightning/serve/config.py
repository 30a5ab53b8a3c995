"""``ServeConfig``: everything ``nl-lightning serve`` reads from YAML, validated with messages that fix it.

Secrets never live here: the YAML names the *environment variables* that hold the keys
(``admin_key_env``), so a config can be committed to a repository as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from nl_lightning.errors import ConfigError

Backend = Literal["auto", "torch", "onnx"]
OnnxFormat = Literal["auto", "onnx", "onnx_optimized", "onnx_int8_dynamic", "onnx_int8_static"]
Task = Literal["auto", "lm", "classification", "regression"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


@dataclass
class ServeLimits:
    """Per-request bounds checked in the HTTP process, before a request reaches a worker."""

    max_new_tokens: int = 256
    """Most tokens one LM request may ask for."""
    default_new_tokens: int = 64
    """``max_new_tokens`` of an LM request that does not set it."""
    max_temperature: float = 2.0
    default_temperature: float = 0.8
    default_top_k: int | None = 40
    max_prompt_tokens: int | None = None
    """Longest LM prompt in tokens (bytes of text); None = the model's ``max_seq_len``."""
    max_seq_len: int | None = None
    """Longest classifier / regressor input; None = the model's ``max_seq_len`` (an export of a model
    without a position limit, ``position: none`` or ``alibi``, records none: set it then)."""
    max_batch_rows: int = 1024
    """Most rows one ``/batch_predict`` request may send."""
    max_stop: int = 4
    """Most ``stop`` strings one generation request may give (OpenAI's limit)."""

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "default_new_tokens", "max_batch_rows", "max_stop"):
            _positive(f"limits.{name}", getattr(self, name))
        if self.default_new_tokens > self.max_new_tokens:
            raise ConfigError(
                f"limits.default_new_tokens={self.default_new_tokens} exceeds limits.max_new_tokens="
                f"{self.max_new_tokens}; lower the default or raise the limit."
            )
        if not 0.0 <= self.default_temperature <= self.max_temperature:
            raise ConfigError(
                f"limits.default_temperature={self.default_temperature} must lie in [0, max_temperature="
                f"{self.max_temperature}]."
            )
        if self.default_top_k is not None:
            _positive("limits.default_top_k", self.default_top_k)
        for name in ("max_prompt_tokens", "max_seq_len"):
            if getattr(self, name) is not None:
                _positive(f"limits.{name}", getattr(self, name))


@dataclass
class ServeConfig:
    """One model (all its versions) behind LitServe; see ``configs/serve.yaml`` for every field."""

    model_dir: str = "models/classifier"
    """A folder of versions (one sub-folder or ``.ckpt`` per version, e.g. ``1/``, ``2/``), or one
    checkpoint / run folder / export folder served as a single version."""
    version: str | None = None
    """Version to start with; None = the newest (natural order: 2 < 10)."""
    backend: Backend = "auto"
    """``torch`` (a checkpoint, ``weights_only=True``), ``onnx`` (an export folder's manifest), or
    ``auto``: a checkpoint if the version has one, else its export."""
    onnx_format: OnnxFormat = "auto"
    """Which artifact of the export manifest: ``auto`` = optimized, then fp32, then INT8."""
    task: Task = "auto"
    """``auto`` reads it from the checkpoint (or the manifest); set it for exports that do not record it."""
    labels: list[str] | None = None
    """Class names, one per class, returned as ``label_name``."""
    model_name: str | None = None
    """The model id ``/v1/models`` lists and OpenAI requests name (LMs); None = the name of ``model_dir``."""
    host: str = "127.0.0.1"
    port: int = 8000
    accelerator: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    devices: int | Literal["auto"] = "auto"
    workers_per_device: int = 1
    num_api_servers: int | None = None
    """HTTP server processes; None = one per inference worker (LitServe's default)."""
    threads: int = 1
    """Intra-op threads per inference worker (torch and ONNX Runtime)."""
    max_batch_size: int = 8
    """Most requests one model batch holds; for LMs, most generations decoded together per worker."""
    batch_timeout: float = 0.005
    """Seconds a worker may wait to fill a batch while the server is busy; it never waits when its
    queue is empty (a lone request runs at once)."""
    rows_per_forward: int = 128
    """Rows of one ``/batch_predict`` request run through the model together (measured on the
    ``configs/classifier.yaml`` model on a CPU: 64 and 128 rows per forward beat 256 by 15-25% per row)."""
    timeout: float = 30.0
    """Seconds a request may wait in the queue before it gets a 504."""
    max_payload_size: str | int = "1MB"
    """Largest request body, e.g. ``"1MB"``, ``"512KiB"`` or a byte count; larger ones get a 413."""
    limits: ServeLimits = field(default_factory=ServeLimits)
    admin_key_env: str = "NL_SERVE_ADMIN_KEY"
    """Environment variable holding the admin key (``X-Admin-Key`` header); unset = admin routes off.
    Predict, /health, /info and /metrics use LitServe's own key, ``LIT_SERVER_API_KEY`` (``X-API-Key``)."""
    reload_timeout: float = 120.0
    """Seconds ``/admin/reload`` waits for every worker to load the new version."""
    shutdown_timeout: float = 10.0
    """Seconds the HTTP servers get to finish in-flight requests on SIGINT / SIGTERM."""
    cors_origins: list[str] = field(default_factory=list)
    """Browser origins allowed to call the server (CORS), e.g. ``["https://app.example.com"]``; empty = CORS off."""
    log_level: LogLevel = "warning"
    trust: list[str] = field(default_factory=list)
    """Your own model classes a checkpoint may name, e.g. ``[mypkg.models.MyModel]`` (importable by
    the server: installed or on PYTHONPATH); nl_lightning's own models need no entry. Only the
    classes listed here are imported, never one a file names on its own (``models/trust.py``, which
    checks the entries when a checkpoint is loaded)."""

    def __post_init__(self) -> None:
        if isinstance(self.limits, dict):
            self.limits = ServeLimits(**self.limits)
        if not 1024 <= self.port <= 65535:
            raise ConfigError(f"port={self.port} must be in [1024, 65535] (ports below 1024 need root).")
        if self.host not in ("127.0.0.1", "0.0.0.0", "::"):
            raise ConfigError(
                f"host={self.host!r}: LitServe binds '127.0.0.1' (this machine only, the default), '0.0.0.0' "
                "or '::' (every interface: put it behind a proxy and set LIT_SERVER_API_KEY)."
            )
        for name in ("workers_per_device", "threads", "max_batch_size", "rows_per_forward"):
            _positive(name, getattr(self, name))
        if self.num_api_servers is not None:
            _positive("num_api_servers", self.num_api_servers)
        if self.batch_timeout < 0 or self.batch_timeout >= self.timeout:
            raise ConfigError(
                f"batch_timeout={self.batch_timeout} must be >= 0 and below timeout={self.timeout} (seconds)."
            )
        for name in ("reload_timeout", "shutdown_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be > 0 seconds.")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"labels={self.labels} has duplicates; give one distinct name per class.")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.admin_key_env):
            raise ConfigError(
                f"admin_key_env={self.admin_key_env!r} must be the NAME of an environment variable (the key "
                "itself never goes in the YAML), e.g. NL_SERVE_ADMIN_KEY."
            )
        self.max_payload_bytes  # validates the size string
        for origin in self.cors_origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ConfigError(
                    f"cors_origins entry {origin!r} is not an origin; write scheme://host[:port] with no path, e.g. "
                    "https://app.example.com (or '*' for any origin)."
                )

    @property
    def max_payload_bytes(self) -> int:
        return parse_size(self.max_payload_size, "max_payload_size")


def parse_size(value: str | int, name: str) -> int:
    """``"1MB"`` -> 1_000_000, ``"512KiB"`` -> 524_288, ``4096`` -> 4096."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _SIZE.match(str(value))
        if match is None:
            raise ConfigError(f"{name}={value!r} is not a size; write e.g. 1MB, 512KiB, 2GB or a byte count.")
        size = int(float(match.group(1)) * _UNITS[(match.group(2) or "B").lower()])
    if size < 1:
        raise ConfigError(f"{name}={value!r} must be at least 1 byte.")
    return size


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer.")
