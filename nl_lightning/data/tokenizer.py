"""Text <-> token ids: the byte vocabulary (the default) or a Hugging Face ``tokenizer.json``.

One small interface, :class:`TextCodec` (``encode``, ``decode``, ``vocab_size``, ``eos_id``), so
``generate``, ``TextSampleCallback``, the data modules and the server take text and give text back
whichever vocabulary a model speaks. A ``tokenizer.json`` is read with the ``tokenizers`` library
(Rust, no code from the file runs). A model folder's ``tokenizer_config.json`` (or
``chat_template.jinja``) beside it adds the chat template and the special tokens, as Hugging Face
lays them out; ``to_checkpoint`` bundles all of it into the one string a checkpoint stores, so a
model stays self-contained, and ``save`` writes the folder layout back (beside an ONNX export).
No torch or lightning import here.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from nl_lightning.errors import NLUserError

__all__ = ["BYTES", "ByteCodec", "TextCodec", "TokenizerCodec", "TokenizerError", "check_vocab", "load_codec"]

#: Marks the checkpoint form of a tokenizer that carries more than its ``tokenizer.json`` (``to_checkpoint``).
BUNDLE_FORMAT = "nl_lightning.tokenizer/1"
TOKENIZER_FILE, CONFIG_FILE, TEMPLATE_FILE = "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"

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
    chat_template: str | None = None
    """A Jinja chat template from the model folder (rendered by ``nl_lightning.data.chat``, sandboxed);
    None = the plain default there."""
    bos_token: str | None = None
    """Text of the beginning-of-text token, for chat templates (``{{ bos_token }}``)."""

    @property
    def eos_token(self) -> str | None:
        """Text of the end-of-text token, for chat templates (``{{ eos_token }}``)."""
        return None

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; never raises on ids a model sampled."""

    def to_json(self) -> str | None:
        """The tokenizer's JSON (the vocabulary's identity); None for the byte vocabulary."""
        return None

    def to_checkpoint(self) -> str | None:
        """The one string a checkpoint stores and ``load_codec`` reads back: the tokenizer JSON, bundled
        with the chat template and special tokens when the folder gave any; None for the byte vocabulary."""
        return None

    def save(self, folder: str | Path) -> list[Path]:
        """Write the Hugging Face layout (``tokenizer.json``, ``tokenizer_config.json``) into ``folder``;
        the files written (none for the byte vocabulary)."""
        return []


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
                 eos_candidates: Sequence[str] = EOS_NAMES, chat_template: str | None = None,
                 bos_token: str | None = None) -> None:
        """
        Args:
            tokenizer: a ``tokenizers.Tokenizer``.
            eos_token: the end-of-text token (must be in the vocabulary); None = the first of
                ``eos_candidates`` that is.
            source: where the tokenizer came from, for messages.
            chat_template: the model's Jinja chat template (untrusted: rendered sandboxed); None = the default.
            bos_token: the beginning-of-text token's text, for chat templates.
        """
        self.tokenizer, self.source = tokenizer, source
        self.vocab_size = int(tokenizer.get_vocab_size(with_added_tokens=True))
        self.eos_id = self._eos_id(eos_token, eos_candidates)
        self.chat_template, self.bos_token = chat_template, bos_token

    @classmethod
    def from_source(cls, source: str | Path, eos_token: str | None = None) -> "TokenizerCodec":
        """A ``tokenizer.json`` file, a model folder holding one (with its ``tokenizer_config.json`` /
        ``chat_template.jinja``), or the text a checkpoint stores (``to_checkpoint``)."""
        from tokenizers import Tokenizer

        text = str(source)
        if text.lstrip().startswith("{"):
            tokenizer_json, folder = _unbundle(text)
            where = "the tokenizer JSON stored in the checkpoint"
            return cls(_parse(Tokenizer.from_str, tokenizer_json, where), eos_token or folder.eos_token, where,
                       chat_template=folder.chat_template, bos_token=folder.bos_token)
        path = _tokenizer_file(Path(text))
        folder = _folder_settings(path.parent)
        candidates = (*((folder.eos_token,) if folder.eos_token else ()), *EOS_NAMES)
        return cls(_parse(Tokenizer.from_file, str(path), str(path)), eos_token, str(path), candidates,
                   folder.chat_template, folder.bos_token)

    @property
    def eos_token(self) -> str | None:
        return None if self.eos_id is None else self.tokenizer.id_to_token(self.eos_id)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text).ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of many texts, encoded in parallel by the Rust library."""
        return [list(e.ids) for e in self.tokenizer.encode_batch(texts)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def to_json(self) -> str:
        return self.tokenizer.to_str()

    def to_checkpoint(self) -> str:
        if self.chat_template is None and self.bos_token is None:
            return self.to_json()  # what older checkpoints hold: the tokenizer alone
        return json.dumps({"format": BUNDLE_FORMAT, "tokenizer": json.loads(self.to_json()),
                           **self._config()})

    def save(self, folder: str | Path) -> list[Path]:
        from nl_lightning._io import write_atomic, write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / TOKENIZER_FILE, self.to_json(), durable=False)
        write_json(folder / CONFIG_FILE, {k: v for k, v in self._config().items() if v is not None}, durable=False)
        return [folder / TOKENIZER_FILE, folder / CONFIG_FILE]

    def _config(self) -> dict[str, str | None]:
        return {"chat_template": self.chat_template, "eos_token": self.eos_token, "bos_token": self.bos_token}

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


@dataclass(frozen=True)
class _FolderSettings:
    """What a Hugging Face model folder says about its tokenizer beyond ``tokenizer.json``."""

    eos_token: str | None = None
    bos_token: str | None = None
    chat_template: str | None = None


def _folder_settings(folder: Path) -> _FolderSettings:
    """``tokenizer_config.json``'s ``eos_token`` / ``bos_token`` / ``chat_template`` (a string, or a list
    of named templates: ``default``), and ``chat_template.jinja``, which wins when both exist."""
    config = _read_config(folder / CONFIG_FILE)
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default", next(iter(named.values()), None))
    if (folder / TEMPLATE_FILE).is_file():
        template = (folder / TEMPLATE_FILE).read_text(encoding="utf-8")
    if template is not None and not isinstance(template, str):
        raise TokenizerError(
            f"chat_template in {folder / CONFIG_FILE} is a {type(template).__name__}, not a Jinja template string; "
            "fix or remove it (the server then uses its plain default template)."
        )
    return _FolderSettings(_token_text(config.get("eos_token")), _token_text(config.get("bos_token")), template)


def _read_config(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return {}  # the tokenizer itself is what matters; the known end-of-text names are tried instead
    return config if isinstance(config, dict) else {}


def _token_text(token: object) -> str | None:
    """A special token as ``tokenizer_config.json`` writes it: a string or ``{"content": ...}``."""
    token = token.get("content") if isinstance(token, dict) else token
    return token if isinstance(token, str) else None


def _unbundle(text: str) -> tuple[str, _FolderSettings]:
    """The tokenizer JSON and the settings of a checkpoint's string (``to_checkpoint``): a bundle, or
    the bare ``tokenizer.json`` text older checkpoints hold."""
    try:
        data = json.loads(text)
    except ValueError:
        return text, _FolderSettings()  # `_parse` reports it as an unreadable tokenizer
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        return text, _FolderSettings()
    template = data.get("chat_template")
    return json.dumps(data.get("tokenizer")), _FolderSettings(
        _token_text(data.get("eos_token")), _token_text(data.get("bos_token")),
        template if isinstance(template, str) else None)
