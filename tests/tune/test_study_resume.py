"""SIGKILL of the study process mid-trial, then the same command again: the study completes with no
trial lost (the killed one is retried with its parameters) and none counted twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tune_utils import write_tune

from nl_lightning.tune.storage import counted_trials


def _tune(config: Path, cwd: Path, log: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "nl_lightning", "tune", "--config", str(config), *args],
                                cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_for(path: Path, proc: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"tune exited early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.mark.slow
def test_sigkill_then_rerun_completes_without_losing_or_double_counting(tmp_path, classifier_fit):
    study_dir = tmp_path / "study"
    config = write_tune(
        tmp_path / "resume.yaml", fit_config=str(classifier_fit), n_trials=3, study_name="resume",
        output_dir=str(study_dir), sampler={"name": "random"}, pruner="none", plots=False,
        heartbeat_interval=1, grace_period=2,
        space={"model.init_args.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        enqueue=[{"model.init_args.optimizer.lr": lr} for lr in (1e-3, 2e-3)],
        overrides={"trainer.max_epochs": 3},
    )
    first = _tune(config, tmp_path, tmp_path / "first.log")
    pid_file = study_dir / "trial_0001" / "trial.pid"
    _wait_for(pid_file, first, tmp_path / "first.log")
    trial_pid = int(pid_file.read_text())
    first.send_signal(signal.SIGKILL)
    first.wait()
    deadline = time.monotonic() + 30
    while _alive(trial_pid) and time.monotonic() < deadline:  # dies with its study (PR_SET_PDEATHSIG)
        time.sleep(0.1)
    assert not _alive(trial_pid), "the trial process outlived the killed study process"

    storage = f"sqlite:///{study_dir / 'study.db'}"
    killed = optuna.load_study(study_name="resume", storage=storage).trials
    assert [t.state for t in killed] == [TrialState.COMPLETE, TrialState.RUNNING]

    # The re-run trains inline (no trial-process server to start): the launcher is not part of a study.
    second = _tune(config, tmp_path, tmp_path / "second.log", "--launcher", "inline")
    second.wait(timeout=600)
    output = (tmp_path / "second.log").read_text()
    assert second.returncode == 0, output
    study = optuna.load_study(study_name="resume", storage=storage)
    trials = study.trials
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(numbers)))  # unique and gap-free
    assert trials[1].state == TrialState.FAIL  # the killed one, failed by the heartbeat...
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE  # ...and retried once
    assert retries[0].params == trials[1].params == {"model.init_args.optimizer.lr": 2e-3}
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3 == counted_trials(study)
    assert len(trials) == 4  # 3 counted + the killed attempt
    assert "Best trial" in output and "best.yaml" in output
