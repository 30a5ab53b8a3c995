"""Imported once by the trial forkserver: parse and build the study's fit config there (model, data
module, Trainer; no training), so every forked trial starts with jsonargparse's and Lightning's
caches (class signatures, docstrings, type adapters) filled instead of filling them again. Then
``gc.freeze()``, so the children's garbage collector leaves the server's objects (and their memory
pages, shared copy-on-write) alone.

The config comes from ``NL_LIGHTNING_TUNE_WARMUP`` (set only while the server starts). A config
that fails here fails again in its trial, with the error recorded there; nothing is raised here.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os

WARMUP_ENV = "NL_LIGHTNING_TUNE_WARMUP"


def warm_up(fit_config: str) -> None:
    from nl_lightning.cli import build_cli
    from nl_lightning.tune.validate import quiet

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), quiet():
        try:
            build_cli(["--config", fit_config], run=False)
        except (Exception, SystemExit):
            pass


if os.environ.get(WARMUP_ENV):
    warm_up(os.environ[WARMUP_ENV])
gc.freeze()  # what the server holds now is never scanned by a child's collector: fewer copied pages
