"""Atomic artifact writes: build files in a temporary folder beside the target, then ``os.replace``.

A reader never sees a half-written model, and a crash leaves the previous artifact in place.
Formats that write side files (ONNX external data next to ``model.onnx``) keep their relative
names, because every file of the folder moves together and the main file moves last.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path with ``path``'s file name; on success move it (and siblings) into place.

    Returns nothing on failure: the temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp_dir / path.name
        main = tmp_dir / path.name
        if not main.exists():
            raise FileNotFoundError(f"Nothing was written to {main}; the writer did not produce {path.name}.")
        for side in sorted(p for p in tmp_dir.iterdir() if p != main):
            os.replace(side, path.parent / side.name)
        os.replace(main, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return Path(path)


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically (state dicts and tensors; loadable with ``weights_only=True``)."""
    import torch

    with atomic_output(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
