"""The MLflow pyfunc model of a registered nl_lightning checkpoint ("models from code": no pickle).

MLflow copies this file into the model version and runs it at load time; ``load_context`` rebuilds
the network with ``nl_lightning.models.load_checkpoint`` (``torch.load(weights_only=True)``), and
``predict`` returns what ``model(x)`` returns: logits for ``TransformerLM`` / ``TransformerClassifier``.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel


class CheckpointModel(PythonModel):
    def load_context(self, context: Any) -> None:
        from nl_lightning.models.checkpoint import load_checkpoint

        self.model = load_checkpoint(context.artifacts["checkpoint"], merge_lora=True).eval()

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would build a schema from them
        x = torch.as_tensor(np.asarray(model_input))
        with torch.no_grad():
            return self.model(x).float().numpy()


mlflow.models.set_model(CheckpointModel())
