"""Read a W&B offline run (``run-<id>.wandb``): the history rows it holds, as the sync would upload them.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic, version), then LevelDB-style
32 KiB blocks of records (CRC 4 bytes, length 2, type 1: full / first / middle / last), each payload
a ``wandb_internal_pb2.Record``. wandb 0.31 ships no Python reader, so this is the test's own.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

HEADER, BLOCK, RECORD_HEADER = 7, 32 * 1024, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: str | Path) -> list[bytes]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    out, pending, pos = [], b"", HEADER
    while pos + RECORD_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < RECORD_HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + RECORD_HEADER])
        payload = data[pos + RECORD_HEADER:pos + RECORD_HEADER + length]
        pos += RECORD_HEADER + length
        if kind == 0 and length == 0:
            break
        pending = payload if kind in (FULL, FIRST) else pending + payload
        if kind in (FULL, LAST):
            out.append(pending)
    return out


def history(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every history row of the offline run in ``run_dir`` (``offline-run-*``), values JSON-decoded."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = Path(run_dir).glob("run-*.wandb")
    rows = []
    for raw in records(path):
        record = pb.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows
