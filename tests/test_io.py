"""Atomic files and folders: a reader sees the old version or the new one, and a killed writer's
leftovers are removed by the next write."""

from __future__ import annotations

import os
import tempfile

import pytest

from nl_lightning import _io as atomic
from nl_lightning._io import atomic_output, clean_stale, locked_temp_dir, staged_dir


def _tree(path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("previous")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("boom")
    assert target.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_atomic_output_requires_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="did not produce model.onnx"):
        with atomic_output(tmp_path / "model.onnx"):
            pass


@pytest.fixture
def old_export(tmp_path):
    out = tmp_path / "export"
    with staged_dir(out) as build:
        (build / "model.onnx").write_bytes(b"old graph")
        (build / "manifest.json").write_text("old")
    return out


def test_staged_dir_replaces_the_whole_folder_in_one_step(old_export, tmp_path):
    with staged_dir(old_export) as build:
        (build / "model.pt2").write_bytes(b"new program")
        (build / "manifest.json").write_text("new")
        assert _tree(old_export) == {"manifest.json": b"old", "model.onnx": b"old graph"}  # untouched until the end
        assert build.parent.name.startswith(".export.tmp-") and build.parent.parent == tmp_path
    assert _tree(old_export) == {"manifest.json": b"new", "model.pt2": b"new program"}  # no stale model.onnx
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # old folder and staging area gone


def test_a_failed_build_leaves_the_old_folder_whole(old_export, tmp_path):
    with pytest.raises(RuntimeError, match="killed"):
        with staged_dir(old_export) as build:
            (build / "model.onnx").write_bytes(b"new graph")
            raise RuntimeError("killed")
    assert _tree(old_export) == {"manifest.json": b"old", "model.onnx": b"old graph"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_without_an_atomic_exchange_the_fallback_still_swaps(old_export, tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)  # as on macOS / filesystems without it
    with staged_dir(old_export) as build:
        (build / "manifest.json").write_text("new")
    assert _tree(old_export) == {"manifest.json": b"new"} and sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_library_temp_files_go_into_the_staging_folder(tmp_path):
    with staged_dir(tmp_path / "export") as build:
        with tempfile.NamedTemporaryFile() as f:
            assert os.path.dirname(f.name) == str(build.parent)  # removed with it, even after a kill
    assert tempfile.gettempdir() != str(build.parent)


def test_stale_folders_of_dead_writers_go_and_live_ones_stay(tmp_path):
    target = tmp_path / "export"
    stale = tmp_path / ".export.tmp-dead1234"  # a writer killed mid-build: nobody holds its lock
    (stale / "build").mkdir(parents=True)
    (stale / "build" / "model.onnx").write_bytes(b"half")
    (tmp_path / ".other.tmp-x").mkdir()  # another target's: not ours to judge
    with locked_temp_dir(target) as live:  # the next writer removes the stale folder on its way in
        assert not stale.exists()
        assert clean_stale(target) == [] and live.is_dir()  # while a live writer's folder stays
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-x"]


# A child process rewriting one JSON file as fast as it can: {"v": i, "pad": i's last digit * N}.
_WRITER = """
import json, sys
from nl_lightning._io import write_atomic
path, size, durable = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
print("ready", flush=True)
i = 0
while True:
    write_atomic(path, json.dumps({"v": i, "pad": str(i % 10) * size}), durable=durable)
    i += 1
"""


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "not-durable"])
def test_write_atomic_never_leaves_a_torn_file_when_its_writer_is_killed(tmp_path, durable):
    """SIGKILL the writer at random moments, again and again: the target always parses, and holds
    one complete version (the previous or the next), never a mix or a prefix."""
    import json
    import random
    import signal
    import subprocess
    import sys
    import time

    size, target, rng = 1 << 20, tmp_path / "state.json", random.Random(0)
    atomic.write_atomic(target, json.dumps({"v": -1, "pad": "x" * size}))
    versions = set()
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), str(size), "1" if durable else "0"],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.02, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        data = json.loads(target.read_bytes())  # a torn write fails here
        assert data["pad"] == ("x" if data["v"] < 0 else str(data["v"] % 10)) * size
        versions.add(data["v"])
    assert len(versions) > 2  # the writers did replace the file between kills
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]  # a killed write's temporary file
    assert all(name.startswith(f".{target.name}{atomic.TMP_MARK}") for name in leftovers), leftovers


def test_staged_dir_keep_existing_lets_the_first_writer_win(old_export, tmp_path):
    """A cache that several processes may build at once: a folder already in place is kept whole."""
    with staged_dir(old_export, keep_existing=True) as build:
        (build / "model.onnx").write_bytes(b"second build")
    assert _tree(old_export) == {"manifest.json": b"old", "model.onnx": b"old graph"}
    with staged_dir(tmp_path / "fresh", keep_existing=True) as build:
        (build / "a.npy").write_bytes(b"first")
    assert _tree(tmp_path / "fresh") == {"a.npy": b"first"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "fresh"]


def test_arrays_sha256_sees_values_names_dtypes_and_shapes():
    import numpy as np
    import torch

    from nl_lightning._io import arrays_sha256

    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    base = arrays_sha256([("x", x), ("n", 3)])
    assert arrays_sha256([("x", x.clone()), ("n", 3)]) == base  # the same content, another tensor
    changed = x.clone()
    changed[2, 3] += 1
    assert len({base, arrays_sha256([("x", changed), ("n", 3)]), arrays_sha256([("y", x), ("n", 3)]),
                arrays_sha256([("x", x.reshape(4, 3)), ("n", 3)]), arrays_sha256([("x", x.view(torch.int32)), ("n", 3)]),
                arrays_sha256([("x", x), ("n", 4)])}) == 6
    assert arrays_sha256([("x", x.numpy())]) == arrays_sha256([("x", x.numpy().copy())])
    assert arrays_sha256([("b", torch.zeros(2, dtype=torch.bfloat16)), ("e", torch.zeros(0)), ("a", np.zeros(0))])
