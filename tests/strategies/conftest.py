"""Put this folder on ``sys.path``: the tests import ``strategy_cli`` and the test YAMLs name
``strategy_probes.*`` callbacks by ``class_path`` (subprocesses get it through ``PYTHONPATH``)."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.append(HERE)
