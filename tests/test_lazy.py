"""Lazily exported names are the objects their modules define, whatever was imported first.

A package attribute named like one of its submodules (``nl_lightning.export.evaluate``, the function,
in ``export/evaluate.py``) is replaced by the submodule when anything imports that submodule; a lazy
``__getattr__`` would then never run and ``from nl_lightning.export import evaluate`` would give the
module. Checked in a fresh interpreter that imports every source module before asking for any name.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import importlib
packages = ["nl_lightning", "nl_lightning.export", "nl_lightning.serve", "nl_lightning.predict", "nl_lightning.tune"]
exports = {}
for name in packages:
    package = importlib.import_module(name)
    exports[name] = dict(getattr(package, "_EXPORTS", {}))
    if name == "nl_lightning.tune":
        exports[name] = {"run_study": "nl_lightning.tune.study", "tune": "nl_lightning.tune.study"}
for mapping in exports.values():
    for source in mapping.values():
        importlib.import_module(source)  # every submodule first: the order that used to shadow names
wrong = [f"{package}.{name}" for package, mapping in exports.items() for name, source in mapping.items()
         if getattr(importlib.import_module(package), name) is not getattr(importlib.import_module(source), name)]
assert sum(len(m) for m in exports.values()) > 20, exports
print("WRONG", wrong)
"""


def test_lazy_names_survive_their_submodules_being_imported_first():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "WRONG []", done.stdout
