"""``AdminKey``: the FastAPI dependency guarding ``/admin/*`` with a key from the environment.

The key is read from the environment variable the config names (never from YAML) when the server
starts, and compared in constant time (``hmac.compare_digest``). Without the variable the admin
routes are off (403), so a server never exposes reload / rollback by accident. Predict, /health,
/info and /metrics use LitServe's own key (``LIT_SERVER_API_KEY``, header ``X-API-Key``).
"""

from __future__ import annotations

import hmac
import os

from fastapi import Header, HTTPException

ADMIN_HEADER = "X-Admin-Key"
MIN_KEY_LENGTH = 16


class AdminKey:
    def __init__(self, env_name: str) -> None:
        self.env_name = env_name
        key = os.environ.get(env_name)
        if key is not None and len(key) < MIN_KEY_LENGTH:
            raise ValueError(
                f"The admin key in ${env_name} is {len(key)} characters; use at least {MIN_KEY_LENGTH} "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)."
            )
        self._key = key.encode() if key else None

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def __call__(self, x_admin_key: str | None = Header(default=None)) -> None:
        if self._key is None:
            raise HTTPException(403, f"Admin routes are disabled: start the server with ${self.env_name} set.")
        if x_admin_key is None:
            raise HTTPException(401, f"Admin routes need the {ADMIN_HEADER} header.")
        if not hmac.compare_digest(x_admin_key.encode(), self._key):
            raise HTTPException(401, f"Invalid {ADMIN_HEADER}.")
