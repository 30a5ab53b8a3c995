"""The bookkeeping of sharded predictions: per-shard records, the run's plan, the merged manifest.

Each shard gets a small JSON record (row range, row count, SHA-256, column specs) written after
the shard itself, so a record always describes a complete file. A resumed job keeps the shards
whose record and checksum agree and redoes the rest; ``manifest.json`` is the merge of every
rank's records, written by rank 0 at the end. ``read_predictions`` reads it all back, verified.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from nl_lightning._io import bytes_sha256, file_sha256, write_atomic, write_json
from nl_lightning.errors import MissingFileError, NLUserError
from nl_lightning.predict.shards import SUFFIXES, Columns, column_specs, decode_shard, encode_shard

MANIFEST = "manifest.json"
RECORDS = "_records"
_SHARD_NAME = re.compile(r"part-\d+-\d{3,}-\d{6,}\.(parquet|npy|npz|jsonl)")
_FIX = ("predict into a new output_dir, or set overwrite: true on PredictionWriter (--trainer.callbacks.init_args."
        "overwrite=true) to replace what it holds")


class ShardError(NLUserError, ValueError):
    """Predictions on disk that do not match their manifest, or a resume that cannot continue them."""


def read_record(path: Path) -> dict[str, Any]:
    """One JSON record of the folder; a file that is not a JSON object is named in the error."""
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        record = err
    if not isinstance(record, dict):
        raise ShardError(f"{path} is not a JSON record of nl_lightning's predictions ({record}): it was changed "
                         "outside nl_lightning. Delete it to redo its shard, or write into a new output_dir.")
    return record


def shard_name(dataloader_idx: int, rank: int, shard: int, fmt: str) -> str:
    return f"part-{dataloader_idx}-{rank:03d}-{shard:06d}{SUFFIXES[fmt]}"


def write_shard(root: Path, name: str, columns: Columns, fmt: str, **meta: Any) -> dict[str, Any]:
    """Write one shard, then its record; returns the record."""
    data = encode_shard(columns, fmt)
    sha256 = write_atomic(root / name, data)
    ids = columns["row_id"]
    record = {"path": name, **meta, "num_rows": len(ids), "row_id_min": int(ids.min()), "row_id_max": int(ids.max()),
              "bytes": len(data), "sha256": sha256, "columns": column_specs(columns)}
    write_json(root / RECORDS / f"{name}.json", record)
    return record


def completed_shards(root: Path, rank: int) -> dict[tuple[int, int], dict[str, Any]]:
    """``(dataloader_idx, shard) -> record`` for this rank's shards that are on disk and intact."""
    done = {}
    for path in sorted((root / RECORDS).glob(f"part-*-{rank:03d}-*.json")):
        record = read_shard_record(path)
        shard = root / record["path"]
        if shard.is_file() and shard.stat().st_size == record["bytes"] and file_sha256(shard) == record["sha256"]:
            done[(record["dataloader_idx"], record["shard"])] = record
    return done


def read_shard_record(path: Path) -> dict[str, Any]:
    """One shard record, checked: a JSON object (``read_record``) naming the shard it is named after, a
    file of the output folder itself. Records are untrusted input: one naming ``../x`` or
    ``/etc/passwd`` would otherwise be kept on resume and listed in the manifest."""
    record = read_record(path)
    shard = path.name.removesuffix(".json")
    named = record.get("path")
    if named != shard or not _SHARD_NAME.fullmatch(shard):
        raise ShardError(
            f"Shard record {path} names the file {named!r}, not its own shard {shard!r}; a prediction folder lists "
            f"only the shards inside it, so the record is refused. Delete it, or {_FIX}."
        )
    if (path.parent.parent / shard).is_symlink():
        raise ShardError(f"Shard {path.parent.parent / shard} is a symbolic link; a prediction folder holds its "
                         f"own shards. Delete it, or {_FIX}.")
    return record


def check_plan(root: Path, rank: int, plan: dict[str, Any]) -> None:
    """Record this rank's plan, or check it against the one a previous (interrupted) run recorded:
    the same model (``plan["model"]``), data sizes, batch size, devices and format."""
    path = root / RECORDS / f"plan-{rank:03d}.json"
    if not path.is_file():
        write_json(path, plan)
        return
    before = read_record(path)
    if before.get("model") != plan.get("model"):
        raise ShardError(
            f"{root} holds predictions of another model ({_model_name(before.get('model'))} then, "
            f"{_model_name(plan.get('model'))} now): resuming would mix the two models' rows; {_FIX}."
        )
    if before != plan:
        changed = sorted(k for k in set(before) | set(plan) if before.get(k) != plan.get(k))
        raise ShardError(
            f"{root} holds predictions of a run with other settings ({', '.join(changed)}: "
            f"{ {k: before.get(k) for k in changed} } then, { {k: plan.get(k) for k in changed} } now). "
            f"Resume with the same data, batch size, devices, format and rows_per_shard, or {_FIX}."
        )


def check_inputs(root: Path, record: dict[str, Any], position: int, digest: str, batch_idx: int) -> None:
    """A batch the folder holds predictions of must be the batch read now (same rows, same values)."""
    recorded = record.get("inputs_sha256") or []
    then = recorded[position] if position < len(recorded) else None
    if then == digest:
        return
    raise ShardError(
        f"{root} holds predictions of other input data: batch {batch_idx} is not the batch {record['path']} "
        f"was computed from (input SHA-256 {str(then)[:12]} then, {digest[:12]} now); resuming would mix old "
        f"and new rows; {_FIX}."
    )


def _model_name(model: Any) -> str:
    if not isinstance(model, dict):
        return "a model it did not record"
    digest = str(model.get("model_sha256") or model.get("weights_sha256") or "")
    backend = f"{model['backend']} " if model.get("backend") else ""
    artifact = f" {model['onnx_format']}" if model.get("onnx_format") else ""
    return f"{backend}{model.get('class', '?')}{artifact} sha256 {digest[:12]}"


def merge_manifest(root: Path, fmt: str, world_size: int, **about: Any) -> dict[str, Any]:
    """Merge every rank's records into ``manifest.json``; ``complete`` says whether each dataloader has
    as many rows as the ranks' plans planned. ``about`` (the model, the data) is recorded as given."""
    records = [read_shard_record(p) for p in sorted((root / RECORDS).glob("part-*.json"))]
    plans = [read_record(root / RECORDS / f"plan-{rank:03d}.json") for rank in range(world_size)]
    loaders = []
    for index in range(len(plans[0]["planned_rows"])):
        planned = [plan["planned_rows"][index] for plan in plans]
        expected = None if None in planned else sum(planned)
        shards = sorted((r for r in records if r["dataloader_idx"] == index), key=lambda r: (r["row_id_min"], r["rank"]))
        rows = sum(r["num_rows"] for r in shards)
        loaders.append({"dataloader_idx": index, "num_rows": rows, "expected_rows": expected,
                        "columns": shards[0]["columns"] if shards else {}, "shards": shards})
    manifest = {
        "manifest_version": 2, "format": fmt, "world_size": world_size, "model": plans[0].get("model"), **about,
        "complete": all(d["expected_rows"] in (None, d["num_rows"]) for d in loaders),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "dataloaders": loaders,
    }
    write_json(root / MANIFEST, manifest)
    return manifest


def read_predictions(output_dir: str | Path, dataloader_idx: int = 0) -> Columns:
    """Every row of ``output_dir``'s predictions, sorted by ``row_id``, each shard checked against its
    SHA-256; raises ``ShardError`` for a missing, changed or incomplete set of shards."""
    root = Path(output_dir)
    if not (root / MANIFEST).is_file():
        raise MissingFileError(f"No {MANIFEST} in {root}: the prediction job did not finish (resume it to complete it).")
    manifest = json.loads((root / MANIFEST).read_text())
    loaders = {d["dataloader_idx"]: d for d in manifest["dataloaders"]}
    if dataloader_idx not in loaders:
        raise ShardError(f"{root} has predictions for dataloaders {sorted(loaders)}, not {dataloader_idx}.")
    entry = loaders[dataloader_idx]
    if not manifest["complete"]:
        raise ShardError(f"{root} is incomplete ({entry['num_rows']} of {entry['expected_rows']} rows); resume the job.")
    parts = [_read_shard(root, shard, manifest["format"], entry["columns"]) for shard in entry["shards"]]
    if not parts:
        return {}
    columns = {name: np.concatenate([p[name] for p in parts]) for name in entry["columns"]}
    order = np.argsort(columns["row_id"], kind="stable")
    return {name: values[order] for name, values in columns.items()}


def _read_shard(root: Path, shard: dict[str, Any], fmt: str, specs: dict[str, Any]) -> Columns:
    name = shard.get("path")
    if not isinstance(name, str) or not _SHARD_NAME.fullmatch(name):
        raise ShardError(f"{root / MANIFEST} lists a shard {name!r} that is not a file of {root}; refusing to read it.")
    path = root / name
    if not path.is_file():
        raise ShardError(f"Shard {path} listed in {root / MANIFEST} is missing.")
    data = path.read_bytes()
    if bytes_sha256(data) != shard["sha256"]:
        raise ShardError(f"Shard {path} does not match its SHA-256 in {root / MANIFEST}: it was changed or corrupted.")
    return decode_shard(data, fmt, specs)

