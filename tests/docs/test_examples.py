"""The examples in the docs run, and the names they use exist.

- every ``>>>`` example in a docstring of the package (stdlib ``doctest``, per module);
- every ``pycon`` block of a guide (``docs/*.md``), as a doctest, the blocks of a page in order in
  one namespace;
- every ``python`` block of a guide, executed likewise, except a block right under a
  ``<!-- not run: REASON -->`` comment (it needs a server or minutes of training); those are still
  compiled, and every ``nl_lightning`` name they import or call, and every keyword they pass to one,
  must exist;
- every dotted ``nl_lightning.…`` name written in a guide or the README exists.

Examples run in a scratch folder with the repository's ``configs/`` beside them. The README's own
blocks run in ``test_readme.py``, after its quick-start commands.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

from doc_pages import DOCS, PAGES, REPO, code_blocks
from nl_autodoc import exists
import nl_lightning

GUIDES = sorted(DOCS.glob("*.md"))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(nl_lightning.__path__, "nl_lightning."):
        if info.name.endswith("__main__"):
            continue
        spec = importlib.util.find_spec(info.name)
        if spec and spec.origin and ">>>" in Path(spec.origin).read_text():
            names.append(info.name)
    return names


MODULES_WITH_EXAMPLES = _modules_with_examples()


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A working folder like the repository root: ``configs/`` beside whatever the example writes."""
    (tmp_path / "configs").symlink_to(REPO / "configs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_doctests(tests: list[doctest.DocTest]) -> tuple[int, str]:
    """Run ``tests`` in order, each seeing the names the previous ones defined; (failures, report)."""
    import io

    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    namespace: dict = {}
    for test in tests:
        test.globs.update(namespace)
        runner.run(test, out=out.write, clear_globs=False)
        namespace = test.globs
    return runner.failures, out.getvalue()


def test_docstring_examples_exist():
    """Guards the parametrization below: the package's docstrings do carry examples."""
    assert len(MODULES_WITH_EXAMPLES) >= 5, MODULES_WITH_EXAMPLES


@pytest.mark.parametrize("module_name", MODULES_WITH_EXAMPLES)
def test_docstring_examples_run(module_name, scratch):
    module = importlib.import_module(module_name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, module_name)
    assert tests, f"{module_name} mentions '>>>' but doctest finds no example in its docstrings"
    failures, report = run_doctests(sorted(tests, key=lambda t: t.lineno or 0))
    assert failures == 0, report


@pytest.mark.parametrize("page", [p for p in GUIDES if code_blocks(p, ("pycon",))], ids=lambda p: p.name)
def test_guide_doctests_run(page, scratch):
    parser = doctest.DocTestParser()
    tests = [parser.get_doctest(block.code, {}, block.where, str(page), block.line - 1)
             for block in code_blocks(page, ("pycon",))]
    failures, report = run_doctests(tests)
    assert failures == 0, report


@pytest.mark.parametrize("page", [p for p in GUIDES if code_blocks(p, ("python",))], ids=lambda p: p.name)
def test_guide_python_blocks_run(page, scratch):
    namespace: dict = {"__name__": "__docs__"}
    for block in code_blocks(page, ("python",)):
        code = compile(block.code, block.where, "exec")
        if block.not_run:
            assert block.not_run.strip(), f"{block.where}: a not-run block must say why"
            assert not unknown_names(block.code), f"{block.where}: {unknown_names(block.code)}"
            continue
        exec(code, namespace)


def unknown_names(code: str) -> list[str]:
    """``nl_lightning`` names that ``code`` imports or uses and that do not exist, and keywords it
    passes to one of them that its signature does not take."""
    tree = ast.parse(code)
    imported: dict[str, str] = {}  # local name -> dotted name
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nl_lightning"):
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("nl_lightning"):
                    imported[alias.asname or alias.name.split(".")[0]] = alias.name.split(".")[0]
    problems += [f"{dotted} does not exist" for dotted in imported.values() if not exists(dotted)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported:
            dotted = imported[node.func.id]
            if not exists(dotted):
                continue
            target = _resolve(dotted)
            try:
                signature = inspect.signature(target)
            except (TypeError, ValueError):
                continue
            if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
                continue
            problems += [f"{dotted}() takes no argument {kw.arg!r}" for kw in node.keywords
                         if kw.arg and kw.arg not in signature.parameters]
    return problems


def _resolve(dotted: str):
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


_DOTTED = re.compile(r"\bnl_lightning(?:\.[A-Za-z_]\w*)+(?![\w/])")  # not a format string (``nl_lightning.lora/1``)
#: Dotted strings in the pages that are data, not Python names.
NOT_NAMES = {"nl_lightning.arguments": "the checkpoint key holding a tokenizer's JSON (docs/lora_tokenizers.md)"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_dotted_names_in_pages_exist(page):
    """``nl_lightning.models.trust.allow_class`` in a guide's text or code names something real."""
    text = page.read_text()
    names = sorted({m.group(0).rstrip(".") for m in _DOTTED.finditer(text)})
    missing = [name for name in names if name not in NOT_NAMES and not exists(_strip_file_suffix(name))]
    assert not missing, f"{page.name} names what does not exist: {missing}"


def _strip_file_suffix(name: str) -> str:
    """``nl_lightning.data.readers.open.py`` is not a dotted name but a path: drop ``.py``."""
    return name[:-3] if name.endswith(".py") else name


def test_unknown_names_are_found():
    """The static check sees a missing name and a wrong keyword (the not-run blocks rely on it)."""
    code = ("from nl_lightning.callbacks import NoSuchCallback, PruningCallback\n"
            "PruningCallback(amount=0.5, end_epoch=3)\n"
            "PruningCallback(amout=0.5)\n")
    assert unknown_names(code) == ["nl_lightning.callbacks.NoSuchCallback does not exist",
                                   "nl_lightning.callbacks.PruningCallback() takes no argument 'amout'"]
