"""API keys in the ``X-API-Key`` header.

Rules:
- write routes always need a configured key, unless no key is configured and
  ``TECHMATCH_ALLOW_ANONYMOUS_WRITES=true``;
- read routes need a key only when ``TECHMATCH_PROTECT_READS=true`` and keys are configured.

Keys are compared in constant time, against every configured key (no early exit), so the
response time does not tell how much of a key was right. Keys are never logged.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from api.errors import ApiError
from api.settings import ApiSettings

log = logging.getLogger("techmatch.api")

API_KEY_HEADER = "X-API-Key"
_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="API key (TECHMATCH_API_KEYS); required on write routes",
)


def key_matches(given: str, configured: list[bytes]) -> bool:
    """Whether ``given`` equals one of ``configured``, in time independent of the contents."""
    candidate = given.encode("utf-8")
    found = False
    for key in configured:
        found |= hmac.compare_digest(candidate, key)
    return found


def check_key(settings: ApiSettings, given: str | None, *, write: bool) -> None:
    """Apply the key rules to one request.

    Raises:
        ApiError: 401 for a missing or wrong key, 403 for writes that no key could allow.
    """
    configured = settings.key_bytes()
    if not configured:
        if write and not settings.allow_anonymous_writes:
            raise ApiError(
                403,
                "writes_disabled",
                "writes are disabled: no API key is configured (set TECHMATCH_API_KEYS, or "
                "TECHMATCH_ALLOW_ANONYMOUS_WRITES=true for a closed network)",
            )
        return
    if not write and not settings.protect_reads:
        return
    if not given:
        raise ApiError(401, "missing_api_key", f"header {API_KEY_HEADER} is required", API_KEY_HEADER)
    if not key_matches(given, configured):
        raise ApiError(401, "invalid_api_key", f"header {API_KEY_HEADER} holds no valid key",
                       API_KEY_HEADER)


def _settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def require_write_key(
    request: Request, key: Annotated[str | None, Depends(_header)]
) -> None:
    """Dependency of every write route."""
    check_key(_settings(request), key, write=True)


def require_read_key(
    request: Request, key: Annotated[str | None, Depends(_header)]
) -> None:
    """Dependency of read routes (a no-op unless reads are protected)."""
    check_key(_settings(request), key, write=False)


def describe_auth(settings: ApiSettings) -> str:
    """One start-up log line about the auth mode; it counts keys and never shows them."""
    n = len(settings.api_keys)
    if n:
        reads = "reads need a key too" if settings.protect_reads else "reads are open"
        return f"API keys: {n} configured; writes need {API_KEY_HEADER}; {reads}"
    if settings.allow_anonymous_writes:
        return ("API keys: none configured; TECHMATCH_ALLOW_ANONYMOUS_WRITES=true, so ANYONE who "
                "can reach this port may write")
    return ("API keys: none configured; writes are refused (set TECHMATCH_API_KEYS or "
            "TECHMATCH_ALLOW_ANONYMOUS_WRITES=true); reads are open")
