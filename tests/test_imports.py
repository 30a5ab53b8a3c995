"""Import boundaries: the blocks and the functional cores need torch alone (no Lightning)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("module", ["nl_lightning", "nl_lightning.nn", "nl_lightning.compress.distill",
                                    "nl_lightning.compress.structured", "nl_lightning.compress.optimizer_state",
                                    "nl_lightning.export.parity"])
def test_module_imports_without_lightning(module):
    code = (f"import sys, {module}\n"
            "loaded = sorted(m for m in sys.modules if m == 'lightning' or m.startswith(('lightning.', 'pytorch_lightning')))\n"
            "assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_top_level_names_still_import():
    import nl_lightning

    assert nl_lightning.TransformerLM.__name__ == "TransformerLM"
    assert set(nl_lightning.__all__) >= {"TransformerLM", "TransformerClassifier", "load_checkpoint", "__version__"}
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        nl_lightning.nope  # noqa: B018


PACKAGE = Path(__file__).resolve().parents[1] / "nl_lightning"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the nl_lightning modules it imports, at the top or inside a function (a lazy import
    hides a cycle from the interpreter, not from the design)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("nl_lightning"):
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("nl_lightning")]
            else:
                continue
            graph[name] |= {t for t in map(owner, targets) if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_between_modules():
    """Dependencies point one way: checkpoint reading does not import the task modules, a trial
    does not import its launcher, callbacks/ and serve/ do not import each other."""
    graph = import_graph()
    assert cycles(graph) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check itself works
    room = {name: (name.split(".") + [""])[1] for name in graph}  # nl_lightning.<room>.<module>
    assert not [(a, b) for a in graph for b in graph[a] if {room[a], room[b]} == {"callbacks", "serve"}]


def test_every_module_imports_first_in_a_fresh_package():
    """Each module imported before any other nl_lightning module (the package state of a fresh
    interpreter; third-party packages stay loaded, so this costs seconds): an import-order cycle
    fails here with 'partially initialized module'."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import nl_lightning\n"
        "names = sorted(m.name for m in pkgutil.walk_packages(nl_lightning.__path__, 'nl_lightning.')\n"
        "               if not m.name.endswith('__main__'))\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'nl_lightning']:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as err:\n"
        "        failed.append(f'{name}: {type(err).__name__}: {err}')\n"
        "print(len(names), 'modules')\n"
        "assert not failed, failed\n"
    )
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[0]) > 100


def _optional_modules() -> set[str]:
    """Import names of the packages our extras add (pyproject's optional-dependencies, tests' and docs' aside)."""
    import re
    import tomllib

    extras = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.match(r"[A-Za-z0-9_.\-]+", r).group(0) for key, reqs in extras.items() if key not in ("dev", "docs", "all")
             for r in reqs}
    return {n.lower().replace("-", "_") for n in names}


#: Modules that import by a name held in a variable: our own modules (lazy exports, subcommands, reader
#: plugins through _imports) and allow-listed class paths read from files (trust.py, resume.py).
DYNAMIC_IMPORTERS = {"_imports.py", "_lazy.py", "cli.py", "models/trust.py", "resume.py"}


def test_optional_packages_are_checked_only_in_imports_module():
    """Whether an extra is installed is asked in one place, nl_lightning/_imports.py (flags, ``require``,
    ``import_optional``): no ``find_spec``, ``try: import <optional>`` or ``import_module`` elsewhere."""
    optional = _optional_modules()
    assert {"onnxruntime", "mlflow", "pyarrow", "h5py", "plotly", "litserve", "optuna"} <= optional
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if func == "find_spec" and rel != "_imports.py":
                    found.append(f"{rel}:{node.lineno} find_spec")
                if func == "import_module" and rel not in DYNAMIC_IMPORTERS:
                    found.append(f"{rel}:{node.lineno} import_module")
            if isinstance(node, ast.Try):
                for inner in (n for stmt in node.body for n in ast.walk(stmt)):
                    names = ([a.name for a in inner.names] if isinstance(inner, ast.Import)
                             else [inner.module or ""] if isinstance(inner, ast.ImportFrom) else [])
                    found += [f"{rel}:{inner.lineno} try: import {n}" for n in names if n.split(".")[0] in optional]
    assert found == []


def test_import_optional_names_the_extra_and_keeps_a_broken_package_s_own_error(monkeypatch, tmp_path):
    from nl_lightning._imports import import_optional
    from nl_lightning.errors import MissingPackageError

    with pytest.raises(MissingPackageError, match=r"Reading this format needs `nl_no_such_pkg`, which is not installed\. "
                                                  r"Install it with: pip install 'nl-lightning\[data\]'"):
        import_optional("nl_no_such_pkg.sub", "data", "Reading this format")
    (tmp_path / "nl_broken_pkg.py").write_text("import nl_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="nl_missing_dependency") as info:
        import_optional("nl_broken_pkg", "data", "Reading this format")
    assert not isinstance(info.value, MissingPackageError)  # installed but broken: its own traceback, not "install it"
