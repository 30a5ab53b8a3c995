"""Character-level (byte) language-modelling data; the default corpus ships with Python itself.

Text is encoded as UTF-8 bytes (vocabulary 256), so no tokenizer or vocabulary file is needed and
any text round-trips. The default corpus is ``pydoc_data.topics`` (~465 KB of CPython's help text).
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from nl_lightning.data.resumable import EpochSampler, ResumableDataLoader, SkippingBatchSampler
from nl_lightning.data.tokenizer import BYTES
from nl_lightning.errors import ConfigError, DataError, MissingFileError, SetupError

VOCAB_SIZE = BYTES.vocab_size


def encode(text: str) -> Tensor:
    """str -> (N,) long tensor of UTF-8 bytes."""
    return torch.tensor(BYTES.encode(text), dtype=torch.long)


def decode(ids: Tensor | list[int]) -> str:
    """Byte ids -> str; invalid UTF-8 sequences (possible in samples) become U+FFFD."""
    return BYTES.decode(ids.tolist() if isinstance(ids, Tensor) else ids)


def pydoc_corpus() -> str:
    """The text of Python's own ``pydoc_data.topics``, in a fixed (sorted) order."""
    try:
        from pydoc_data.topics import topics
    except ImportError as err:  # some distro Pythons strip pydoc_data
        raise SetupError(
            "This Python has no pydoc_data module, the default corpus. Pass a text file with "
            "CharTextDataModule(path=...) / --data.init_args.path=FILE."
        ) from err
    return "\n\n".join(topics[key] for key in sorted(topics))


class TokenChunks(Dataset):
    """Non-overlapping windows of ``seq_len + 1`` tokens -> (input, next-token target)."""

    def __init__(self, tokens: Tensor, seq_len: int) -> None:
        if tokens.numel() < seq_len + 1:
            raise DataError(f"Only {tokens.numel()} tokens, fewer than seq_len + 1 = {seq_len + 1}; use a shorter seq_len.")
        self.tokens, self.seq_len = tokens, seq_len

    def __len__(self) -> int:
        return (self.tokens.numel() - 1) // self.seq_len

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        chunk = self.tokens[i * self.seq_len : (i + 1) * self.seq_len + 1].long()  # stored narrower, if at all
        return chunk[:-1], chunk[1:]


def check_block_args(seq_len: int, batch_size: int, val_fraction: float, test_fraction: float) -> None:
    """The settings every token-block DataModule shares, checked with the fix in the message."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction={val_fraction} must be in (0, 1).")
    if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"test_fraction={test_fraction} must be in [0, 1) and leave text for training "
            f"(val_fraction + test_fraction = {val_fraction + test_fraction} >= 1)."
        )
    if seq_len < 1 or batch_size < 1:
        raise ConfigError(f"seq_len={seq_len} and batch_size={batch_size} must be >= 1.")


def split_blocks(tokens: Tensor, seq_len: int, val_fraction: float,
                 test_fraction: float) -> tuple[TokenChunks, TokenChunks, TokenChunks | None]:
    """A token stream cut contiguously into ``[train | val | test]`` and each part into blocks."""
    n = tokens.numel()
    val_start = int(n * (1.0 - val_fraction - test_fraction))
    test_start = int(n * (1.0 - test_fraction))
    test = TokenChunks(tokens[test_start:], seq_len) if test_fraction > 0 else None
    return TokenChunks(tokens[:val_start], seq_len), TokenChunks(tokens[val_start:test_start], seq_len), test


def block_loader(dataset: Dataset, batch_size: int, num_workers: int, seed: int | None, train: bool) -> DataLoader:
    """In order for evaluation; for training, shuffled by ``(seed, epoch)`` and resumable mid-epoch
    (``data/resumable.py``). ``seed=None`` is the seed of ``seed_everything`` (else 0)."""
    workers = {"persistent_workers": num_workers > 0, "num_workers": num_workers}
    if not train:
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, **workers)
    seed = seed if seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
    batches = SkippingBatchSampler(EpochSampler(dataset, seed), batch_size, drop_last=True)
    return ResumableDataLoader(dataset, batch_sampler=batches, **workers)


class CharTextDataModule(L.LightningDataModule):
    """Byte-level LM data from a text file, or from Python's own docs when ``path`` is None.

    The split is deterministic and contiguous: ``[train | val | test]``, the test slice last. The
    training order depends only on ``(seed, epoch)`` and the loader is resumable mid-epoch, so a run
    resumed from a checkpoint sees exactly the batches an uninterrupted run would.
    """

    def __init__(
        self, path: str | None = None, seq_len: int = 128, batch_size: int = 32,
        val_fraction: float = 0.1, test_fraction: float = 0.05, num_workers: int = 0, seed: int | None = None,
    ) -> None:
        """
        Args:
            path: a UTF-8 text file; None uses ``pydoc_data.topics``.
            seq_len: tokens per training example.
            val_fraction: fraction of the text held out for validation (before the test slice).
            test_fraction: fraction held out at the end for ``test`` (0 = no test split).
            num_workers: DataLoader worker processes.
            seed: seeds the training order; None = the seed of ``seed_everything`` (else 0).
        """
        super().__init__()
        check_block_args(seq_len, batch_size, val_fraction, test_fraction)
        self.save_hyperparameters()
        self.path, self.seq_len, self.batch_size = path, seq_len, batch_size
        self.val_fraction, self.test_fraction, self.num_workers = val_fraction, test_fraction, num_workers
        self.seed = seed
        self.vocab_size, self.codec = VOCAB_SIZE, BYTES  # the model checks it speaks the same vocabulary

    def load_text(self) -> str:
        if self.path is None:
            return pydoc_corpus()
        path = Path(self.path)
        if not path.is_file():
            raise MissingFileError(f"Text file not found: {path}. Pass an existing UTF-8 file or path=None for the built-in corpus.")
        text = path.read_text(encoding="utf-8")
        if not text:
            raise DataError(f"Text file {path} is empty; give a file with at least {self.seq_len + 1} bytes.")
        return text

    def setup(self, stage: str | None = None) -> None:
        self.train_set, self.val_set, self.test_set = split_blocks(
            encode(self.load_text()), self.seq_len, self.val_fraction, self.test_fraction
        )

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        return block_loader(dataset, self.batch_size, self.num_workers, self.seed, train)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            raise ConfigError(
                "CharTextDataModule has no test split (test_fraction=0): set test_fraction (e.g. 0.05) to hold "
                "out the end of the text for `test`; the validation slice is not reused as a test set."
            )
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)
