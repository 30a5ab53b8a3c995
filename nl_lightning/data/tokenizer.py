"""Text <-> token ids: the byte vocabulary (the default) or a Hugging Face ``tokenizer.json``.

One small interface, :class:`TextCodec` (``encode``, ``decode``, ``vocab_size``, ``eos_id``), so
``generate``, ``TextSampleCallback`` and the data modules take text and give text back whichever
vocabulary a model speaks. A ``tokenizer.json`` is read with the ``tokenizers`` library (Rust, no
code from the file runs); its JSON text is what a checkpoint stores, so a model is self-contained.
No torch or lightning import here.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

from nl_lightning.errors import NLUserError

__all__ = ["BYTES", "ByteCodec", "TextCodec", "TokenizerCodec", "TokenizerError", "check_vocab", "load_codec"]

#: End-of-text tokens looked for, in order, when neither ``eos_token`` nor ``tokenizer_config.json`` names one
#: (GPT-2 / Qwen2 / ours, Llama 3, Llama 2 / Mistral, Gemma).
EOS_NAMES: tuple[str, ...] = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>")


class TokenizerError(NLUserError, ValueError):
    """A tokenizer that is missing, unreadable, or does not fit the model or the data."""


class TextCodec(ABC):
    """Maps text to token ids and back."""

    vocab_size: int
    eos_id: int | None
    """Id of the end-of-text token that separates packed documents; None when the vocabulary has none."""
    source: str
    """Where the vocabulary comes from, for messages."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; never raises on ids a model sampled."""

    def to_json(self) -> str | None:
        """The tokenizer's JSON as a checkpoint stores it; None for the byte vocabulary."""
        return None


class ByteCodec(TextCodec):
    """UTF-8 bytes: vocabulary 256, no tokenizer file; any text round-trips."""

    vocab_size = 256
    eos_id = None
    source = "the byte vocabulary"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        """Invalid UTF-8 (possible in samples) becomes U+FFFD; ids past 255 are dropped."""
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


#: The byte codec (UTF-8, vocabulary 256): what a model without a tokenizer file speaks.
BYTES = ByteCodec()


class TokenizerCodec(TextCodec):
    """A ``tokenizers.Tokenizer``: ``encode`` applies its post-processor (a Llama ``<s>``, say), as
    ``transformers`` does by default; ``decode`` leaves special tokens out."""

    def __init__(self, tokenizer: "object", eos_token: str | None = None, source: str = "tokenizer",
                 eos_candidates: Sequence[str] = EOS_NAMES) -> None:
        """
        Args:
            tokenizer: a ``tokenizers.Tokenizer``.
            eos_token: the end-of-text token (must be in the vocabulary); None = the first of
                ``eos_candidates`` that is.
            source: where the tokenizer came from, for messages.
        """
        self.tokenizer, self.source = tokenizer, source
        self.vocab_size = int(tokenizer.get_vocab_size(with_added_tokens=True))
        self.eos_id = self._eos_id(eos_token, eos_candidates)

    @classmethod
    def from_source(cls, source: str | Path, eos_token: str | None = None) -> "TokenizerCodec":
        """A ``tokenizer.json`` file, a model folder holding one, or the JSON text itself (from a checkpoint)."""
        from tokenizers import Tokenizer

        text = str(source)
        if text.lstrip().startswith("{"):
            return cls(_parse(Tokenizer.from_str, text, "the tokenizer JSON stored in the checkpoint"), eos_token)
        path = _tokenizer_file(Path(text))
        candidates = (*_configured_eos(path.parent), *EOS_NAMES)
        return cls(_parse(Tokenizer.from_file, str(path), str(path)), eos_token, str(path), candidates)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text).ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of many texts, encoded in parallel by the Rust library."""
        return [list(e.ids) for e in self.tokenizer.encode_batch(texts)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def to_json(self) -> str:
        return self.tokenizer.to_str()

    def _eos_id(self, eos_token: str | None, candidates: Sequence[str]) -> int | None:
        if eos_token is not None:
            found = self.tokenizer.token_to_id(eos_token)
            if found is None:
                raise TokenizerError(
                    f"eos_token={eos_token!r} is not in the vocabulary of {self.source}; use one of its special "
                    f"tokens ({', '.join(sorted(self._special_tokens())[:8]) or 'it has none'})."
                )
            return int(found)
        for name in candidates:
            found = self.tokenizer.token_to_id(name)
            if found is not None:
                return int(found)
        return None

    def _special_tokens(self) -> list[str]:
        return [t.content for t in self.tokenizer.get_added_tokens_decoder().values() if t.special]


def load_codec(source: str | Path | None, eos_token: str | None = None) -> TextCodec:
    """The byte vocabulary for ``None``, else a :class:`TokenizerCodec` (see ``TokenizerCodec.from_source``)."""
    return BYTES if source is None else TokenizerCodec.from_source(source, eos_token)


def check_vocab(codec: TextCodec, vocab_size: int, what: str = "The model") -> None:
    """Refuse a tokenizer with ids the embedding cannot hold. An embedding larger than the vocabulary is
    fine: published models pad theirs (Qwen2: 151,646 tokens in 151,936 rows)."""
    if codec.vocab_size > vocab_size:
        raise TokenizerError(
            f"{what} has vocab_size={vocab_size} embedding rows but the tokenizer ({codec.source}) has "
            f"{codec.vocab_size} tokens. Set TransformerConfig.vocab_size (model.init_args.config.vocab_size) to "
            f"{codec.vocab_size} or more, or use the tokenizer the model was trained with."
        )


def _tokenizer_file(path: Path) -> Path:
    candidate = path / "tokenizer.json" if path.is_dir() else path
    if not candidate.is_file():
        where = f"the folder {path} has no tokenizer.json" if path.is_dir() else f"{path} does not exist"
        raise TokenizerError(
            f"Tokenizer not found: {where}. Pass a tokenizer.json, a model folder holding one, or train one "
            "with `nl-lightning tokenizer train --files 'data/*.txt' --output tokenizer.json`."
        )
    return candidate


def _parse(load: "object", argument: str, source: str) -> "object":
    try:
        return load(argument)
    except Exception as err:  # tokenizers raises a bare Exception for every parse failure
        detail = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise TokenizerError(
            f"{source} is not a readable tokenizer.json ({detail}). It may be truncated or another file; "
            "re-copy it from the model folder or train a new one with `nl-lightning tokenizer train`."
        ) from None


def _configured_eos(folder: Path) -> tuple[str, ...]:
    """``eos_token`` of a transformers ``tokenizer_config.json`` beside the tokenizer, if it names one."""
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return ()
    try:
        eos = json.loads(config.read_text(encoding="utf-8")).get("eos_token")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return ()  # the tokenizer itself is what matters; the known names are tried instead
    eos = eos.get("content") if isinstance(eos, dict) else eos
    return (eos,) if isinstance(eos, str) else ()
