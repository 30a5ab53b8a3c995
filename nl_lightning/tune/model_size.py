"""Parameter count of the model a fit config describes, without building its data or Trainer.

Used for the ``params`` objective and the ``max_params`` budget: the ``model:`` section is parsed
and instantiated by jsonargparse exactly as LightningCLI does (subclass mode), and the parameters
of the resulting LightningModule are counted. A model that cannot be built raises its own error
(e.g. ``n_heads`` not dividing ``d_model``), which the study records as the trial's failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def count_parameters(model_config: Mapping[str, Any]) -> int:
    """Number of parameters (trainable or not) of the model ``{class_path: ..., init_args: ...}``."""
    import lightning as L
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(L.LightningModule, "model", required=True)
    config = parser.parse_object({"model": dict(model_config)})
    model = parser.instantiate_classes(config).model
    return sum(p.numel() for p in model.parameters())
