"""Write small arrays in every supported file format (imported by the data tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

FORMATS = ["npy", "npz", "npz_compressed", "hdf5", "parquet", "pt"]


def write(fmt: str, folder: Path, x: np.ndarray, y: np.ndarray | None, name: str = "data") -> dict[str, Any]:
    """Write ``x`` (and ``y``) in ``fmt``; return FileDataModule arguments that read them back."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "npy":
        path = folder / name
        path.mkdir(exist_ok=True)
        np.save(path / "x.npy", x)
        if y is not None:
            np.save(path / "y.npy", y)
        return {"path": str(path), "features": "x", "targets": "y"}
    if fmt in ("npz", "npz_compressed"):
        path = folder / f"{name}.npz"
        save = np.savez_compressed if fmt == "npz_compressed" else np.savez
        save(path, x=x, **({} if y is None else {"y": y}))
        return {"path": str(path), "features": "x", "targets": "y"}
    if fmt == "hdf5":
        path = folder / f"{name}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("group/x", data=x, chunks=(4, *x.shape[1:]))
            if y is not None:
                f["group/y"] = y
        return {"path": str(path), "features": "/group/x", "targets": "/group/y"}
    if fmt == "parquet":
        path = folder / f"{name}.parquet"
        columns = {"x": pa.array(list(x.reshape(len(x), -1)), type=pa.list_(pa.from_numpy_dtype(x.dtype)))}
        if y is not None:
            columns["y"] = y
        pq.write_table(pa.table(columns), path, row_group_size=16)  # several row groups
        return {"path": str(path), "features": "x", "targets": "y", "feature_shape": list(x.shape[1:])}
    if fmt == "pt":
        path = folder / f"{name}.pt"
        torch.save({"x": torch.from_numpy(x), **({} if y is None else {"y": torch.from_numpy(y)})}, path)
        return {"path": str(path), "features": "x", "targets": "y"}
    raise ValueError(fmt)


def file_datamodule_kwargs(spec: dict[str, Any], split: str = "train") -> dict[str, Any]:
    """Turn a :func:`write` result into FileDataModule keyword arguments for ``split``."""
    kwargs = {k: v for k, v in spec.items() if k != "path"}
    kwargs[f"{split}_path"] = spec["path"]
    return kwargs
