"""Facade configuration: environment variables with the `OSML_` prefix (plus MLflow's own MLFLOW_TRACKING_URI)."""

from __future__ import annotations

from typing import Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from osml.conventions import embedded_database_url, tracking_uri


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OSML_", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    predict_api_key: SecretStr | None = None
    admin_api_key: SecretStr | None = None
    # An explicit opt-out for local use; without it both keys must be set (the facade refuses to start open).
    auth_disabled: bool = False
    database_url: str = Field(default_factory=embedded_database_url)
    model_poll_seconds: float = Field(default=5.0, gt=0)
    # A running training job whose trainer has not refreshed its heartbeat for this long was cut off (the
    # trainer died) and reads `failed`; the same setting as the trainers' (trainer/settings.py).
    job_stale_seconds: float = Field(default=30.0, gt=0)
    # MLflow registry webhook: the URL at which the tracking server reaches this facade's /models/webhook, and
    # the HMAC secret deliveries are signed with. Unset: polling alone.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_max_age_seconds: float = Field(default=300.0, gt=0)
    log_level: str = "INFO"
    tracking_uri: str = Field(
        default_factory=tracking_uri, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "OSML_TRACKING_URI")
    )

    @model_validator(mode="after")
    def _keys_or_explicit_opt_out(self) -> Self:
        if not self.auth_disabled and (self.predict_api_key is None or self.admin_api_key is None):
            raise ValueError(
                "set OSML_PREDICT_API_KEY and OSML_ADMIN_API_KEY, or OSML_AUTH_DISABLED=true for local use only"
            )
        if self.webhook_url is not None and self.webhook_secret is None:
            raise ValueError("OSML_WEBHOOK_URL needs OSML_WEBHOOK_SECRET: deliveries must be signed")
        return self
