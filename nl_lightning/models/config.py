"""``TransformerConfig``: the serializable description of a model, with named presets.

Only plain values live here (strings for choices), so the config round-trips through YAML,
LightningCLI and ``save_hyperparameters``. Every field is checked in ``__post_init__`` and each
error names the field, the value received and what to use instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from nl_lightning.errors import ConfigError, WrongTypeError
from nl_lightning.nn.attention import ATTN_BACKENDS
from nl_lightning.nn.mlp import GELU_APPROXIMATIONS, MLPS
from nl_lightning.nn.norm import NORMS
from nl_lightning.nn.position import POSITIONS
from nl_lightning.nn.rope_scaling import validate_rope_scaling


@dataclass
class TransformerConfig:
    """Architecture of an encoder (``causal=False``) or a causal decoder (``causal=True``)."""

    vocab_size: int = 256
    """Token vocabulary (256 = bytes). Ignored when ``input_dim`` is set."""
    input_dim: int | None = None
    """Feature size of continuous inputs (B, T, input_dim); None means token ids."""
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    n_kv_heads: int | None = None
    """Key/value heads: None = n_heads (MHA), 1 = MQA, a divisor of n_heads = GQA."""
    head_dim: int | None = None
    """Size of one attention head; None = d_model // n_heads. Set when the heads do not span d_model,
    e.g. after ``prune_structured`` removed heads (fewer heads, same head size)."""
    mlp_hidden: int | None = None
    """MLP width; None = 4 * d_model (gelu) or 8/3 * d_model (gated), rounded to 32."""
    max_seq_len: int = 256
    position: Literal["rope", "alibi", "learned", "none"] = "rope"
    rope_base: float = 10000.0
    mlp: Literal["gelu", "swiglu", "geglu"] = "gelu"
    norm: Literal["rmsnorm", "layernorm"] = "layernorm"
    norm_eps: float = 1e-5
    norm_style: Literal["pre", "post"] = "pre"
    causal: bool | None = None
    """None = the task's default: causal for language models, bidirectional for classifiers."""
    attn_backend: Literal["auto", "flash", "efficient", "math", "naive"] = "auto"
    dropout: float = 0.0
    attn_dropout: float = 0.0
    drop_path: float = 0.0
    """Stochastic depth rate of the last layer; earlier layers get a linear schedule from 0."""
    layer_scale: float | None = None
    """Initial LayerScale gain; None disables LayerScale."""
    bias: bool = True
    """Bias on the linear layers of every block (qkv_bias / mlp_bias override it for theirs)."""
    tie_embeddings: bool = False
    qkv_bias: bool | None = None
    """Bias on the query/key/value projections; None = ``bias`` (Qwen2: True, with bias=False)."""
    mlp_bias: bool | None = None
    """Bias on the MLP's linear layers; None = ``bias``."""
    gelu_approximate: Literal["none", "tanh"] = "none"
    """GELU of mlp='gelu' / 'geglu': exact (erf) or the tanh approximation (GPT-2's gelu_new)."""
    rope_scaling: dict[str, Any] | None = None
    """RoPE frequency scaling: None, {type: linear, factor} or {type: llama3, factor, low_freq_factor,
    high_freq_factor, original_max_seq_len} (see ``nl_lightning.nn.rope_scaling``)."""
    sliding_window: int | None = None
    """Causal attention sees only the last ``sliding_window`` positions (Mistral); None = all."""
    type_vocab_size: int = 0
    """Token-type (segment) embeddings added to the tokens, type 0 by default (BERT: 2); 0 = none."""
    embed_norm: bool = False
    """A norm (of kind ``norm``) right after the embeddings (BERT)."""

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        explicit_head_dim = self.head_dim is not None
        _choice("position", self.position, POSITIONS)
        _choice("mlp", self.mlp, tuple(MLPS))
        _choice("norm", self.norm, tuple(NORMS))
        _choice("norm_style", self.norm_style, ("pre", "post"))
        _choice("attn_backend", self.attn_backend, ATTN_BACKENDS)
        for name in ("vocab_size", "n_layers", "d_model", "n_heads", "n_kv_heads", "max_seq_len"):
            _positive(name, getattr(self, name))
        if self.input_dim is not None:
            _positive("input_dim", self.input_dim)
        if self.mlp_hidden is not None:
            _positive("mlp_hidden", self.mlp_hidden)
        if explicit_head_dim:
            _positive("head_dim", self.head_dim)
        elif self.d_model % self.n_heads:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0 and h <= 64]
            raise ConfigError(
                f"TransformerConfig.n_heads={self.n_heads} must divide d_model={self.d_model}; "
                f"use one of {divisors} or change d_model (or set head_dim)."
            )
        else:
            self.head_dim = self.d_model // self.n_heads
        if self.n_heads % self.n_kv_heads:
            divisors = [h for h in range(1, self.n_heads + 1) if self.n_heads % h == 0]
            raise ConfigError(
                f"TransformerConfig.n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads}; "
                f"use one of {divisors} (1 = multi-query, {self.n_heads} = multi-head)."
            )
        if self.position == "rope" and self.head_dim % 2:
            raise ConfigError(
                f"TransformerConfig.position='rope' needs an even head size, got "
                f"{'head_dim' if explicit_head_dim else 'd_model/n_heads'}={self.head_dim}; change d_model, n_heads "
                f"or head_dim."
            )
        for name in ("dropout", "attn_dropout", "drop_path"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"TransformerConfig.{name}={value} must be in [0, 1).")
        if self.rope_base <= 0:
            raise ConfigError(f"TransformerConfig.rope_base={self.rope_base} must be > 0 (10000 is usual).")
        if self.tie_embeddings and self.input_dim is not None:
            raise ConfigError(
                "TransformerConfig.tie_embeddings=True needs token inputs; set input_dim=None or tie_embeddings=False."
            )
        self._check_pretrained_fields()

    def _check_pretrained_fields(self) -> None:
        """The fields published architectures need (biases, GELU variant, RoPE scaling, sliding window,
        token types, embedding norm): each checked alone and against the choices it depends on."""
        for name in ("qkv_bias", "mlp_bias"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise ConfigError(f"TransformerConfig.{name}={getattr(self, name)!r} must be true, false or null (= bias).")
        _choice("gelu_approximate", self.gelu_approximate, GELU_APPROXIMATIONS)
        if self.gelu_approximate != "none" and self.mlp not in ("gelu", "geglu"):
            raise ConfigError(
                f"TransformerConfig.gelu_approximate={self.gelu_approximate!r} applies to mlp='gelu' or 'geglu', "
                f"not mlp={self.mlp!r}; set gelu_approximate='none'."
            )
        validate_rope_scaling(self.rope_scaling)
        if self.rope_scaling is not None and self.position != "rope":
            raise ConfigError(
                f"TransformerConfig.rope_scaling is set but position={self.position!r}; it needs position='rope' "
                "(or set rope_scaling=None)."
            )
        if self.sliding_window is not None:
            _positive("sliding_window", self.sliding_window)
            if self.causal is False:
                raise ConfigError(
                    f"TransformerConfig.sliding_window={self.sliding_window} needs causal attention; set causal=true "
                    "or sliding_window=null."
                )
        if isinstance(self.type_vocab_size, bool) or not isinstance(self.type_vocab_size, int) or self.type_vocab_size < 0:
            raise ConfigError(f"TransformerConfig.type_vocab_size={self.type_vocab_size!r} must be an integer >= 0 (0 = none).")
        if self.type_vocab_size and self.input_dim is not None:
            raise ConfigError(
                f"TransformerConfig.type_vocab_size={self.type_vocab_size} needs token inputs; set input_dim=None "
                "or type_vocab_size=0."
            )
        if not isinstance(self.embed_norm, bool):
            raise ConfigError(f"TransformerConfig.embed_norm={self.embed_norm!r} must be true or false.")

    def resolved(self, **task_defaults: Any) -> "TransformerConfig":
        """A copy with the task's defaults in every field left unset (None); set fields are kept."""
        unset = {k: v for k, v in task_defaults.items() if getattr(self, k) is None}
        return replace(self, **unset) if unset else self

    def to_dict(self) -> dict[str, Any]:
        """Plain values; ``head_dim`` only where it differs from ``d_model // n_heads`` (as in a pruned
        model), so the configs and checkpoints of every other model read as they did before the field."""
        values = asdict(self)
        if self.n_heads * self.head_dim == self.d_model:
            del values["head_dim"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TransformerConfig":
        """Build from a mapping, rejecting unknown keys with the list of valid ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"Unknown TransformerConfig key(s) {unknown}; valid keys are {sorted(known)}.")
        return cls(**values)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "TransformerConfig":
        """A named preset (see :data:`PRESETS`), optionally with fields overridden.

        >>> config = TransformerConfig.from_preset("llama", n_layers=2)
        >>> config.n_layers, config.n_kv_heads, config.position, config.norm
        (2, 2, 'rope', 'rmsnorm')
        """
        if name not in PRESETS:
            raise ConfigError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
        return cls.from_dict({**PRESETS[name], **overrides})


#: Named configurations for :meth:`TransformerConfig.from_preset`: ``tiny``, ``llama`` and ``bert``.
PRESETS: dict[str, dict[str, Any]] = {
    # Small enough to train on two CPU cores in minutes.
    "tiny": dict(n_layers=2, d_model=128, n_heads=4, max_seq_len=256),
    # Llama-style decoder: RMSNorm, SwiGLU, RoPE, grouped-query attention, no biases.
    "llama": dict(
        n_layers=4, d_model=256, n_heads=8, n_kv_heads=2, max_seq_len=512, position="rope",
        mlp="swiglu", norm="rmsnorm", norm_style="pre", bias=False, causal=True,
    ),
    # BERT-style encoder: learned positions, GELU MLP, post-LN, bidirectional.
    "bert": dict(
        n_layers=4, d_model=256, n_heads=4, max_seq_len=512, position="learned",
        mlp="gelu", norm="layernorm", norm_style="post", causal=False, dropout=0.1,
    ),
}


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"TransformerConfig.{name}={value!r} is not supported; choose one of {allowed}.")


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"TransformerConfig.{name}={value!r} must be a positive integer.")


def as_config(config: "TransformerConfig | dict[str, Any] | None", **task_defaults: Any) -> TransformerConfig:
    """Accept a config, a plain dict (as stored in checkpoints) or None (the 'tiny' preset); the
    task's defaults fill every field the user left unset, whichever form the config came in."""
    if config is None:
        config = TransformerConfig.from_preset("tiny")
    elif isinstance(config, dict):
        config = TransformerConfig.from_dict(config)
    elif not isinstance(config, TransformerConfig):
        raise WrongTypeError(f"Expected a TransformerConfig or a dict, got {type(config).__name__}.")
    return config.resolved(**task_defaults)
