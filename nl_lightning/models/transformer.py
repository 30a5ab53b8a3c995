"""Plain ``nn.Module`` models built from a ``TransformerConfig``: the backbone and two heads.

``Transformer`` maps tokens or features to hidden states; ``CausalLM`` adds a language-model head
(and KV-cached decoding); ``SequenceClassifier`` adds pooling and a classification/regression head.
They hold no loss, metric or optimizer: those live in the LightningModules.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nl_lightning.errors import ConfigError, DataError
from nl_lightning.models.config import TransformerConfig
from nl_lightning.nn import (
    ALiBi,
    DropPath,
    FeatureNorm,
    KVCache,
    LayerScale,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SelfAttention,
    TransformerBlock,
    build_attn_mask,
    build_mlp,
    build_norm,
    build_pooling,
    drop_path_schedule,
)


def build_block(config: TransformerConfig, drop_path: float) -> TransformerBlock:
    """Wire one layer from the config's named choices."""
    d = config.d_model
    ls = (lambda: LayerScale(d, config.layer_scale)) if config.layer_scale is not None else (lambda: None)
    return TransformerBlock(
        attn=SelfAttention(d, config.n_heads, config.n_kv_heads, config.bias, config.attn_dropout, config.attn_backend,
                           qkv_bias=config.qkv_bias, head_dim=config.head_dim),
        mlp=build_mlp(config.mlp, d, config.mlp_hidden, config.bias if config.mlp_bias is None else config.mlp_bias,
                      config.dropout, config.gelu_approximate),
        norm1=build_norm(config.norm, d, config.norm_eps),
        norm2=build_norm(config.norm, d, config.norm_eps),
        ls1=ls(), ls2=ls(),
        drop_path=DropPath(drop_path) if drop_path > 0 else None,
        dropout=config.dropout,
        norm_style=config.norm_style,
    )


class Transformer(nn.Module):
    """Embedding (tokens or a feature projection) + positions (+ token types, embedding norm) + blocks
    + final norm -> (B, T, D)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        config = config.resolved(causal=True)  # a bare backbone is a decoder unless told otherwise
        self.config = config
        d = config.d_model
        if config.input_dim is None:
            self.embed: nn.Module = nn.Embedding(config.vocab_size, d)
        else:
            self.embed = nn.Linear(config.input_dim, d)
        self.pos_emb = LearnedPositionalEmbedding(config.max_seq_len, d) if config.position == "learned" else None
        self.type_emb = nn.Embedding(config.type_vocab_size, d) if config.type_vocab_size else None
        self.embed_norm = build_norm(config.norm, d, config.norm_eps) if config.embed_norm else None
        self.rope = None
        if config.position == "rope":
            self.rope = RotaryEmbedding(config.head_dim, config.max_seq_len, config.rope_base, config.rope_scaling)
        self.alibi = ALiBi(config.n_heads) if config.position == "alibi" else None
        self.drop = nn.Dropout(config.dropout)
        rates = drop_path_schedule(config.drop_path, config.n_layers)
        self.blocks = nn.ModuleList(build_block(config, rate) for rate in rates)
        # Post-LN blocks end in a norm already; pre-LN needs one before the head.
        self.norm = build_norm(config.norm, d, config.norm_eps) if config.norm_style == "pre" else nn.Identity()
        self.apply(_init_weights)

    def embed_inputs(self, x: Tensor) -> Tensor:
        """Tokens (B, T) long or features (B, T, F) float -> (B, T, D), with clear shape errors."""
        if self.config.input_dim is None:
            if x.dim() != 2 or x.is_floating_point():
                raise DataError(
                    f"This model takes token ids of shape (batch, seq) and integer dtype, got {tuple(x.shape)} "
                    f"{x.dtype}. For continuous features set TransformerConfig.input_dim."
                )
            return self.embed(x)
        if x.dim() != 3 or x.size(-1) != self.config.input_dim or not x.is_floating_point():
            raise DataError(
                f"This model takes float features of shape (batch, seq, {self.config.input_dim}), got "
                f"{tuple(x.shape)} {x.dtype}; check TransformerConfig.input_dim against your data."
            )
        return self.embed(x)

    def forward(
        self, x: Tensor, key_padding_mask: Tensor | None = None, kv_caches: list[KVCache] | None = None,
        embedded: bool = False, token_type_ids: Tensor | None = None, positions: Tensor | None = None,
    ) -> Tensor:
        """``key_padding_mask``: (B, T) bool, True = padding. ``kv_caches``: one per layer (decoding).
        ``token_type_ids``: (B, T) segment ids when the config has token types (default: all 0).
        ``positions``: (B, T) position of each token, for rows of different lengths decoded together
        (``RaggedKVCache``, causal models): each token sees the keys at or before its position."""
        h = x if embedded else self.embed_inputs(x)  # (B, T, D)
        T = h.size(1)
        offset = kv_caches[0].length if kv_caches else 0
        if self.pos_emb is not None:
            h = self.pos_emb(h, offset if positions is None else positions)
        if self.type_emb is not None:
            h = h + (self.type_emb(token_type_ids) if token_type_ids is not None else self.type_emb.weight[0])
        if self.embed_norm is not None:
            h = self.embed_norm(h)
        h = self.drop(h)
        t_k = offset + T
        rope = None if self.rope is None else self.rope(T, offset) if positions is None else self.rope.at(positions)
        # ALiBi's bias depends on distances only: a row's shift from ``t_k`` is constant over its keys,
        # which softmax ignores, so one bias serves rows of every length.
        bias = self.alibi(T, t_k) if self.alibi is not None else None
        if positions is not None:
            window = getattr(self.config, "sliding_window", None)  # sliding-window attention (Mistral), if any
            return self._blocks(h, _position_mask(positions, t_k, bias, h.dtype, window), False, rope, kv_caches)
        if key_padding_mask is not None and key_padding_mask.shape != h.shape[:2]:
            raise DataError(
                f"key_padding_mask has shape {tuple(key_padding_mask.shape)} but the input is "
                f"(batch, seq) = {tuple(h.shape[:2])}; it must be a bool mask with True at padding."
            )
        # SDPA's is_causal aligns top-left, so it is used only for the plain square case. A plain bool
        # (never a SymBool when torch.compile makes the cache length symbolic): SDPA's is_causal needs one.
        window = self.config.sliding_window
        square = offset == 0 and (window is None or t_k <= window)
        fast_causal = True if self.config.causal and key_padding_mask is None and bias is None and square else False
        mask = None
        if not fast_causal:
            mask = build_attn_mask(T, t_k, self.config.causal, key_padding_mask, bias, h.device, h.dtype, window)
        return self._blocks(h, mask, fast_causal, rope, kv_caches)

    def _blocks(self, h: Tensor, mask: Tensor | None, is_causal: bool, rope: tuple[Tensor, Tensor] | None,
                kv_caches: list[KVCache] | None) -> Tensor:
        for i, block in enumerate(self.blocks):
            h = block(h, mask, is_causal, rope, kv_caches[i] if kv_caches else None)
        return self.norm(h)

    def new_kv_caches(self, batch_size: int, max_len: int) -> list[KVCache]:
        """Empty caches for ``max_len`` positions (prompt + new tokens), one per layer."""
        c, p = self.config, next(self.parameters())
        if c.position == "learned" and max_len > c.max_seq_len:
            raise ConfigError(
                f"Decoding {max_len} positions exceeds max_seq_len={c.max_seq_len} of learned positions; "
                "generate fewer tokens or use position='rope'/'alibi'."
            )
        return [KVCache(batch_size, c.n_kv_heads, max_len, c.head_dim, p.device, p.dtype) for _ in range(c.n_layers)]


class CausalLM(nn.Module):
    """Decoder + LM head: (B, T) token ids -> (B, T, vocab) logits."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        config = config.resolved(causal=True)
        if not config.causal or config.input_dim is not None:
            raise ConfigError(
                "CausalLM needs TransformerConfig.causal=True and token inputs (input_dim=None); "
                f"got causal={config.causal}, input_dim={config.input_dim}."
            )
        self.config = config
        self.transformer = Transformer(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.tie_weights()
        else:
            nn.init.normal_(self.lm_head.weight, std=0.02)

    def tie_weights(self) -> None:
        """Share the input embedding with the LM head (again after weights were assigned from a file)."""
        self.lm_head.weight = self.transformer.embed.weight

    def forward(self, idx: Tensor, kv_caches: list[KVCache] | None = None, positions: Tensor | None = None) -> Tensor:
        """``positions``: (B, T) per-token positions for rows of different lengths (see ``Transformer``)."""
        return self.lm_head(self.transformer(idx, kv_caches=kv_caches, positions=positions))


class SequenceClassifier(nn.Module):
    """Input normalization + encoder + pooling + linear head: (B, T) tokens or (B, T, F) features
    -> (B, num_outputs).

    Float input of shape (B, F) is read as F feature tokens of size 1 (needs ``input_dim=1``).
    ``input_norm`` holds the training data's per-feature statistics once they are set (see
    ``TransformerClassifier``), so the model takes raw features everywhere: in training, from a
    checkpoint, as an exported graph and behind a server.
    """

    def __init__(self, config: TransformerConfig, num_outputs: int, pooling: str = "mean") -> None:
        super().__init__()
        if num_outputs < 1:
            raise ConfigError(f"num_outputs={num_outputs} must be >= 1.")
        config = config.resolved(causal=False)  # an encoder sees the whole sequence unless told otherwise
        if pooling in ("cls", "pooler") and config.causal:
            # The [CLS] token sits at position 0, which under causal attention sees only itself.
            raise ConfigError(
                f"pooling={pooling!r} needs a bidirectional encoder (causal=False): with causal=True the [CLS] "
                "token at position 0 never sees the input. Set causal=False or use pooling='mean'."
            )
        self.config = config
        self.input_norm = FeatureNorm()
        self.transformer = Transformer(config)
        self.pool = build_pooling(pooling, config.d_model)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.d_model)) if pooling == "cls" else None
        self.head = nn.Linear(config.d_model, num_outputs)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None, token_type_ids: Tensor | None = None) -> Tensor:
        if x.is_floating_point():
            x = self.input_norm(x)  # raw features -> z-scores (the identity without statistics)
            if x.dim() == 2:
                x = x.unsqueeze(-1)  # tabular rows: one token per feature
        h = self.transformer.embed_inputs(x)  # (B, T, D)
        if self.cls_token is not None and self.config.position == "learned" and h.size(1) >= self.config.max_seq_len:
            raise DataError(
                f"pooling='cls' prepends a [CLS] token, so at most max_seq_len - 1 = {self.config.max_seq_len - 1} "
                f"tokens fit with learned positions; got {h.size(1)}. Shorten the input or raise max_seq_len."
            )
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.expand(h.size(0), -1, -1), h], dim=1)
            if key_padding_mask is not None:
                key_padding_mask = torch.cat([key_padding_mask.new_zeros(h.size(0), 1), key_padding_mask.bool()], 1)
            if token_type_ids is not None:
                token_type_ids = torch.cat([token_type_ids.new_zeros(h.size(0), 1), token_type_ids], 1)
        h = self.transformer(h, key_padding_mask, embedded=True, token_type_ids=token_type_ids)
        return self.head(self.pool(h, key_padding_mask))


def _position_mask(positions: Tensor, t_k: int, bias: Tensor | None, dtype: torch.dtype,
                   window: int | None = None) -> Tensor:
    """(B, 1, T, t_k) mask letting each token see the keys at or before its own position (the key at
    index j of a ``RaggedKVCache`` row is that sequence's position j), and with a sliding ``window``
    only the ``window`` most recent of them; additive when ALiBi biases it."""
    keys, query = torch.arange(t_k, device=positions.device), positions[..., None]
    allowed = keys <= query
    if window is not None:
        allowed = allowed & (keys > query - window)
    allowed = allowed[:, None]
    return allowed if bias is None else bias.to(dtype).masked_fill(~allowed, float("-inf"))


def _init_weights(module: nn.Module) -> None:
    """GPT-2 style: N(0, 0.02) for linear and embedding weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
