"""``LiveModel``: the model of one inference worker, swapped between batches without dropping one.

A watcher thread polls the rollout state; when it changes, it loads the new version beside the
serving one (requests keep flowing), then takes the swap lock, which a batch holds while it runs,
replaces the runner and reports back. So each batch runs on exactly one version, and once a
worker has acknowledged a switch it never answers with the old version again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from nl_lightning.errors import ConfigError
from nl_lightning.export.signature import ModelSignature
from nl_lightning.serve.rollout import LiveState, Rollout
from nl_lightning.serve.runners import Runner

logger = logging.getLogger(__name__)


class LiveModel:
    """Serve ``load(version)`` for the version ``rollout`` says is live, following its changes."""

    def __init__(
        self, rollout: Rollout, load: Callable[[str], Runner], worker: int, contract: ModelSignature,
        on_swap: Callable[[Runner | None, Runner], None] | None = None, poll_interval: float = 0.05,
    ) -> None:
        self.rollout, self.load, self.worker, self.contract = rollout, load, worker, contract
        self.on_swap, self.poll_interval = on_swap, poll_interval
        self._lock = threading.Lock()
        self._changed = rollout.watch()
        self._stop = threading.Event()
        self.runner: Runner | None = None
        self.serial = -1

    def start(self) -> None:
        """Load the live version now (the worker is not ready until it has), then follow changes."""
        state = self._changed() or self.rollout.read()
        runner = self._checked(self.load(state.version))
        self._swap(runner, state)
        threading.Thread(target=self._watch, name="nl-serve-hot-swap", daemon=True).start()

    @contextmanager
    def use(self) -> Iterator[Runner]:
        """The runner for one batch; a swap waits until the batch is done."""
        with self._lock:
            yield self.runner

    def close(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_interval):
            state = self._changed()
            if state is not None and state.serial != self.serial:
                self._follow(state)

    def _follow(self, state: LiveState) -> None:
        if self.runner is not None and state.version == self.runner.version:
            self._swap(self.runner, state)  # a restore after a failed switch: nothing to load
            return
        started = time.perf_counter()
        try:
            runner = self._checked(self.load(state.version))
        except Exception as err:  # keep serving the current version; the admin call reports this
            logger.exception("Worker %s could not load version %r", self.worker, state.version)
            self.rollout.report(self.worker, serial=state.serial, error=f"{type(err).__name__}: {err}",
                                **self.runner.describe())
            self.serial = state.serial
            return
        self._swap(runner, state)
        logger.info("Worker %s serves version %r (loaded in %.2f s)", self.worker, state.version,
                    time.perf_counter() - started)

    def _checked(self, runner: Runner) -> Runner:
        problem = self.contract.mismatch(runner.signature)
        if problem:
            raise ConfigError(
                f"version {runner.version!r} does not fit this server's request schema ({problem}); serve it "
                "from a server of its own"
            )
        return runner

    def _swap(self, runner: Runner, state: LiveState) -> None:
        with self._lock:
            previous, self.runner, self.serial = self.runner, runner, state.serial
        if self.on_swap is not None and previous is not runner:
            self.on_swap(previous, runner)
        self.rollout.report(self.worker, serial=state.serial, error=None, **runner.describe())
