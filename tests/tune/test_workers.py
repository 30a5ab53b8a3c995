"""Two worker processes on one study: SQLite in the study folder, and a real PostgreSQL server that
the test starts (pgserver: PostgreSQL in a wheel, on a Unix socket in a temp folder) and stops."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tune_utils import make_config

from nl_lightning.tune.storage import counted_trials
from nl_lightning.tune.study import run_study

N_TRIALS, N_WORKERS = 4, 2


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of its own, stopped (and its data folder deleted) after the test. As root,
    pgserver runs it as a `pgserver` system user, so the data folder lives in a short /tmp path of
    its own (not under pytest's private temp folder)."""
    import pgserver  # the dev extra installs it; a missing install is a failure, not a skip
    import psycopg  # noqa: F401

    server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="nl-pg-")), cleanup_mode="delete")
    try:
        url = server.get_uri()
        server.psql("CREATE DATABASE tune;")
        yield url.replace("/postgres?", "/tune?").replace("postgresql://", "postgresql+psycopg://")
    finally:
        server.cleanup()
    assert not Path(server.pgdata).exists()


def _check_shared_study(study: optuna.Study) -> None:
    trials = study.trials
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(numbers))) and len(set(numbers)) == len(numbers)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.state) for t in trials]
    # Each worker stops once N_TRIALS are finished; the other may finish the trial it was running.
    assert N_TRIALS <= counted_trials(study) <= N_TRIALS + N_WORKERS - 1
    assert len({t.user_attrs["pid"] for t in trials}) == N_WORKERS  # both workers ran trials
    assert len({t.user_attrs["run_dir"] for t in trials}) == len(trials)  # one run folder per trial


def _config(tmp_path, fit, storage=None):
    return make_config(
        tmp_path, fit, n_trials=N_TRIALS, n_workers=N_WORKERS, launcher="inline", sampler={"name": "random"},
        pruner="none", storage=storage, overrides={"trainer.max_epochs": 1},
        space={"model.init_args.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    )


@pytest.mark.slow
def test_two_workers_share_a_sqlite_study(tmp_path, classifier_fit):
    study = run_study(_config(tmp_path, classifier_fit), out=lambda line: None)
    assert Path(tmp_path / "study" / "study.db").is_file()
    _check_shared_study(study)


@pytest.mark.slow
def test_two_workers_share_a_postgresql_study(tmp_path, classifier_fit, postgres_url):
    study = run_study(_config(tmp_path, classifier_fit, storage=postgres_url), out=lambda line: None)
    assert not (tmp_path / "study" / "study.db").exists()  # nothing went to the default SQLite file
    _check_shared_study(study)
    assert optuna.storages.RDBStorage(postgres_url).get_all_studies()[0].study_name == "test"
