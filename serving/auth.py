"""API keys (`X-API-Key`): a predict key opens /predict*, an admin key opens everything.

Each scope accepts a list of keys (OSML_*_API_KEYS beside OSML_*_API_KEY), so a key is rotated by adding the new
one, moving the callers, then dropping the old one. Keys are compared in constant time. Auth is off only when OSML_AUTH_DISABLED is set explicitly (local use).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request, Security, params
from fastapi.security import APIKeyHeader

from serving.errors import Forbidden, Unauthenticated
from serving.settings import Scope, ServingSettings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="predict or admin API key")


class ApiKeys:
    def __init__(self, settings: ServingSettings) -> None:
        self.disabled = settings.auth_disabled
        admin = tuple(key.encode() for key in settings.api_keys("admin"))
        predict = tuple(key.encode() for key in settings.api_keys("predict"))
        self._accepted: dict[Scope, tuple[bytes, ...]] = {"predict": predict + admin, "admin": admin}

    def allows(self, provided: bytes | None, scope: Scope) -> bool:
        if self.disabled:
            return True
        if not provided:
            return False
        # compare against every accepted key so the time taken does not reveal which one nearly matched
        matched = False
        for key in self._accepted[scope]:
            matched |= secrets.compare_digest(provided, key)
        return matched

    def check(self, provided: str | None, scope: Scope) -> None:
        if self.disabled:
            return
        if not provided:
            raise Unauthenticated("missing X-API-Key header", headers={"WWW-Authenticate": "X-API-Key"})
        if not self.allows(provided.encode(), scope):
            raise Forbidden(f"this API key may not use the {scope} endpoints")


def _require(scope: Scope) -> params.Depends:
    # async on purpose: FastAPI runs a plain `def` dependency in a thread, a hop per request
    async def dependency(request: Request, key: Annotated[str | None, Security(api_key_header)]) -> None:
        keys: ApiKeys = request.app.state.keys
        keys.check(key, scope)

    return Depends(dependency)


AdminAccess = _require("admin")
