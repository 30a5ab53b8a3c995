"""Data: the built-in text and synthetic DataModules, and the multi-format pipeline.

Readers, validation, transforms and caches are functional (no lightning import); the
DataModules are the thin Lightning layer over them. See docs/data.md.
"""

from nl_lightning.data.array_datamodule import ArrayDataModule
from nl_lightning.data.cache import DiskCache, HybridCache, MemoryCache
from nl_lightning.data.datamodule import ReaderDataModule
from nl_lightning.data.dataset import ArrayDataset, collate_batch
from nl_lightning.data.file_datamodule import FileDataModule
from nl_lightning.data.group_sampler import RowGroupSampler
from nl_lightning.data.readers import Reader, open_reader, open_source
from nl_lightning.data.shared_batches import SharedBatchLoader
from nl_lightning.data.synthetic import SyntheticSequenceDataModule
from nl_lightning.data.text import CharTextDataModule
from nl_lightning.data.tokenized import TokenizedTextDataModule
from nl_lightning.data.tokenizer import TextCodec, TokenizerCodec, load_codec
from nl_lightning.data.transforms import Compose, Normalize, RandomNoise, RandomScale, Transform
from nl_lightning.data.validate import DataValidationError

__all__ = [
    "ArrayDataModule",
    "ArrayDataset",
    "CharTextDataModule",
    "Compose",
    "DataValidationError",
    "DiskCache",
    "FileDataModule",
    "HybridCache",
    "MemoryCache",
    "Normalize",
    "RandomNoise",
    "RandomScale",
    "Reader",
    "ReaderDataModule",
    "RowGroupSampler",
    "SharedBatchLoader",
    "SyntheticSequenceDataModule",
    "TextCodec",
    "TokenizedTextDataModule",
    "TokenizerCodec",
    "Transform",
    "collate_batch",
    "load_codec",
    "open_reader",
    "open_source",
]
