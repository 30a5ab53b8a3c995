"""Reuse tests/callbacks/tracking_utils.py (tiny models, TensorBoard read-back, a pre-migrated MLflow
store) from here: put that folder on ``sys.path``."""

import sys
from pathlib import Path

CALLBACK_TESTS = str(Path(__file__).resolve().parents[1] / "callbacks")
if CALLBACK_TESTS not in sys.path:
    sys.path.append(CALLBACK_TESTS)
