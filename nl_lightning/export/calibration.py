"""Calibration data for static INT8: the first N batches of a DataLoader, as ONNX Runtime reads them.

``DataLoaderCalibrationReader`` is an ``onnxruntime.quantization.CalibrationDataReader`` over any
iterable of batches (a DataModule's ``val_dataloader()``); it pulls batches lazily, keeps only the
model input (``x`` of ``(x, y)``) and stops after ``num_batches``. ORT's base class recognizes any
class with ``get_next`` as a reader, so onnxruntime is not imported until quantization runs.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from torch import Tensor

from nl_lightning.errors import ConfigError, DataError
from nl_lightning.export.inputs import batch_input
from nl_lightning.export.signature import ModelSignature
from nl_lightning.export.ort import as_numpy


def validate_calibration(num_batches: int) -> None:
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
        raise ConfigError(f"calibration num_batches={num_batches!r} must be a positive integer (8-32 is typical).")


class DataLoaderCalibrationReader:
    """Feeds ``{input_name: batch_input(batch)}`` for the first ``num_batches`` batches of ``batches``."""

    def __init__(self, batches: Iterable[Any], input_name: str, num_batches: int = 8) -> None:
        validate_calibration(num_batches)
        self.batches, self.input_name, self.num_batches = batches, input_name, num_batches
        self.seen = 0
        self._it: Iterator[Any] | None = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = iter(itertools.islice(self.batches, self.num_batches))
        batch = next(self._it, None)
        if batch is None:
            if self.seen == 0:
                raise DataError(
                    "The calibration data is empty: static quantization needs at least one batch. "
                    "Check the DataModule's val_dataloader (and limit_val_batches)."
                )
            return None
        self.seen += 1
        return {self.input_name: as_numpy(batch_input(batch))}

    def rewind(self) -> None:
        self._it, self.seen = None, 0

    def __iter__(self) -> "DataLoaderCalibrationReader":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        feed = self.get_next()
        if feed is None:
            raise StopIteration
        return feed


def tensor_batches(inputs: Iterable[Tensor]) -> list[tuple[Tensor]]:
    """Wrap bare input tensors as batches (for calibrating on generated inputs)."""
    return [(x,) for x in inputs]


def calibration_reader(
    signature: ModelSignature, batches: Iterable[Any] | None = None, num_batches: int = 8,
    random_calibration: bool = False,
) -> DataLoaderCalibrationReader:
    """A reader over ``batches``. Without data, an error, unless ``random_calibration`` asks for random
    inputs (with a warning): activation ranges measured on noise do not match real data, and an
    INT8 model calibrated on them can disagree with fp32 on real inputs while passing its checks."""
    if batches is None:
        if not random_calibration:
            raise ConfigError(
                "Static INT8 needs calibration data and none was given: pass the data the model will see "
                "(`nl-lightning export --data ...`, or a checkpoint whose DataModule is recorded; ExportCallback "
                "and QuantizationCallback use the validation data), or set random_calibration: true to calibrate "
                "on random inputs (activation ranges will not match real data)."
            )
        warnings.warn(
            "Static INT8 is calibrated on random inputs (random_calibration=True); pass the validation "
            "DataLoader (ExportCallback and QuantizationCallback do; `nl-lightning export --data ...`) so the "
            "activation ranges match real data.",
            stacklevel=2,
        )
        seq = signature.clamp_seq(32)
        batches = tensor_batches(signature.example(8, seq, seed=i + 1) for i in range(num_batches))
    return DataLoaderCalibrationReader(batches, signature.name, num_batches)
