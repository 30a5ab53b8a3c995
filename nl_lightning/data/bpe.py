"""Train a byte-level BPE tokenizer (GPT-2's scheme) on the user's own text, with ``tokenizers``.

Byte-level means every UTF-8 byte is in the base alphabet: any text encodes without an unknown
token and decodes back exactly. The result is an ordinary ``tokenizer.json`` that
``TokenizedTextDataModule``, ``TransformerLM(tokenizer=...)`` and ``transformers`` all read.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nl_lightning._io import write_atomic
from nl_lightning.data.tokenizer import TokenizerError

__all__ = ["DEFAULT_SPECIAL_TOKENS", "save_tokenizer", "train_bpe"]

#: GPT-2's end-of-text token: what ``TokenizedTextDataModule`` puts between packed documents.
DEFAULT_SPECIAL_TOKENS: tuple[str, ...] = ("<|endoftext|>",)
BYTE_ALPHABET = 256


def train_bpe(texts: Iterable[str], vocab_size: int = 8192, special_tokens: Iterable[str] = DEFAULT_SPECIAL_TOKENS,
              min_frequency: int = 2) -> Any:
    """A ``tokenizers.Tokenizer`` trained on ``texts``: byte-level pre-tokenizer and decoder, BPE merges
    up to ``vocab_size`` tokens (fewer when the text has fewer pairs seen ``min_frequency`` times)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    special = list(dict.fromkeys(special_tokens))
    _check(vocab_size, special, min_frequency)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def save_tokenizer(tokenizer: Any, path: str | Path) -> Path:
    """Write ``tokenizer.json`` atomically; ``path`` is the file or a folder to hold it."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".json":
        path = path / "tokenizer.json"
    write_atomic(path, tokenizer.to_str())
    return path


def _check(vocab_size: int, special: list[str], min_frequency: int) -> None:
    smallest = BYTE_ALPHABET + len(special)
    if not isinstance(vocab_size, int) or vocab_size < smallest:
        raise TokenizerError(
            f"vocab_size={vocab_size!r} is too small: the 256 byte tokens and {len(special)} special token(s) need "
            f"{smallest}; merges come on top (8192 is a reasonable start for a few MB of text)."
        )
    if any(not token for token in special):
        raise TokenizerError(f"special_tokens={special} contains an empty string; remove it.")
    if min_frequency < 1:
        raise TokenizerError(f"min_frequency={min_frequency} must be >= 1 (how often a pair is seen before it merges).")
