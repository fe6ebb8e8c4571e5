"""MLflow registry webhooks: a promotion made anywhere is followed at once instead of at the next poll.

MLflow (OSS, SQL backend) POSTs registry events to registered URLs, signed with HMAC-SHA256 over
`<delivery id>.<timestamp>.<body>` and the webhook's secret. The facade registers its own URL on start
(`OSML_WEBHOOK_URL`, `OSML_WEBHOOK_SECRET`), checks each delivery's signature and age, and wakes its poller when
the alias `production` of either model moved. Polling stays: a lost delivery costs at most one poll interval.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from typing import Any

import orjson
from mlflow import MlflowClient
from mlflow.entities.webhook import WebhookEventStr

from osml.conventions import MODEL_NAMES, PRODUCTION_ALIAS
from serving.errors import InvalidRequest, Unauthenticated

log = logging.getLogger("osml.serving.webhook")

EVENTS: tuple[WebhookEventStr, ...] = ("model_version_alias.created", "model_version_alias.deleted")
NAME = "osml-facade"
SIGNATURE_HEADER = "x-mlflow-signature"
TIMESTAMP_HEADER = "x-mlflow-timestamp"
DELIVERY_ID_HEADER = "x-mlflow-delivery-id"


def sign(secret: str, *, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The value of X-MLflow-Signature for a delivery, as MLflow computes it."""
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, *, headers: dict[str, str], body: bytes, now: float, max_age_seconds: float) -> None:
    """Raise Unauthenticated unless the delivery carries a valid signature made within `max_age_seconds`."""
    delivery_id, timestamp = headers.get(DELIVERY_ID_HEADER), headers.get(TIMESTAMP_HEADER)
    signature = headers.get(SIGNATURE_HEADER)
    if not (delivery_id and timestamp and signature):
        raise Unauthenticated("an MLflow webhook delivery needs X-MLflow-Delivery-Id, -Timestamp and -Signature")
    try:
        age = now - int(timestamp)
    except ValueError:
        raise Unauthenticated("X-MLflow-Timestamp is not a Unix time") from None
    # a replayed delivery can only trigger one more read of the alias; the window keeps even that short
    if abs(age) > max_age_seconds:
        raise Unauthenticated(f"the delivery is {age:.0f} s old (at most {max_age_seconds:g} s accepted)")
    expected = sign(secret, delivery_id=delivery_id, timestamp=timestamp, body=body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Unauthenticated("X-MLflow-Signature does not match the body and OSML_WEBHOOK_SECRET")


def moves_production(body: bytes) -> bool:
    """Whether the event set or removed the alias `production` on one of osml's models."""
    try:
        event: Any = orjson.loads(body)
        data = event["data"]
        relevant = (
            event["entity"] == "model_version_alias"
            and data.get("name") in MODEL_NAMES
            and data.get("alias") == PRODUCTION_ALIAS
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise InvalidRequest(
            "not an MLflow webhook event", errors=[{"field": "body", "message": "expected {entity, action, data}"}]
        ) from None
    return bool(relevant)


def register(client: MlflowClient, *, url: str, secret: str) -> str:
    """Create (or bring up to date) the registry webhook that calls `url`; returns its id. Idempotent, so every
    replica registers its own URL on each start."""
    page_token: str | None = None
    while True:
        page = client.list_webhooks(max_results=100, page_token=page_token)
        for webhook in page:
            if webhook.url == url:
                client.update_webhook(webhook.webhook_id, events=list(EVENTS), secret=secret, status="ACTIVE")
                return str(webhook.webhook_id)
        page_token = page.token
        if not page_token:
            break
    created = client.create_webhook(
        name=NAME,
        url=url,
        events=list(EVENTS),
        secret=secret,
        description="osml facade: follow the alias production at once",
    )
    return str(created.webhook_id)
