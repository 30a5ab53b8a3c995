"""PredictionWriter: sharded, checksummed, resumable predictions (formats, row ids, SIGKILL, DDP)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from prediction_job import BATCH, ROWS, Echo, expected, inputs, run  # noqa: E402

from nl_lightning._lock import RunDirInUseError  # noqa: E402
from nl_lightning.data import ArrayDataModule  # noqa: E402
from nl_lightning.predict import PredictionWriter, ShardError, read_predictions  # noqa: E402

SCRIPT = Path(__file__).with_name("prediction_job.py")
ROOT = Path(__file__).parents[2]


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        if want[name].dtype.kind == "f":  # torch and NumPy sum in another order
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("fmt", ["parquet", "npz", "npy", "jsonl"])
def test_every_format_round_trips_with_row_ids(fmt, tmp_path):
    run(str(tmp_path), fmt=fmt)
    assert_same(read_predictions(tmp_path), expected(inputs()))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["complete"] and manifest["format"] == fmt
    shards = manifest["dataloaders"][0]["shards"]
    per_shard = 3 * BATCH  # rows_per_shard=20 rounds up to 3 batches of 8
    assert [(s["row_id_min"], s["row_id_max"], s["num_rows"]) for s in shards] == [
        (start, min(start + per_shard, ROWS) - 1, min(per_shard, ROWS - start)) for start in range(0, ROWS, per_shard)]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("part-")) == [s["path"] for s in shards]


def test_pickle_is_refused_when_writing_and_when_reading(tmp_path):
    with pytest.raises(ValueError, match="format='pickle' is not offered: pickle files run code when they are read"):
        PredictionWriter(str(tmp_path), format="pickle")
    run(str(tmp_path), fmt="npz")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["format"] = "pickle"  # a folder whose manifest claims pickle shards is never unpickled
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format='pickle' is not offered"):
        read_predictions(tmp_path)


def test_row_ids_are_the_source_rows_of_the_dataset(tmp_path):
    """Rows dropped by validation keep the ids of the rows around them."""
    x = inputs()
    x[[5, 40], 1, 1] = np.nan
    trainer = L.Trainer(logger=False, enable_progress_bar=False, callbacks=[PredictionWriter(str(tmp_path))])
    trainer.predict(Echo(), datamodule=ArrayDataModule(x_predict=x, batch_size=BATCH, on_bad="drop"))
    got = read_predictions(tmp_path)
    keep = np.setdiff1d(np.arange(ROWS), [5, 40])
    np.testing.assert_array_equal(got["row_id"], keep)
    np.testing.assert_array_equal(got["first"][:, 0], keep.astype(np.float32))  # the row each output came from


def test_a_row_id_the_batch_brings_is_used(tmp_path):
    x = torch.from_numpy(inputs(20))
    rows = [{"x": x[i], "row_id": torch.tensor(1000 + 7 * i)} for i in range(20)]
    trainer = L.Trainer(logger=False, enable_progress_bar=False, callbacks=[PredictionWriter(str(tmp_path))])
    trainer.predict(Echo(), torch.utils.data.DataLoader(rows, batch_size=BATCH))
    np.testing.assert_array_equal(read_predictions(tmp_path)["row_id"], 1000 + 7 * np.arange(20))


def test_a_changed_shard_is_detected(tmp_path):
    run(str(tmp_path))
    shard = sorted(tmp_path.glob("part-*"))[1]
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=rf"Shard .*{shard.name} does not match its SHA-256"):
        read_predictions(tmp_path)


def test_resume_skips_finished_shards_and_redoes_the_partial_one(tmp_path):
    with pytest.raises(RuntimeError, match="power cut"):
        run(str(tmp_path), model=Echo(crash_at=7))
    finished = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("part-*")}
    assert sorted(finished) == ["part-0-000-000000.npz", "part-0-000-000001.npz"]  # batches 0-5; 6 was buffered
    assert not (tmp_path / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="the prediction job did not finish"):
        read_predictions(tmp_path)
    model = Echo()
    trainer = run(str(tmp_path), model=model)
    assert model.calls == list(range(6, 12))  # the model never saw the written batches again
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("part-*") if p.name in finished} == finished
    assert_same(read_predictions(tmp_path), expected(inputs()))
    assert trainer.predict_loop.predictions == []  # keep_predictions=False: memory stays flat


def test_resume_with_other_settings_is_refused(tmp_path):
    run(str(tmp_path))
    with pytest.raises(ShardError, match=r"holds predictions of a run with other settings \(batch_sizes, num_batches"):
        run(str(tmp_path), batch_size=16)
    run(str(tmp_path), batch_size=16, overwrite=True)
    assert_same(read_predictions(tmp_path), expected(inputs()))
    assert len(list(tmp_path.glob("part-*"))) == 3  # 2 batches of 16 per shard: 6 batches -> 3 shards


def _interrupted(root: Path, keep: int = 2) -> None:
    """Leave ``root`` as a job killed after writing its first ``keep`` shards."""
    for shard in sorted(root.glob("part-*"))[keep:]:
        shard.unlink()
        (root / "_records" / f"{shard.name}.json").unlink()
    (root / "manifest.json").unlink()


@pytest.mark.parametrize("changed_row", [3, 40])  # in the first written shard, in the second
def test_resume_with_other_input_data_of_the_same_shape_is_refused(changed_row, tmp_path):
    run(str(tmp_path))
    _interrupted(tmp_path)
    x = inputs()
    x[changed_row, 2, 1] += 1.0  # same shape, same size, one value changed
    with pytest.raises(ShardError, match=rf"holds predictions of other input data: batch {changed_row // BATCH} is "
                                         r"not the batch part-0-000-00000\d\.npz was computed from.*overwrite: true"):
        run(str(tmp_path), x=x)
    assert not (tmp_path / "manifest.json").exists()  # nothing readable mixes the two
    run(str(tmp_path), x=x, overwrite=True)
    assert_same(read_predictions(tmp_path), expected(x))


def test_resume_with_another_model_is_refused(tmp_path):
    class Scaled(Echo):
        def __init__(self, weight: float) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.tensor(weight))

    run(str(tmp_path), model=Scaled(1.0))
    _interrupted(tmp_path)
    with pytest.raises(ShardError, match=r"holds predictions of another model \(.*Scaled sha256 \w{12} then, .*Scaled "
                                         r"sha256 \w{12} now\): resuming would mix the two models' rows"):
        run(str(tmp_path), model=Scaled(2.0))  # same class, other weights
    run(str(tmp_path), model=Scaled(1.0))  # the same model resumes
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["model"]["class"].endswith("Scaled") and len(manifest["model"]["weights_sha256"]) == 64
    assert manifest["data"]["datamodule"] == "nl_lightning.data.array_datamodule.ArrayDataModule"


def _holder(folder: Path) -> subprocess.Popen:
    """Another live process holding the folder's lock (as a running prediction job does)."""
    folder.mkdir(parents=True, exist_ok=True)
    code = ("import sys, time\nfrom nl_lightning._lock import acquire\nacquire(sys.argv[1])\n"
            "print('locked', flush=True)\ntime.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_live_job_into_the_folder_is_refused_and_deletes_nothing(tmp_path):
    run(str(tmp_path))
    before = {p.name: p.read_bytes() for p in tmp_path.glob("part-*")}
    holder = _holder(tmp_path)
    try:
        with pytest.raises(RunDirInUseError, match=rf"is being written by another run \(pid {holder.pid} .*two "
                                                   r"prediction jobs in one output_dir would overwrite"):
            run(str(tmp_path), overwrite=True)  # overwrite=True would have deleted the live job's shards
    finally:
        holder.kill()
        holder.wait()
    assert {p.name: p.read_bytes() for p in tmp_path.glob("part-*")} == before
    with pytest.warns(UserWarning, match="taking over a stale lock"):
        run(str(tmp_path))  # the holder is gone: its lock is stale
    assert not (tmp_path / ".nl_lightning.lock").exists()  # released at the end of the job


def _resume_with_record(root: Path, edit) -> None:
    run(str(root))
    _interrupted(root, keep=1)
    record_path = root / "_records" / "part-0-000-000000.npz.json"
    record = json.loads(record_path.read_text())
    edit(root, record_path, record)


@pytest.mark.parametrize("named", ["../outside.npz", "/tmp/outside.npz", "part-0-000-000001.npz"])
def test_a_record_naming_a_file_outside_its_own_shard_is_refused(named, tmp_path):
    root = tmp_path / "out"

    def point_elsewhere(root, record_path, record):
        target = (root / named) if not named.startswith("/") else tmp_path / "outside.npz"
        target.write_bytes(b"not a prediction")  # a real file with a matching checksum
        record.update(path=named if not named.startswith("/") else str(target), bytes=target.stat().st_size,
                      sha256=hashlib.sha256(target.read_bytes()).hexdigest())
        record_path.write_text(json.dumps(record))

    _resume_with_record(root, point_elsewhere)
    with pytest.raises(ShardError, match=r"part-0-000-000000\.npz\.json names the file .*, not its own shard "
                                         r"'part-0-000-000000\.npz'.*refused"):
        run(str(root))
    assert not (root / "manifest.json").exists()


def test_a_manifest_listing_a_file_outside_the_folder_is_not_read(tmp_path):
    run(str(tmp_path))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["dataloaders"][0]["shards"][0]["path"] = "../../etc/passwd"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=r"lists a shard '\.\./\.\./etc/passwd' that is not a file of"):
        read_predictions(tmp_path)


@pytest.mark.parametrize("content", [b"not json {", b"\xff\xfe", b"[1, 2]"], ids=["text", "binary", "a list"])
def test_a_record_that_is_not_json_is_named_on_resume(tmp_path, content):
    with pytest.raises(RuntimeError, match="power cut"):
        run(str(tmp_path), model=Echo(crash_at=7))
    record = sorted((tmp_path / "_records").glob("part-*.json"))[0]
    record.write_bytes(content)
    with pytest.raises(ShardError, match=rf"{record} is not a JSON record of nl_lightning's predictions .*Delete it"):
        run(str(tmp_path))


@pytest.mark.parametrize("prediction, error, message", [
    ([1, 2], TypeError, "predict_step returned a list for batch 0; PredictionWriter writes a tensor or a dict"),
    ({"p": torch.zeros(3)}, ValueError, r"Prediction column 'p' of batch 0 has shape \(3,\); every column needs one row per sample \(8\)"),
    ({"row_id": torch.zeros(8)}, ValueError, "'row_id' is reserved for the input row ids"),
])
def test_unwritable_predictions_are_refused(prediction, error, message, tmp_path):
    class Fixed(L.LightningModule):
        def predict_step(self, batch, batch_idx):
            return prediction

    with pytest.raises(error, match=message):
        run(str(tmp_path), model=Fixed())


def test_keep_predictions_returns_them_too(tmp_path):
    trainer = L.Trainer(logger=False, enable_progress_bar=False,
                        callbacks=[PredictionWriter(str(tmp_path), keep_predictions=True)])
    out = trainer.predict(Echo(), datamodule=ArrayDataModule(x_predict=inputs(), batch_size=BATCH))
    np.testing.assert_allclose(torch.cat([o["total"] for o in out]).numpy(), expected(inputs())["total"], rtol=1e-6, atol=1e-6)


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _started_job(out: Path, records: int, *args: str) -> subprocess.Popen:
    """prediction_job.py in a subprocess, returned once it has written ``records`` shard records."""
    job = subprocess.Popen([sys.executable, str(SCRIPT), str(out), *args], cwd=ROOT, env=ENV,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while len(list((out / "_records").glob("part-*.json"))) < records and time.monotonic() < deadline:
        assert job.poll() is None, job.stderr.read().decode()[-3000:]
        time.sleep(0.05)
    return job


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_writes_every_sample_exactly_once(tmp_path):
    out = tmp_path / "killed"
    job = _started_job(out, 2, "--delay", "0.2")
    job.send_signal(signal.SIGKILL)
    job.wait(30)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("part-*")}
    assert 2 <= len(before) < 4, sorted(before)  # killed mid-run, not after it
    resumed = subprocess.run([sys.executable, str(SCRIPT), str(out)], cwd=ROOT, env=ENV, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = read_predictions(out)
    assert len(np.unique(got["row_id"])) == len(got["row_id"]) == ROWS  # no duplicate, none missing
    run(str(tmp_path / "uninterrupted"))
    assert_same(got, read_predictions(tmp_path / "uninterrupted"))
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("part-*") if p.name in before} == before
    assert not list(out.glob(".part-*"))  # no temporary file left behind


@pytest.mark.slow
def test_ddp_two_processes_write_disjoint_shards_and_one_manifest(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--devices", "2", "--format", "parquet"],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["complete"]
    shards = manifest["dataloaders"][0]["shards"]
    assert {s["rank"] for s in shards} == {0, 1}
    rows = {rank: [] for rank in (0, 1)}
    for shard in shards:
        assert shard["path"].startswith(f"part-0-{shard['rank']:03d}-")
        rows[shard["rank"]].append(shard["num_rows"])
    assert sum(rows[0]) == sum(rows[1]) == ROWS // 2
    assert_same(read_predictions(tmp_path), expected(inputs()))


@pytest.mark.slow
def test_two_jobs_into_one_folder_at_once_the_second_is_refused_and_nothing_is_lost(tmp_path):
    out = tmp_path / "shared"
    first = _started_job(out, 1, "--stall_after", "3")  # stalls in its second shard while the second job runs
    try:
        before = {p.name: p.read_bytes() for p in out.glob("part-*")}
        second = subprocess.run([sys.executable, str(SCRIPT), str(out)], cwd=ROOT, env=ENV, capture_output=True,
                                text=True, timeout=300)
        assert first.poll() is None  # the two ran at once
        assert second.returncode != 0 and "two prediction jobs in one output_dir would overwrite" in second.stderr
        assert {p.name: p.read_bytes() for p in out.glob("part-*")} == before  # nothing of the first job touched
    finally:
        first.kill()
        first.wait(30)
    resumed = subprocess.run([sys.executable, str(SCRIPT), str(out)], cwd=ROOT, env=ENV, capture_output=True,
                             text=True, timeout=300)  # the first job, resumed after its kill, completes
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same(read_predictions(out), expected(inputs()))
