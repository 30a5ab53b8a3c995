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


@pytest.fixture
def parse_json():
    """``parse(schema, value)``: ``parse_body`` of a JSON POST of ``value``, run to completion."""
    import asyncio
    import json

    from starlette.requests import Request

    from nl_lightning.serve.schemas import parse_body

    def parse(schema, value):
        raw = json.dumps(value).encode()

        async def receive() -> dict:
            return {"type": "http.request", "body": raw, "more_body": False}

        request = Request({"type": "http", "method": "POST", "headers": [(b"content-type", b"application/json")]},
                          receive)
        return asyncio.run(parse_body(request, schema))

    return parse
