"""Rollout + LiveModel in one process: switches wait for every worker, failures roll back, batches
never straddle a swap. (The same machinery across real processes is in test_server.py.)"""

from __future__ import annotations

import threading
import time

import pytest

from nl_lightning.serve.hot_swap import LiveModel
from nl_lightning.serve.rollout import Rollout, RolloutError
from nl_lightning.export.signature import ModelSignature

SIGNATURE = ModelSignature("classification", None, 4, 8, 3)


class FakeRunner:
    backend = "torch"

    def __init__(self, version: str, signature: ModelSignature = SIGNATURE) -> None:
        self.version, self.signature = version, signature

    def describe(self) -> dict:
        return {"version": self.version, "backend": self.backend}


def load(version: str) -> FakeRunner:
    if version == "broken":
        raise RuntimeError("truncated file")
    if version == "wide":
        return FakeRunner(version, ModelSignature("classification", None, 5, 8, 3))
    time.sleep(0.05)  # loading takes a while; requests keep flowing meanwhile
    return FakeRunner(version)


@pytest.fixture
def fleet(tmp_path):
    rollout = Rollout(tmp_path, num_workers=2, timeout=10)
    rollout.begin("a")
    workers = [LiveModel(Rollout(tmp_path), load, i, SIGNATURE, poll_interval=0.01) for i in range(2)]
    for worker in workers:
        worker.start()
    yield rollout, workers
    for worker in workers:
        worker.close()


def versions(workers) -> list[str]:
    return [w.runner.version for w in workers]


def test_switch_returns_once_every_worker_serves_the_new_version(fleet):
    rollout, workers = fleet
    assert rollout.switch("b") == {"version": "b", "previous": "a", "serial": 1, "history": ["a"], "workers": 2}
    assert versions(workers) == ["b", "b"]
    assert rollout.rollback()["version"] == "a" and versions(workers) == ["a", "a"]
    assert rollout.read().history == []


def test_switching_to_the_live_version_changes_nothing(fleet):
    rollout, workers = fleet
    assert rollout.switch("a")["serial"] == 0 and rollout.read().history == []


@pytest.mark.parametrize("version, message", [
    ("broken", "Version 'broken' failed to load in worker 0: RuntimeError: truncated file. Version 'b' stays live."),
    ("wide", "does not fit this server's request schema \\(input_dim: serving 4, new 5\\)"),
])
def test_a_version_that_fails_in_a_worker_is_rolled_back(fleet, version, message):
    rollout, workers = fleet
    rollout.switch("b")
    with pytest.raises(RolloutError, match=message) as err:
        rollout.switch(version)
    assert err.value.status == 409
    state = rollout.read()
    assert (state.version, state.history) == ("b", ["a"]) and versions(workers) == ["b", "b"]
    assert all(r["version"] == "b" and r["error"] is None for r in rollout.workers())  # acknowledged the restore


def test_rollback_needs_a_previous_version(fleet):
    with pytest.raises(RolloutError, match="Nothing to roll back to: version 'a' is the first one served."):
        fleet[0].rollback()


def test_a_silent_worker_times_out_with_a_504(tmp_path):
    rollout = Rollout(tmp_path, num_workers=2, timeout=0.5)
    rollout.begin("a")
    worker = LiveModel(Rollout(tmp_path), load, 0, SIGNATURE, poll_interval=0.01)
    worker.start()
    with pytest.raises(RolloutError, match=r"Workers \[1\] did not acknowledge the switch within reload_timeout=0.5 s") as err:
        rollout.switch("b")
    assert err.value.status == 504
    worker.close()


def test_a_swap_waits_for_the_batch_in_flight(fleet):
    rollout, workers = fleet
    events = []

    def batch() -> None:
        with workers[0].use() as runner:
            events.append(("batch starts", runner.version))
            time.sleep(0.4)
            events.append(("batch ends", runner.version))

    thread = threading.Thread(target=batch)
    thread.start()
    time.sleep(0.05)
    rollout.switch("b")
    events.append(("switched", workers[0].runner.version))
    thread.join()
    assert events == [("batch starts", "a"), ("batch ends", "a"), ("switched", "b")]


def test_swaps_are_reported_for_the_version_gauge(tmp_path):
    rollout = Rollout(tmp_path, num_workers=1, timeout=10)
    rollout.begin("a")
    seen = []
    worker = LiveModel(Rollout(tmp_path), load, 0, SIGNATURE, lambda old, new: seen.append(
        (old and old.version, new.version)), poll_interval=0.01)
    worker.start()
    rollout.switch("b")
    worker.close()
    assert seen == [(None, "a"), ("a", "b")]
