"""Study storage: SQLite in the study folder by default, any SQLAlchemy URL (PostgreSQL) otherwise.

The study process opens it with Optuna's heartbeat: a running trial whose process died (killed,
out of memory, machine lost) stops beating, is marked failed after ``grace_period`` by the next
worker to start a trial, and is retried with the same parameters by
``RetryHeartbeatStaleTrialCallback`` (named ``RetryFailedTrialCallback`` before Optuna 4.9). Trial processes open it without a heartbeat (they only report).
No lightning import.
"""

from __future__ import annotations

import random
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from nl_lightning.errors import MissingPackageError, NLUserError

STORAGE_ENV = "NL_LIGHTNING_TUNE_STORAGE"
"""Environment variable that hands the storage URL to trial processes (never written to disk:
a PostgreSQL URL may hold a password)."""


class StorageError(NLUserError, ValueError):
    """A study storage URL that cannot be opened (unknown scheme, server not reachable)."""


def default_storage_url(output_dir: str | Path) -> str:
    return f"sqlite:///{(Path(output_dir) / 'study.db').resolve()}"


def open_storage(
    url: str, heartbeat_interval: int | None = None, grace_period: int | None = None, max_retry: int | None = 3,
    skip_compatibility_check: bool = False,
) -> RDBStorage:
    """An ``RDBStorage``; with ``heartbeat_interval``, stale trials are failed and retried."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # Several processes write one SQLite file: wait for its lock instead of failing at once.
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            return _rdb_storage(url, engine_kwargs, heartbeat_interval, grace_period, max_retry, skip_compatibility_check)
        except ImportError as err:
            raise MissingPackageError(
                f"Storage {redact(url)} needs a database driver that is not installed ({err}); for PostgreSQL: "
                "pip install 'psycopg[binary]'."
            ) from err
        except Exception as err:
            if not _creation_race(err) or attempt == _CREATE_ATTEMPTS - 1:
                clear = _storage_error(url, err)
                if clear is err:
                    raise
                raise clear from err
            time.sleep(random.uniform(0.05, 0.3))  # another process is creating the tables: use them once made
    raise AssertionError("unreachable")


_CREATE_ATTEMPTS = 5


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], heartbeat_interval: int | None, grace_period: int | None,
                 max_retry: int | None, skip_compatibility_check: bool) -> RDBStorage:
    with warnings.catch_warnings():  # the heartbeat API is marked experimental in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry) if heartbeat_interval else None
        return RDBStorage(
            url, engine_kwargs=engine_kwargs, skip_compatibility_check=skip_compatibility_check,
            heartbeat_interval=heartbeat_interval, grace_period=grace_period, heartbeat_stale_trial_callback=retry,
        )


def _creation_race(err: Exception) -> bool:
    """Two processes creating one new database's tables at once: the loser sees them appear."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    text = str(getattr(err, "orig", err))
    return isinstance(err, IntegrityError) or (isinstance(err, OperationalError) and "already exists" in text)


def _storage_error(url: str, err: Exception) -> Exception:
    """A one-line ``StorageError`` for what a user can fix (scheme, reachability); other errors as they are."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    fix = "or leave `storage` unset for SQLite in the study folder"
    if isinstance(err, ArgumentError):
        scheme = url.split(":", 1)[0]
        return StorageError(f"storage {redact(url)}: {scheme!r} is not a database URL SQLAlchemy knows ({err}); use "
                            f"sqlite:///path/study.db or postgresql://user:password@host/db, {fix}.")
    if isinstance(err, OperationalError):
        reason = " ".join(str(getattr(err, "orig", err)).split())
        return StorageError(f"storage {redact(url)} cannot be opened: {reason[:300]}. Check that the server runs and "
                            f"the host, port, database and credentials, {fix}.")
    return err


def counted_trials(study: optuna.Study) -> int:
    """Finished trials that count against ``n_trials``: complete, pruned and failed ones, except a
    failure that was retried (its retry counts instead, so a killed trial is not counted twice)."""
    trials = study.get_trials(deepcopy=False)
    with warnings.catch_warnings():  # retry_history is marked experimental in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retried = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(1 for t in trials if t.state in finished and t.number not in retried)


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: show no part that could be a secret
        return url.split("@")[-1]
