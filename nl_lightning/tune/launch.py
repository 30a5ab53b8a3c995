"""How a trial runs: in its own process (forked from a pre-imported server, or a fresh ``python``
for DDP), or inside the study process; and the body of a trial process (``process_main``).

A trial process can die any way (SIGKILL, the out-of-memory killer, a segfault) without taking
the study with it: the launcher records the exit as the trial's failure and the study goes on.
Trial processes die with the study process (``PR_SET_PDEATHSIG``), so a killed study leaves no
orphan training. ``forkserver`` imports torch and Lightning once and forks each trial from there
(no fresh interpreter and no imports per trial; what a trial still costs: ``benchmarks/tune.py``);
``subprocess`` starts ``python -m nl_lightning.tune.launch``, which Lightning's DDP launcher can
re-run for every rank.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nl_lightning._io import write_atomic
from nl_lightning._process import die_with_parent, redirect_output
from nl_lightning.errors import ConfigError
from nl_lightning.tune.storage import STORAGE_ENV
from nl_lightning.tune.trial import PID_FILE, SPEC_FILE, TrialSpec, connect, run_trial
_PRELOAD = ["nl_lightning.tune.trial", "nl_lightning.tune.study", "nl_lightning.tune.warmup"]


def choose_launcher(name: str, fit_config: Mapping[str, Any]) -> str:
    """'auto' -> 'subprocess' when the fit runs several processes (DDP), else 'forkserver'."""
    if name != "auto":
        if name in ("forkserver", "inline") and is_multi_process(fit_config):
            raise ConfigError(
                f"launcher={name!r} cannot run a multi-process (DDP) fit: Lightning re-launches the command line "
                "for each rank. Use launcher: subprocess (or auto)."
            )
        return name
    return "subprocess" if is_multi_process(fit_config) else "forkserver"


def is_multi_process(fit_config: Mapping[str, Any]) -> bool:
    trainer = fit_config.get("trainer") or {}
    devices, nodes = trainer.get("devices", "auto"), trainer.get("num_nodes", 1) or 1
    strategy = str(trainer.get("strategy", "auto") if not isinstance(trainer.get("strategy"), Mapping)
                   else trainer["strategy"].get("class_path", "")).lower()
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    elif isinstance(devices, int) or (isinstance(devices, str) and devices.lstrip("-").isdigit()):
        count = int(devices)
    else:
        count = 1
    return nodes > 1 or count > 1 or (count == -1 and any(s in strategy for s in ("ddp", "fsdp", "parallel")))


def run_in_process(kind: str, spec: Any, storage_url: str, timeout: float | None) -> tuple[int | None, str]:
    """Run ``spec`` in a trial process; returns (exit code, what ended it if not a clean exit)."""
    run_dir = Path(spec.run_dir)
    log = run_dir / "trial.log"
    if kind == "forkserver":
        process = forkserver_context(warmup=str(run_dir / "fit.yaml")).Process(
            target=_forked_main, args=(spec, storage_url, str(log)), name=f"trial-{spec.number}",
        )
        process.start()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            return process.exitcode, f"killed after trial_timeout={timeout} s"
        return process.exitcode, ""
    env = {**os.environ, STORAGE_ENV: storage_url}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nl_lightning.tune.launch", str(spec.save())], env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            return proc.wait(timeout), ""
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the trial and every DDP rank it started
            proc.wait()
            return proc.returncode, f"killed after trial_timeout={timeout} s"
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise


def process_main(spec: TrialSpec, storage_url: str, log_path: str | None = None) -> None:
    """Body of a trial process: die with the study process, log to the trial's file, run, write
    the result (rank 0)."""
    from nl_lightning._noise import quiet_third_party

    die_with_parent()
    quiet_third_party()
    if log_path is not None:
        redirect_output(log_path)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0:
        write_atomic(Path(spec.run_dir) / PID_FILE, f"{os.getpid()}\n")
    result = run_trial(spec, connect(spec, storage_url))
    if _is_rank_zero():
        result.save(spec.run_dir)
    sys.stdout.flush()
    sys.stderr.flush()


def _is_rank_zero() -> bool:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _forked_main(spec: TrialSpec, storage_url: str, log_path: str) -> None:
    process_main(spec, storage_url, log_path)


def forkserver_context(warmup: str | None = None) -> Any:
    """The forkserver context; its server imports the trial and study modules (torch, Lightning,
    Optuna) once, and every trial or worker process is forked from it. When the server is not yet
    running, ``warmup`` (a fit YAML) is parsed and built in it first (``nl_lightning.tune.warmup``)."""
    import multiprocessing.forkserver

    from nl_lightning.tune.warmup import WARMUP_ENV

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    if warmup is not None:
        previous = os.environ.get(WARMUP_ENV)
        os.environ[WARMUP_ENV] = warmup  # read by the server at start; a running server ignores it
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            if previous is None:
                os.environ.pop(WARMUP_ENV, None)
            else:
                os.environ[WARMUP_ENV] = previous
    return ctx


def main(argv: list[str] | None = None) -> int:
    """``python -m nl_lightning.tune.launch <run_dir>/trial.json`` (the storage URL in the environment)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or STORAGE_ENV not in os.environ:
        raise SystemExit(f"usage: {STORAGE_ENV}=<storage url> python -m nl_lightning.tune.launch <run_dir>/{SPEC_FILE}")
    process_main(TrialSpec.load(argv[0]), os.environ[STORAGE_ENV])
    return 0


if __name__ == "__main__":
    sys.exit(main())
