"""The facade against a real `mlflow server` on a fresh PostgreSQL database.

- A promotion made directly in the registry is picked up under load: within the poll interval (plus the
  load) every response names the new pair, and no request fails during the swap.
- A pair whose features schema the facade cannot serve is refused (409) and the current pair keeps serving;
  so does an unreachable registry.
- A pair the alias is moved to outside the facade that fails the promotion gate (trained on shuffled labels) is
  refused by the poller: the current pair keeps serving and GET /models shows both figures.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from osml import registry
from osml.conventions import ETA_MODEL_NAME, SLA_MODEL_NAME, TAG_SCHEMA_VERSION
from tests.conftest_training import FAST_CANDIDATES, shuffled_labels, train_fast_pair
from tests.contract.facade import FacadeProcess, facade_process
from tests.contract.test_seed_payloads import SEED_PREDICT
from tests.services import MlflowServer
from tests.support import free_port, wait_until
from training.pipeline import train

pytestmark = pytest.mark.integration

POLL_SECONDS = 1.0


@dataclass
class LoadLoop:
    """Posts the seed payload back to back from a thread, recording every outcome."""

    facade: FacadeProcess
    outcomes: list[tuple[float, int, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(
                        f"{self.facade.url}/predict", content=SEED_PREDICT, headers=self.facade.predict_headers
                    )
                    version = response.json().get("modelVersion") if response.status_code == 200 else None
                    self.outcomes.append((time.monotonic(), response.status_code, version))
                except httpx.HTTPError as exc:
                    self.outcomes.append((time.monotonic(), 0, repr(exc)))

    def versions_since(self, moment: float) -> list[str | None]:
        return [v for t, _, v in list(self.outcomes) if t >= moment]


@pytest.fixture(scope="module")
def pair_a_and_b(mlflow_tracking_server: MlflowServer, synthetic_csv: Path) -> tuple[str, str]:
    """Two pairs in the registry, A in production (trained like the `trained_pair` fixture, once per module)."""
    versions = [
        train(
            dataset_ref=str(synthetic_csv),
            tracking_uri=mlflow_tracking_server.url,
            activate=activate,
            random_state=seed,
            candidates=FAST_CANDIDATES,
        ).model_version
        for activate, seed in ((True, 1), (False, 2))
    ]
    return versions[0], versions[1]


@pytest.fixture(scope="module")
def facade(
    tmp_path_factory: pytest.TempPathFactory, mlflow_tracking_server: MlflowServer, pair_a_and_b: tuple[str, str]
) -> Iterator[FacadeProcess]:
    workdir = tmp_path_factory.mktemp("serving-swap")
    with facade_process(
        workdir,
        tracking_uri=mlflow_tracking_server.url,
        database_url=f"sqlite:///{workdir / 'jobs.db'}",
        env={"OSML_MODEL_POLL_SECONDS": str(POLL_SECONDS)},
    ) as process:
        yield process


def served_version(facade: FacadeProcess) -> str:
    response = httpx.post(f"{facade.url}/predict", content=SEED_PREDICT, headers=facade.predict_headers)
    assert response.status_code == 200, response.text
    return str(response.json()["modelVersion"])


def current_and_other(facade: FacadeProcess, server: MlflowServer, pair_a_and_b: tuple[str, str]) -> tuple[str, str]:
    """The pair in production (once `facade` serves it: an earlier test may have just moved the alias) and the
    other one."""
    production = registry.production_pair(registry_client(server))
    assert production is not None and production.model_version in pair_a_and_b
    wait_until(lambda: served_version(facade) == production.model_version, timeout=60, what="the facade to settle")
    return production.model_version, next(v for v in pair_a_and_b if v != production.model_version)


def registry_client(server: MlflowServer) -> MlflowClient:
    return MlflowClient(tracking_uri=server.url, registry_uri=server.url)


def test_a_promotion_in_the_registry_is_served_without_failing_a_request(
    facade: FacadeProcess, mlflow_tracking_server: MlflowServer, pair_a_and_b: tuple[str, str]
) -> None:
    current, promoted_version = current_and_other(facade, mlflow_tracking_server, pair_a_and_b)
    loop = LoadLoop(facade)
    worker = threading.Thread(target=loop.run)
    worker.start()
    try:
        wait_until(lambda: len(loop.outcomes) > 20, timeout=30, what="the load loop to run")
        registry.activate(registry_client(mlflow_tracking_server), promoted_version)
        promoted = time.monotonic()
        wait_until(
            lambda: promoted_version in loop.versions_since(promoted), timeout=60, what="responses naming the new pair"
        )
        first_new = next(t for t, _, v in list(loop.outcomes) if t >= promoted and v == promoted_version)
        settled = len(loop.outcomes)
        wait_until(lambda: len(loop.outcomes) > settled + 50, timeout=30, what="more responses after the swap")
    finally:
        loop.stop.set()
        worker.join(timeout=30)

    failures = [o for o in loop.outcomes if o[1] != 200]
    assert failures == [], failures[:5]
    versions = [v for _, _, v in loop.outcomes]
    switch = versions.index(promoted_version)
    # before the switch only the old pair, from the switch on only the new one: never a mix or a step back
    assert set(versions[:switch]) == {current} and set(versions[switch:]) == {promoted_version}
    # picked up by the poller: one interval, plus downloading and loading the pair from the tracking server
    assert first_new - promoted < POLL_SECONDS + 30


def test_a_registry_webhook_serves_a_promotion_long_before_the_next_poll(
    tmp_path: Path, mlflow_tracking_server: MlflowServer, pair_a_and_b: tuple[str, str]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/models/webhook"
    env = {"OSML_MODEL_POLL_SECONDS": "3600", "OSML_WEBHOOK_URL": url, "OSML_WEBHOOK_SECRET": secrets.token_hex(16)}
    client = registry_client(mlflow_tracking_server)
    common = {"tracking_uri": mlflow_tracking_server.url, "database_url": f"sqlite:///{tmp_path / 'jobs.db'}"}
    try:
        with facade_process(tmp_path, **common, env=env, port=port) as facade:  # type: ignore[arg-type]
            assert [w.url for w in client.list_webhooks()].count(url) == 1  # registered itself on start
            _, promoted_version = current_and_other(facade, mlflow_tracking_server, pair_a_and_b)
            registry.activate(client, promoted_version)
            # the poll interval is an hour: only a delivery can wake the poller within this minute
            wait_until(lambda: served_version(facade) == promoted_version, timeout=60, what="the webhook's swap")
            assert '"refresh":true' in facade.log.read_text()
    finally:
        for hook in client.list_webhooks():
            if hook.url == url:
                client.delete_webhook(hook.webhook_id)


def test_unservable_schema_is_409_and_the_current_pair_keeps_serving(
    facade: FacadeProcess, mlflow_tracking_server: MlflowServer, pair_a_and_b: tuple[str, str]
) -> None:
    current, other = current_and_other(facade, mlflow_tracking_server, pair_a_and_b)
    client = registry_client(mlflow_tracking_server)
    pair = registry.find_pair(client, other)
    try:
        for name, mv in ((SLA_MODEL_NAME, pair.sla), (ETA_MODEL_NAME, pair.eta)):
            client.set_model_version_tag(name, mv.version, TAG_SCHEMA_VERSION, "99")
        response = httpx.post(
            f"{facade.url}/models/activate", json={"modelVersion": other}, headers=facade.admin_headers
        )
        assert response.status_code == 409
        assert response.json()["code"] == "UNSUPPORTED_SCHEMA"
        assert "'99'" in response.json()["message"]
        assert registry.production_pair(client).model_version == current  # type: ignore[union-attr]
        assert served_version(facade) == current
    finally:
        for name, mv in ((SLA_MODEL_NAME, pair.sla), (ETA_MODEL_NAME, pair.eta)):
            client.set_model_version_tag(name, mv.version, TAG_SCHEMA_VERSION, pair.schema_version)


def test_a_worse_pair_moved_to_outside_the_facade_is_refused_by_the_gate(
    facade: FacadeProcess,
    mlflow_tracking_server: MlflowServer,
    pair_a_and_b: tuple[str, str],
    synthetic_csv: Path,
    tmp_path: Path,
) -> None:
    current, _ = current_and_other(facade, mlflow_tracking_server, pair_a_and_b)
    client = registry_client(mlflow_tracking_server)
    worse = train_fast_pair(
        shuffled_labels(synthetic_csv, tmp_path / "worse"), mlflow_tracking_server.url, activate=False
    )

    def entry() -> dict[str, Any]:
        models = httpx.get(f"{facade.url}/models", headers=facade.admin_headers, timeout=60).json()
        return next(m for m in models if m["modelVersion"] == worse.model_version)

    try:
        registry.activate(client, worse.model_version)  # as the MLflow UI would
        wait_until(lambda: "gateRefused" in entry(), timeout=90, what="the poller's gate refusal")
        refusal = entry()["gateRefused"]
        assert refusal["production"]["modelVersion"] == current and refusal["source"] == "recent"
        assert refusal["candidate"]["auc"] < refusal["production"]["auc"] - refusal["margins"]["auc"]
        assert served_version(facade) == current
        metrics = httpx.get(f"{facade.url}/metrics").text
        assert f'model_version="{worse.model_version}",outcome="refused",path="poll"}} 1.0' in metrics
        assert "promotion gate refused a pair" in facade.log.read_text()
    finally:
        registry.activate(client, current)


def test_the_current_pair_keeps_serving_while_the_registry_is_down(
    facade: FacadeProcess, mlflow_tracking_server: MlflowServer, pair_a_and_b: tuple[str, str]
) -> None:
    current, _ = current_and_other(facade, mlflow_tracking_server, pair_a_and_b)
    mlflow_tracking_server.stop()
    try:
        # every answer over several failed polls is recorded: a failure must show here, not be retried away
        answered: list[tuple[int, str | None]] = []
        until = time.monotonic() + 4 * POLL_SECONDS
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < until:
                response = client.post(f"{facade.url}/predict", content=SEED_PREDICT, headers=facade.predict_headers)
                answered.append((response.status_code, response.json().get("modelVersion")))
        assert answered and set(answered) == {(200, current)}
        models = httpx.get(f"{facade.url}/models", headers=facade.admin_headers, timeout=120)
        assert models.status_code == 503
        assert models.json()["code"] == "REGISTRY_UNAVAILABLE"
    finally:
        mlflow_tracking_server.start()
