"""Import boundaries: the blocks and the functional cores need torch alone (no Lightning)."""

from __future__ import annotations

import subprocess
import sys

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
