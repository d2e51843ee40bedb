"""Settings of the HTTP service, on top of the shared :class:`matcher.settings.Settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from matcher.settings import Settings

FEEDBACK_FILE = "feedback.sqlite"


class ApiSettings(Settings):
    """Everything ``techmatch serve`` reads from the environment (prefix ``TECHMATCH_``).

    API keys are :class:`SecretStr`, so printing or logging the settings never shows them.
    """

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="comma-separated keys accepted in the X-API-Key header",
    )
    allow_anonymous_writes: bool = Field(
        default=False, description="accept writes without a key when no key is configured"
    )
    protect_reads: bool = Field(
        default=False, description="require a key on read routes too (when keys are configured)"
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, le=1024**3, description="request body cap in bytes"
    )
    feedback_db: Path | None = Field(
        default=None, description="feedback SQLite file; default: feedback.sqlite in the index dir"
    )
    checkpoint_after: int = Field(
        default=5_000,
        ge=1,
        description="rewrite the index snapshot in the background after this many record changes",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        # The environment gives one string; keys are separated by commas.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def feedback_path(self) -> Path:
        """Where feedback is stored: beside the record store unless configured."""
        return self.feedback_db or self.index_dir / FEEDBACK_FILE

    def key_bytes(self) -> list[bytes]:
        """The configured keys as bytes, for constant-time comparison."""
        return [key.get_secret_value().encode("utf-8") for key in self.api_keys]
