"""The checks of the server's keys: ``AdminKey`` for ``/admin/*``, ``ApiKey`` for the rest.

The admin key is read from the environment variable the config names (never from YAML) when the
server starts, and compared in constant time (``hmac.compare_digest``). Without the variable the
admin routes are off (403), so a server never exposes reload / rollback by accident. Predict,
/health, /info and /metrics use LitServe's own key (``LIT_SERVER_API_KEY``, header ``X-API-Key``,
same answers), checked by ``ApiKey`` in constant time and on the event loop: LitServe's own check
is a plain ``!=`` in a sync function, which FastAPI hands to a thread pool on every request.
"""

from __future__ import annotations

import hmac
import os

from fastapi import Header, HTTPException
from fastapi.security import APIKeyHeader

from nl_lightning.errors import ConfigError

ADMIN_HEADER = "X-Admin-Key"
API_KEY_HEADER = "X-API-Key"
API_KEY = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)
"""The header LitServe's key travels in, as a FastAPI security scheme (``/docs`` shows it)."""
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


class ApiKey:
    """LitServe's key (``$LIT_SERVER_API_KEY``, header ``X-API-Key``, LitServe's answers); no key = open.

    ``ModelAPI.authorize`` (LitServe's hook) calls ``check``; LitServe puts it on every route."""

    def __init__(self, key: str | None = None) -> None:
        key = os.environ.get("LIT_SERVER_API_KEY") if key is None else key
        self._key = key.encode() if key else None

    def check(self, given: str | None) -> None:
        """Raise LitServe's 401s for a missing or wrong key (nothing to check without one)."""
        if self._key is None:
            return
        if given is None:
            raise HTTPException(401, "Not authenticated")
        if not hmac.compare_digest(given.encode(), self._key):
            raise HTTPException(
                401, f"Invalid API Key. Check that you are passing a correct '{API_KEY_HEADER}' in your header."
            )
