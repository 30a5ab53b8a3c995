"""Every notebook in notebooks/ runs top to bottom (its code cells, in order, in one namespace).

Each notebook checks its own results with ``assert`` cells (a reloaded model gives the same
outputs, a server answered, a study finished), so a notebook that runs but shows something wrong fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(notebook: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cells = json.loads(notebook.read_text())["cells"]
    namespace: dict = {"__name__": "__main__"}
    for i, cell in enumerate(c for c in cells if c["cell_type"] == "code"):
        exec(compile("".join(cell["source"]), f"{notebook.name}[cell {i}]", "exec"), namespace)
    if notebook.stem == "quickstart":
        assert (tmp_path / "runs" / "notebook" / "lm.ckpt").is_file()
