"""Python's cyclic garbage collector, kept off the request path of a server process.

A server process holds ~470k GC-tracked objects (torch, FastAPI, the model) that never die. Each
full collection walks all of them (0.21 s with torch, LitServe and a small model loaded, on the
2-core Xeon of the benchmarks), and parsing a 256-row ``/batch_predict`` body allocates thousands
of lists that set collections off. ``freeze_startup_objects`` moves what exists after start-up out
of the collector's sight (CPython's ``gc.freeze``, meant for this), and ``gc_paused`` keeps it off
while one body is parsed. Measured on a 256-row body in a process with torch loaded: 14.4 ms to
validate with the collector on, 5.2 ms frozen, 2.7 ms paused.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def freeze_startup_objects() -> None:
    """Collect once, then exempt every surviving object from later collections (forked children
    inherit that)."""
    gc.collect()
    gc.freeze()


@contextmanager
def gc_paused() -> Iterator[None]:
    """The collector off for a synchronous block that allocates many acyclic containers."""
    if not gc.isenabled():  # someone else paused it: theirs to resume
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
