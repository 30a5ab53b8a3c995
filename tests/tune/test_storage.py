"""Study storage: a new SQLite study created by several processes at once, and one-line errors for
storages that cannot be opened."""

from __future__ import annotations

import multiprocessing

import optuna
import pytest

from nl_lightning.tune.storage import StorageError, open_storage


def _create(url: str, barrier, results) -> None:
    barrier.wait()
    try:
        optuna.create_study(study_name="s", storage=open_storage(url), load_if_exists=True)
        results.put("ok")
    except Exception as err:  # reported to the test, not raised in the child
        results.put(f"{type(err).__name__}: {err}"[:300])


def test_processes_creating_one_new_sqlite_study_at_once_all_succeed(tmp_path):
    """Before: the loser of the race to create the tables got an IntegrityError / 'table already exists'
    (about one time in two with two processes)."""
    ctx = multiprocessing.get_context("fork")
    outcomes = []
    for round_ in range(4):
        url = f"sqlite:///{tmp_path / f'round{round_}.db'}"
        barrier, results = ctx.Barrier(3), ctx.Queue()
        procs = [ctx.Process(target=_create, args=(url, barrier, results)) for _ in range(3)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(120)
        outcomes += [results.get(timeout=5) for _ in procs]
    assert outcomes == ["ok"] * 12, outcomes


@pytest.mark.parametrize(
    "url, match",
    [
        ("foo://x", r"storage foo://x: 'foo' is not a database URL SQLAlchemy knows .* use sqlite:///path/study\.db"),
        ("postgresql://user:secret@127.0.0.1:9/db",
         r"storage postgresql://user:\*\*\*@127\.0\.0\.1:9/db cannot be opened: .*refused.*Check that the server runs"),
    ],
)
def test_storages_that_cannot_be_opened_are_one_clear_error(url, match):
    with pytest.raises(StorageError, match=match) as info:
        open_storage(url)
    assert "secret" not in str(info.value)
