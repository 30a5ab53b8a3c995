"""One transformer layer: attention and MLP residual branches, pre-LN or post-LN wired."""

from __future__ import annotations

from torch import Tensor, nn

from nl_lightning.errors import ConfigError
from nl_lightning.nn.kv_cache import KVCache


class TransformerBlock(nn.Module):
    """Layers are injected (timm style); ``norm_style`` picks where the norms sit.

    pre-LN:  x = x + drop(ls(attn(norm1(x))));  x = x + drop(ls(mlp(norm2(x))))
    post-LN: x = norm1(x + drop(ls(attn(x))));  x = norm2(x + drop(ls(mlp(x))))
    """

    def __init__(
        self, *, attn: nn.Module, mlp: nn.Module, norm1: nn.Module, norm2: nn.Module,
        ls1: nn.Module | None = None, ls2: nn.Module | None = None, drop_path: nn.Module | None = None,
        dropout: float = 0.0, norm_style: str = "pre",
    ) -> None:
        super().__init__()
        if norm_style not in ("pre", "post"):
            raise ConfigError(f"Unknown norm_style {norm_style!r}; choose 'pre' or 'post'.")
        self.attn, self.mlp, self.norm1, self.norm2 = attn, mlp, norm1, norm2
        self.ls1, self.ls2 = ls1 or nn.Identity(), ls2 or nn.Identity()
        self.drop_path = drop_path or nn.Identity()
        self.resid_drop = nn.Dropout(dropout)
        self.norm_style = norm_style

    def _branch(self, y: Tensor, ls: nn.Module) -> Tensor:
        return self.drop_path(ls(self.resid_drop(y)))

    def forward(
        self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False,
        rope: tuple[Tensor, Tensor] | None = None, kv_cache: KVCache | None = None,
    ) -> Tensor:
        if self.norm_style == "pre":
            x = x + self._branch(self.attn(self.norm1(x), attn_mask, is_causal, rope, kv_cache), self.ls1)
            return x + self._branch(self.mlp(self.norm2(x)), self.ls2)
        x = self.norm1(x + self._branch(self.attn(x, attn_mask, is_causal, rope, kv_cache), self.ls1))
        return self.norm2(x + self._branch(self.mlp(x), self.ls2))
