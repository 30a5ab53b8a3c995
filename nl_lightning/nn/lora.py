"""LoRA (Hu et al. 2021): a linear layer plus a trainable low-rank update of its weight.

``y = x W^T + b + (alpha / r) * dropout(x) A^T B^T`` with ``A`` (r, in) drawn like a linear weight
(Kaiming-uniform) and ``B`` (out, r) zero, so a freshly wrapped layer computes exactly what it did
before (as PEFT and LitGPT initialise it). ``LoRALinear`` *is* an ``nn.Linear`` holding the base
layer's own ``weight`` and ``bias`` (shared, not copied), so state-dict keys of the base are
unchanged and only ``lora_a`` / ``lora_b`` are new.

The update may cover a range of output rows split in equal parts, each with its own ``A`` and
``B``: the fused key/value projection (``kv_proj``, rows ``[k | v]``) gets an adapter on ``k``
alone, ``v`` alone, or one each, exactly what PEFT's ``k_proj`` / ``v_proj`` targets train.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nl_lightning.errors import ConfigError

__all__ = ["LoRALinear"]


class LoRALinear(nn.Linear):
    """``base`` plus ``parts`` low-rank updates of rank ``r`` on output rows ``rows`` (default all)."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                 rows: tuple[int, int] | None = None, parts: int = 1) -> None:
        nn.Module.__init__(self)  # not nn.Linear.__init__: the base's parameters are reused, never allocated
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        start, stop = rows if rows is not None else (0, base.out_features)
        if r < 1 or not 0 <= start < stop <= base.out_features or (stop - start) % parts:
            raise ConfigError(
                f"LoRALinear needs r >= 1 and rows {start}:{stop} inside 0:{base.out_features} split into "
                f"{parts} equal parts; got r={r}."
            )
        self.r, self.alpha, self.parts, self.rows = r, alpha, parts, (start, stop)
        self.scaling = alpha / r
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_a = nn.Parameter(torch.empty(parts * r, base.in_features, **factory))
        self.lora_b = nn.Parameter(torch.empty(stop - start, r, **factory))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        """``A`` as ``nn.Linear`` initialises a weight, ``B`` zero: the update starts at exactly 0."""
        for a in self.lora_a.data.chunk(self.parts):
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b)

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight, self.bias)  # (..., out)
        h = F.linear(self.lora_dropout(x), self.lora_a)  # (..., parts * r)
        if self.parts == 1:
            update = F.linear(h, self.lora_b)  # (..., stop - start)
        else:
            parts = zip(h.chunk(self.parts, -1), self.lora_b.chunk(self.parts))  # each part its own A and B
            update = torch.cat([F.linear(hp, bp) for hp, bp in parts], -1)
        return out + self._place(update * self.scaling)

    def delta_weight(self) -> Tensor:
        """The update as a full (out, in) matrix: ``scaling * B A`` on the adapted rows, zero elsewhere."""
        a = self.lora_a.view(self.parts, self.r, self.in_features)
        b = self.lora_b.view(self.parts, -1, self.r)
        delta = torch.bmm(b.float(), a.float()).reshape(-1, self.in_features) * self.scaling  # (stop - start, in)
        return self._place(delta.T).T

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` whose weight is ``W + delta``: the same function, no adapter."""
        linear = nn.Linear(self.in_features, self.out_features, self.bias is not None, device="meta")
        with torch.no_grad():
            linear.weight = nn.Parameter((self.weight.float() + self.delta_weight()).to(self.weight.dtype))
        linear.bias = self.bias
        return linear

    def _place(self, update: Tensor) -> Tensor:
        """(..., stop - start) -> (..., out): zeros on the rows without an adapter."""
        start, stop = self.rows
        return update if (start, stop) == (0, self.out_features) else F.pad(update, (start, self.out_features - stop))

    def extra_repr(self) -> str:
        rows = "" if self.rows == (0, self.out_features) else f", rows={self.rows[0]}:{self.rows[1]}"
        parts = "" if self.parts == 1 else f", parts={self.parts}"
        return f"{super().extra_repr()}, r={self.r}, alpha={self.alpha}{rows}{parts}"
