"""Facade configuration: environment variables with the `OSML_` prefix (plus MLflow's own MLFLOW_TRACKING_URI)."""

from __future__ import annotations

from typing import Final, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from osml.conventions import embedded_database_url, tracking_uri
from osml.settings import CommaList
from serving.payloads import MAX_BATCH_ITEMS

MIN_API_KEY_LENGTH: Final = 16
Scope = Literal["predict", "admin"]


class GateSettings(BaseSettings):
    """The promotion gate's margins (docs/serving.md, "Promotion gate"), for the facade and `osml activate`: a
    candidate pair is refused when its SLA AUC is lower than production's by more than `auc_margin` (absolute)
    or its ETA MAE higher by more than `mae_margin` (relative: 0.05 = 5 %), on the same labelled rows."""

    model_config = SettingsConfigDict(env_prefix="OSML_GATE_", extra="ignore")

    auc_margin: float = Field(default=0.01, ge=0, le=1)
    mae_margin: float = Field(default=0.05, ge=0)


class ServingSettings(BaseSettings):
    # hide_input_in_errors: a refused setting must not print the keys and passwords beside it
    model_config = SettingsConfigDict(
        env_prefix="OSML_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    predict_api_key: SecretStr | None = None
    admin_api_key: SecretStr | None = None
    # more keys per scope, comma-separated: during a rotation both the old and the new key are accepted
    predict_api_keys: CommaList[SecretStr] = Field(default_factory=list)
    admin_api_keys: CommaList[SecretStr] = Field(default_factory=list)
    # An explicit opt-out for local use; without it both keys must be set (the facade refuses to start open).
    auth_disabled: bool = False
    database_url: str = Field(default_factory=embedded_database_url)
    model_poll_seconds: float = Field(default=5.0, gt=0)
    # a production pair that fails to load is retried after one poll, then twice as long each time, up to this
    model_retry_max_seconds: float = Field(default=300.0, gt=0)
    gate: GateSettings = Field(default_factory=lambda: GateSettings())
    # A running training job whose trainer has not refreshed its heartbeat for this long was cut off (the
    # trainer died) and reads `failed`; the same setting as the trainers' (trainer/settings.py).
    job_stale_seconds: float = Field(default=30.0, gt=0)
    # MLflow registry webhook: the URL at which the tracking server reaches this facade's /models/webhook, and
    # the HMAC secret deliveries are signed with. Unset: polling alone.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_max_age_seconds: float = Field(default=300.0, gt=0)
    # Request size caps (docs/security.md, "Limits"): beyond them the answer is 413 before the body is parsed.
    # A /predict body is ~300 bytes; a batch is bounded by its bytes and by its item count, so one caller cannot
    # make a thread parse hundreds of megabytes.
    max_predict_bytes: int = Field(default=8 * 1024, ge=1024)
    max_batch_items: int = Field(default=10_000, ge=1, le=MAX_BATCH_ITEMS)
    max_batch_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Shadow challenger (docs/serving.md): rows waiting to be scored by the pair under the alias `challenger` at
    # most (beyond: dropped and counted, never waited for), and how long a partial batch waits
    shadow_queue_rows: int = Field(default=20_000, ge=1)
    shadow_flush_seconds: float = Field(default=1.0, gt=0)
    # SIGTERM: readiness turns 503 and the listener stays open this long, then in-flight requests get up to
    # graceful_shutdown_seconds to finish (serving/cli_serve.py)
    drain_seconds: float = Field(default=2.0, ge=0)
    graceful_shutdown_seconds: int = Field(default=10, ge=1)
    log_level: str = "INFO"
    tracking_uri: str = Field(
        default_factory=tracking_uri, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "OSML_TRACKING_URI")
    )

    def api_keys(self, scope: Scope) -> list[str]:
        """Every key of one scope (the single-key setting and the list)."""
        single, many = (
            (self.predict_api_key, self.predict_api_keys)
            if scope == "predict"
            else (self.admin_api_key, self.admin_api_keys)
        )
        return [key.get_secret_value() for key in ([single] if single else []) + many]

    @model_validator(mode="after")
    def _keys_or_explicit_opt_out(self) -> Self:
        if not self.auth_disabled:
            if not self.api_keys("predict") or not self.api_keys("admin"):
                raise ValueError(
                    "set OSML_PREDICT_API_KEY(S) and OSML_ADMIN_API_KEY(S), or OSML_AUTH_DISABLED=true for local use only"
                )
            _refuse_weak_keys(self.api_keys("predict"), self.api_keys("admin"))
        if self.webhook_url is not None and self.webhook_secret is None:
            raise ValueError("OSML_WEBHOOK_URL needs OSML_WEBHOOK_SECRET: deliveries must be signed")
        return self


def _refuse_weak_keys(predict: list[str], admin: list[str]) -> None:
    # the messages never quote a key: settings errors end up in logs
    for scope, keys in (("predict", predict), ("admin", admin)):
        for key in keys:
            if len(key) < MIN_API_KEY_LENGTH:
                raise ValueError(f"an {scope} API key is shorter than {MIN_API_KEY_LENGTH} characters")
            if "change-me" in key.lower():
                raise ValueError(f"an {scope} API key is still the change-me placeholder of .env.example")
    if set(predict) & set(admin):
        raise ValueError("a key is both a predict and an admin API key: the predict key would administer")
