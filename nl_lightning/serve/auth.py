"""The FastAPI dependencies that check keys: ``AdminKey`` for ``/admin/*``, ``api_key`` for the rest.

The admin key is read from the environment variable the config names (never from YAML) when the
server starts, and compared in constant time (``hmac.compare_digest``). Without the variable the
admin routes are off (403), so a server never exposes reload / rollback by accident. Predict,
/health, /info and /metrics use LitServe's own key (``LIT_SERVER_API_KEY``, header ``X-API-Key``,
same answers), checked by ``api_key`` in constant time and on the event loop: LitServe's own check
is a plain ``!=`` in a sync function, which FastAPI hands to a thread pool on every request.
"""

from __future__ import annotations

import hmac
import os

from collections.abc import Awaitable, Callable

from fastapi import Header, HTTPException, Security
from fastapi.security import APIKeyHeader

from nl_lightning.errors import ConfigError

ADMIN_HEADER = "X-Admin-Key"
MIN_KEY_LENGTH = 16


class AdminKey:
    def __init__(self, env_name: str) -> None:
        self.env_name = env_name
        key = os.environ.get(env_name)
        if key is not None and len(key) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"The admin key in ${env_name} is {len(key)} characters; use at least {MIN_KEY_LENGTH} "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)."
            )
        self._key = key.encode() if key else None

    @property
    def enabled(self) -> bool:
        return self._key is not None

    async def __call__(self, x_admin_key: str | None = Header(default=None)) -> None:
        if self._key is None:
            raise HTTPException(403, f"Admin routes are disabled: start the server with ${self.env_name} set.")
        if x_admin_key is None:
            raise HTTPException(401, f"Admin routes need the {ADMIN_HEADER} header.")
        if not hmac.compare_digest(x_admin_key.encode(), self._key):
            raise HTTPException(401, f"Invalid {ADMIN_HEADER}.")


def api_key(key: str | None = None) -> Callable[..., Awaitable[None]]:
    """The dependency for LitServe's key ``key`` (default: ``$LIT_SERVER_API_KEY``); no key = open."""
    key = os.environ.get("LIT_SERVER_API_KEY") if key is None else key
    if not key:
        async def open_access() -> None:
            return None

        return open_access
    expected = key.encode()

    async def check(x_api_key: str = Security(APIKeyHeader(name="X-API-Key"))) -> None:  # missing: 401
        if not hmac.compare_digest(x_api_key.encode(), expected):
            raise HTTPException(
                401, "Invalid API Key. Check that you are passing a correct 'X-API-Key' in your header."
            )

    return check
