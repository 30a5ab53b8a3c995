"""Put this folder on ``sys.path``: the tests import ``servers`` (``model_files`` is in tests/)."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.append(HERE)


import pytest  # noqa: E402


@pytest.fixture
def client(server):
    """A keep-alive HTTP client of the module's ``server`` fixture, closed after the test."""
    c = server.client()
    yield c
    c.close()
