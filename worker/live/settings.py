"""Settings of `osml evaluate-live` from the environment (prefix `OSML_`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.live.windows import Window, parse_windows


class LiveSettings(BaseSettings):
    """Where predictions and outcomes are read, which windows are scored, how often, and where metrics are served."""

    model_config = SettingsConfigDict(env_prefix="OSML_", extra="ignore")

    # orders_prediction (the worker's database)
    database_url: str = "postgresql://postgres@127.0.0.1:5432/osml"
    # the backend's orders table (id, due_at, done_at, optional canceled_at and sla_breached); by default it is
    # read from database_url too
    outcomes_database_url: str | None = None
    outcomes_table: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")] = "orders"

    # rolling windows over predicted_at, e.g. "1d,7d,30d" (hours: "12h")
    live_windows: str = "1d,7d,30d"
    live_interval_s: Annotated[float, Field(gt=0)] = 300.0
    live_metrics_host: str = "127.0.0.1"
    live_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9103

    log_level: str = "INFO"

    @field_validator("live_windows")
    @classmethod
    def _windows(cls, value: str) -> str:
        parse_windows(value)
        return value

    @property
    def windows(self) -> tuple[Window, ...]:
        return parse_windows(self.live_windows)

    @property
    def outcomes_url(self) -> str:
        return self.outcomes_database_url or self.database_url
