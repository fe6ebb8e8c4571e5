"""Worker, relay and simulator settings from the environment (prefix `OSML_`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from serving.payloads import MAX_EXPLAIN

PositiveSeconds = Annotated[float, Field(gt=0)]


class WorkerSettings(BaseSettings):
    """One settings class for the event side: `osml worker`, `osml relay`, `osml migrate`, `osml simulate`."""

    model_config = SettingsConfigDict(env_prefix="OSML_", extra="ignore")

    broker_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/osml"
    facade_url: str = "http://127.0.0.1:8000"
    # "in-process": predict in the worker itself, following the registry at MLFLOW_TRACKING_URI (no facade)
    worker_scorer: Literal["facade", "in-process"] = "facade"
    worker_model_poll_s: PositiveSeconds = 10.0
    # in-process only: rows waiting for the shadow challenger at most (serving/shadow.py); beyond, dropped
    worker_shadow_queue_rows: Annotated[int, Field(ge=1)] = 20_000
    predict_api_key: SecretStr | None = None
    # k > 0: ask for each row's k largest feature contributions per model and store them in
    # orders_prediction.explanations (about 1 ms per row more in the scorer); 0: none asked, none stored
    worker_explain: Annotated[int, Field(ge=0, le=MAX_EXPLAIN)] = 0

    # consumer: messages in hand at most (prefetch) and how many go into one /predict/batch + one transaction
    worker_prefetch: Annotated[int, Field(ge=1, le=65535)] = 400
    worker_batch_size: Annotated[int, Field(ge=1, le=5000)] = 200
    # how long a partial batch waits for more messages before it is processed
    worker_batch_linger_s: Annotated[float, Field(ge=0)] = 0.1

    facade_timeout_s: PositiveSeconds = 5.0
    # retries of transient failures (facade 5xx/timeouts/refused, database down): exponential backoff with full
    # jitter between retry_initial_s and retry_max_s; they never give up, so nothing is dead-lettered early
    retry_initial_s: PositiveSeconds = 0.05
    retry_max_s: PositiveSeconds = 5.0
    # circuit breaker in front of the facade: open after this many consecutive failures, probe after reset_s
    breaker_failure_threshold: Annotated[int, Field(ge=1)] = 5
    breaker_reset_s: PositiveSeconds = 2.0

    relay_batch_size: Annotated[int, Field(ge=1, le=10000)] = 500
    # the relay wakes up on NOTIFY from the worker's transaction; this is the fallback poll
    relay_poll_interval_s: PositiveSeconds = 1.0

    # sent outbox rows are kept this long (audit, replays by hand), then the relay deletes them every
    # outbox_prune_interval_s; unsent rows are never deleted
    outbox_retention_hours: Annotated[float, Field(gt=0)] = 168.0
    outbox_prune_interval_s: PositiveSeconds = 600.0

    # Prometheus /metrics of each process (0 = off); distinct defaults so a worker and a relay fit on one host
    metrics_host: str = "0.0.0.0"
    worker_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9464
    relay_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9465

    migrate_on_start: bool = True
    log_level: str = "INFO"
