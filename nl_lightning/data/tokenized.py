"""``TokenizedTextDataModule``: language-model data from your text files and a real tokenizer.

Documents (each text file, or each row of a Parquet text column) are put in a seeded random
order, tokenized with a ``tokenizer.json`` (a model folder's, or one from ``nl-lightning tokenizer
train``), packed end to end with the end-of-text token after each, and the stream is cut into
``[train | val | test]`` and then into ``seq_len + 1``-token blocks. So no token is padding, at most
two documents straddle a split boundary, and the split is the same on every rank and every run.
The corpus is read and tokenized in memory by every process at ``setup`` (no token cache yet).
Training batches come from the same resumable loader as ``CharTextDataModule``: a resumed run sees
exactly the batches an uninterrupted one would, and refuses a checkpoint taken on other data.
"""

from __future__ import annotations

import math
import os
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from nl_lightning._io import bytes_sha256
from nl_lightning.data.documents import DocumentError, expand_paths, iter_documents
from nl_lightning.data.text import TokenChunks, block_loader, check_block_args, split_blocks
from nl_lightning.data.tokenizer import TokenizerCodec, TokenizerError
from nl_lightning.errors import ConfigError

__all__ = ["TokenizedTextDataModule", "pack_documents"]

_ENCODE_CHUNK = 1024  # documents per encode_batch call: parallel in Rust, bounded memory


def pack_documents(documents: list[list[int]], eos_id: int) -> Tensor:
    """Token lists end to end, each followed by ``eos_id`` (unless it already ends with it); int32."""
    eos = np.array([eos_id], dtype=np.int32)
    parts = [(np.asarray(doc, dtype=np.int32), eos[:0] if doc and doc[-1] == eos_id else eos) for doc in documents]
    return torch.from_numpy(np.concatenate([a for pair in parts for a in pair] or [eos[:0]]))


class TokenizedTextDataModule(L.LightningDataModule):
    """Packed next-token blocks ``(idx, targets)`` from text files or a Parquet column.

    Example (YAML)::

        data:
          class_path: nl_lightning.data.TokenizedTextDataModule
          init_args: {paths: "corpus/*.txt", tokenizer: tokenizer.json, seq_len: 256}
    """

    def __init__(
        self, paths: str | list[str], tokenizer: str, text_column: str = "text", seq_len: int = 256,
        batch_size: int = 32, val_fraction: float = 0.1, test_fraction: float = 0.05, num_workers: int = 0,
        seed: int | None = None, eos_token: str | None = None,
    ) -> None:
        """
        Args:
            paths: text or Parquet files, or glob patterns (``corpus/**/*.txt``); each text file is one
                document, each Parquet row another.
            tokenizer: a ``tokenizer.json``, or a model folder holding one. Give the model the same one
                (``model.init_args.tokenizer``).
            text_column: the Parquet column holding the text.
            seq_len: tokens per training example.
            val_fraction: fraction of the token stream held out for validation.
            test_fraction: fraction held out at the end for ``test`` (0 = no test split).
            num_workers: DataLoader worker processes.
            seed: seeds the document order and the training order; None = the seed of
                ``seed_everything`` (else 0).
            eos_token: the token put between documents; None = the folder's ``tokenizer_config.json``
                ``eos_token``, else the first of ``<|endoftext|>``, ``<|end_of_text|>``, ``</s>``, ``<eos>``.
        """
        super().__init__()
        check_block_args(seq_len, batch_size, val_fraction, test_fraction)
        self.save_hyperparameters()
        self.paths, self.text_column, self.seq_len, self.batch_size = paths, text_column, seq_len, batch_size
        self.val_fraction, self.test_fraction, self.num_workers, self.seed = val_fraction, test_fraction, num_workers, seed
        self.codec = TokenizerCodec.from_source(tokenizer, eos_token)
        if self.codec.eos_id is None:
            raise TokenizerError(
                f"{self.codec.source} has no end-of-text token to put between documents; pass eos_token=<one of its "
                "special tokens>, or train a tokenizer with --special_tokens '[\"<|endoftext|>\"]'."
            )
        self.vocab_size = self.codec.vocab_size
        self.tokens_sha256: str | None = None
        self._expected_sha256: str | None = None
        self.train_set: TokenChunks | None = None
        self.val_set: TokenChunks | None = None
        self.test_set: TokenChunks | None = None

    def _seed(self) -> int:
        return self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))

    def load_tokens(self) -> Tensor:
        """The packed token stream of every document, in the seeded document order."""
        documents = list(iter_documents(expand_paths(self.paths), self.text_column))
        order = np.random.default_rng(self._seed()).permutation(len(documents))
        documents = [documents[i] for i in order if documents[i]]  # an empty Parquet row adds nothing
        if not documents:
            raise DocumentError(f"{self.paths!r} holds no text: every document is empty. Give files with text.")
        ids: list[list[int]] = []
        for start in range(0, len(documents), _ENCODE_CHUNK):
            ids.extend(self.codec.encode_batch(documents[start : start + _ENCODE_CHUNK]))
        return pack_documents(ids, self.codec.eos_id)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return  # tokenized once per process (fit, then test)
        tokens = self.load_tokens()
        parts = [1.0 - self.val_fraction - self.test_fraction, self.val_fraction, self.test_fraction or 1.0]
        needed = math.ceil((self.seq_len + 1) / min(parts)) + len(parts)  # each part holds one block
        if tokens.numel() < needed:
            raise DocumentError(
                f"{self.paths!r} gives {tokens.numel()} tokens; seq_len={self.seq_len} with val_fraction="
                f"{self.val_fraction}, test_fraction={self.test_fraction} needs about {needed}. Add text or "
                "lower seq_len."
            )
        self.tokens_sha256 = bytes_sha256(tokens.numpy().tobytes() + f"|{self.seq_len}".encode())
        self._check_same_data()
        self.train_set, self.val_set, self.test_set = split_blocks(tokens, self.seq_len, self.val_fraction,
                                                                   self.test_fraction)

    def train_dataloader(self) -> DataLoader:
        return block_loader(self._split("train"), self.batch_size, self.num_workers, self.seed, train=True)

    def val_dataloader(self) -> DataLoader:
        return block_loader(self._split("val"), self.batch_size, self.num_workers, self.seed, train=False)

    def test_dataloader(self) -> DataLoader:
        if self.test_fraction == 0:
            raise ConfigError("TokenizedTextDataModule has no test split (test_fraction=0): set test_fraction, e.g. 0.05.")
        return block_loader(self._split("test"), self.batch_size, self.num_workers, self.seed, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def _split(self, name: str) -> TokenChunks:
        self.setup()
        return getattr(self, f"{name}_set")

    def state_dict(self) -> dict[str, Any]:
        """The token stream's SHA-256: a resumed run checks it trains on the same data."""
        return {"tokens_sha256": self.tokens_sha256} if self.tokens_sha256 else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._expected_sha256 = state_dict.get("tokens_sha256")
        if self.tokens_sha256 is not None:
            self._check_same_data()

    def _check_same_data(self) -> None:
        if self._expected_sha256 and self.tokens_sha256 and self._expected_sha256 != self.tokens_sha256:
            raise DocumentError(
                f"The checkpoint was trained on other data: its token stream has SHA-256 {self._expected_sha256[:12]}…, "
                f"{self.paths!r} with this tokenizer, seed and seq_len gives {self.tokens_sha256[:12]}…. Resume with "
                "the same files, tokenizer, seed and seq_len, or start a new run without --ckpt_path."
            )
