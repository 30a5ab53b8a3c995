"""Fixtures of tests/pretrained: tiny random transformers models saved as model folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from hf_models import CAUSAL, bert_config, random_weights, transformers


@pytest.fixture
def hf_folder(tmp_path: Path) -> Callable[..., tuple[Path, torch.nn.Module]]:
    """``hf_folder(kind, **config)`` -> (folder, the transformers model saved in it)."""
    count = iter(range(1000))

    def make(kind: str, model_class: Any = None, **overrides: Any) -> tuple[Path, torch.nn.Module]:
        torch.manual_seed(0)
        if kind == "bert":
            make_config, default_class = bert_config, transformers.BertModel
        else:
            make_config, default_class = CAUSAL[kind]
        model = random_weights((model_class or default_class)(make_config(**overrides)))
        folder = tmp_path / f"{kind}-{next(count)}"
        model.save_pretrained(folder)
        return folder, model

    return make

