"""LoRA fine-tuning of any nl_lightning model: which layers get adapters, freezing, and merging.

``LoRAConfig.targets`` names linear layers by their attribute name (or full dotted name):

- ours: ``q_proj``, ``kv_proj`` (fused key|value, one adapter over both), ``out_proj``
  (``nn/attention.py``); ``fc1`` / ``fc2`` (gelu MLP) or ``gate`` / ``up`` / ``down`` (SwiGLU, GeGLU);
- Hugging Face names as aliases: ``k_proj`` / ``v_proj`` adapt the key or value half of ``kv_proj``
  (both give it one adapter per half, as PEFT trains them), ``o_proj`` = ``out_proj``,
  ``gate_proj`` / ``up_proj`` / ``down_proj`` = ``gate`` / ``up`` / ``down``;
- ``all-linear``: every linear layer inside the transformer blocks (PEFT's shortcut).

Everything else is frozen except ``trainable`` (a classifier's new head). ``merge_lora`` folds the
adapters into the weights, leaving an ordinary model for export, serving and ``save_pretrained``.
No lightning import here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from torch import nn

from nl_lightning.errors import ConfigError
from nl_lightning.nn.lora import LoRALinear

__all__ = ["LoRAConfig", "apply_lora", "as_lora_config", "lora_parameter_counts", "merge_lora"]

ALL_LINEAR = "all-linear"
#: Hugging Face (Llama / Mistral / Qwen2) projection names -> ours.
ALIASES: dict[str, str] = {"o_proj": "out_proj", "gate_proj": "gate", "up_proj": "up", "down_proj": "down"}
#: Halves of the fused key|value projection, by index.
KV_HALVES: dict[str, int] = {"k_proj": 0, "v_proj": 1}
KV_PROJ = "kv_proj"


@dataclass
class LoRAConfig:
    """Low-rank adapters: rank ``r``, update scaled by ``alpha / r``, dropout on the adapter's input."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """Layers to adapt (see the module docstring); the LoRA paper's, PEFT's and LitGPT's default is q and v."""

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise ConfigError(f"LoRAConfig.r={self.r!r} must be a positive integer (the adapters' rank; 8 is usual).")
        if not self.alpha > 0:
            raise ConfigError(f"LoRAConfig.alpha={self.alpha!r} must be > 0 (updates are scaled by alpha / r).")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"LoRAConfig.dropout={self.dropout!r} must be in [0, 1).")
        if isinstance(self.targets, str) or not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ConfigError(
                f"LoRAConfig.targets={self.targets!r} must be a non-empty list of layer names, e.g. ['q_proj', 'v_proj'] "
                f"or ['{ALL_LINEAR}']."
            )
        self.targets = list(self.targets)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_lora_config(value: "LoRAConfig | dict[str, Any] | None") -> LoRAConfig | None:
    """A config, a plain dict (as checkpoints store it) or None (no LoRA)."""
    if value is None or isinstance(value, LoRAConfig):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(LoRAConfig.__dataclass_fields__))
        if unknown:
            known = sorted(LoRAConfig.__dataclass_fields__)
            raise ConfigError(f"Unknown LoRAConfig key(s) {unknown}; valid keys are {known}.")
        return LoRAConfig(**value)
    raise ConfigError(
        f"lora must be a LoRAConfig or a dict like {{r: 8, alpha: 16, targets: [q_proj, v_proj]}}, got {value!r}."
    )


def apply_lora(model: nn.Module, config: LoRAConfig, trainable: Sequence[str] = ()) -> list[str]:
    """Wrap the target layers of ``model`` in :class:`LoRALinear` and freeze every parameter but the
    adapters and the modules named in ``trainable``. Returns the names of the adapted layers."""
    plan = _plan(model, config)
    for name, (rows, parts) in plan.items():
        parent, _, attr = name.rpartition(".")
        base = model.get_submodule(name)
        setattr(model.get_submodule(parent) if parent else model, attr,
                LoRALinear(base, config.r, config.alpha, config.dropout, rows, parts))
    for name, param in model.named_parameters():
        param.requires_grad_(name.rpartition(".")[2] in ("lora_a", "lora_b") or _under(name, trainable))
    return list(plan)


def merge_lora(model: nn.Module) -> int:
    """Replace every :class:`LoRALinear` by the plain ``nn.Linear`` it computes (``W + scaling * B A``)
    and make all parameters trainable again, as in a model that never had adapters. Returns how many."""
    adapted = [name for name, module in model.named_modules() if isinstance(module, LoRALinear)]
    for name in adapted:
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, model.get_submodule(name).merged())
    if adapted:
        for param in model.parameters():
            param.requires_grad_(True)
    return len(adapted)


def lora_parameter_counts(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameters, each shared tensor counted once."""
    unique = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in unique if p.requires_grad), sum(p.numel() for p in unique)


def _plan(model: nn.Module, config: LoRAConfig) -> dict[str, tuple[tuple[int, int] | None, int]]:
    """``{layer name: (rows, parts)}`` for every linear layer a target names; an error for a target
    that names none, or for ``kv_proj`` with ``k_proj`` / ``v_proj``."""
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear) and name}
    if any(isinstance(m, LoRALinear) for m in linears.values()):
        raise ConfigError("This model has LoRA adapters already; merge them (merge_lora) before adding others.")
    found = {target: _find(target, linears) for target in dict.fromkeys(config.targets)}
    for target, (names, _) in found.items():
        if not names:
            raise ConfigError(_no_match(config.targets, target, linears))
    halves = sorted(KV_HALVES[t] for t, (_, as_half) in found.items() if as_half)
    by_half = {name for names, as_half in found.values() if as_half for name in names}
    whole = {name for names, as_half in found.values() if not as_half for name in names}
    if by_half & whole:
        raise ConfigError(
            f"LoRAConfig.targets={config.targets} adapts {sorted(by_half & whole)[0]} twice: whole (as {KV_PROJ} or "
            f"'{ALL_LINEAR}') and by halves (k_proj / v_proj). Use {KV_PROJ} for one adapter over key and value, or "
            "k_proj and/or v_proj for one per half."
        )
    plan: dict[str, tuple[tuple[int, int] | None, int]] = {name: (None, 1) for name in sorted(whole)}
    plan.update({name: _rows(linears[name], halves) for name in sorted(by_half)})
    _check_untied(model, plan)
    return plan


def _check_untied(model: nn.Module, plan: dict[str, Any]) -> None:
    """Merging gives a layer its own weight, so a weight shared with another module (a tied LM head)
    would come apart; refused up front."""
    owners: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(param), []).append(name.rpartition(".")[0])
    for name in plan:
        shared = [owner for owner in owners[id(model.get_submodule(name).weight)] if owner != name]
        if shared:
            raise ConfigError(
                f"LoRA target {name} shares its weight with {shared[0]} (tied embeddings); merged adapters would untie "
                "them. Leave it out of LoRAConfig.targets, or set tie_embeddings=False."
            )


def _find(target: str, linears: dict[str, nn.Module]) -> tuple[list[str], bool]:
    """The layers ``target`` names, and whether they are adapted by half (k_proj / v_proj of ``kv_proj``).
    A layer of that very name wins over an alias."""
    def named(wanted: str) -> list[str]:
        return [name for name in linears if name.rpartition(".")[2] == wanted or name == wanted]

    if target == ALL_LINEAR:
        return [name for name in linears if ".blocks." in f".{name}"], False
    if named(target) or target not in (*ALIASES, *KV_HALVES):
        return named(target), False
    if target in ALIASES:
        return named(ALIASES[target]), False
    return named(KV_PROJ), True


def _rows(linear: nn.Linear, halves: list[int]) -> tuple[tuple[int, int], int]:
    half = linear.out_features // 2  # kv_proj's rows are [k | v], equal sizes
    if halves == [0, 1]:
        return (0, linear.out_features), 2
    return (halves[0] * half, (halves[0] + 1) * half), 1


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in prefixes)


def _no_match(targets: list[str], target: str, linears: dict[str, nn.Module]) -> str:
    names = sorted({name.rpartition(".")[2] for name in linears})
    return (
        f"LoRAConfig.targets={targets}: {target!r} matches no linear layer of this model. Its linear layers are "
        f"named {names}; Hugging Face aliases k_proj / v_proj (halves of kv_proj), o_proj, gate_proj, up_proj, "
        f"down_proj and '{ALL_LINEAR}' are accepted too."
    )
