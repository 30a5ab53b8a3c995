"""Put this folder on ``sys.path``: the tests import ``servers`` and ``model_files``."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.append(HERE)
