"""The promotion gate on real pairs in an embedded registry: activation, the poller and `osml activate`.

Three pairs trained on one small dataset: `good` (every order, true labels), `equal` (the same data and seed
retrained) and `worse` (the older 60 % of the orders with their resolution times shuffled among them, so both
labels are noise). The gate scores `worse` on the orders it did not train on (`good`'s evaluation slice, true
labels), where it must lose.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from osml import cli, registry
from osml.conventions import SLA_MODEL_NAME
from serving.gate import GATE_EXPERIMENT_NAME, TAG_FORCED_OVER
from serving.settings import ServingSettings
from tests.conftest_training import shuffled_labels, train_fast_pair
from tests.contract.test_seed_payloads import SEED_PREDICT
from tests.unit.serving.conftest import ADMIN_KEY, PREDICT_KEY
from training.data.synthetic import generate, write_csv

pytestmark = pytest.mark.unit

ORDERS = 500
ADMIN = {"X-API-Key": ADMIN_KEY}


class Pairs:
    def __init__(self, tracking_uri: str, good: str, equal: str, worse: str) -> None:
        self.tracking_uri, self.good, self.equal, self.worse = tracking_uri, good, equal, worse
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def production(self) -> str | None:
        pair = registry.production_pair(self.client)
        return pair.model_version if pair else None

    def gate_runs(self, candidate: str) -> list[dict[str, Any]]:
        experiment = self.client.get_experiment_by_name(GATE_EXPERIMENT_NAME)
        if experiment is None:
            return []
        runs = self.client.search_runs([experiment.experiment_id], f"params.candidate = '{candidate}'")
        return [{"tags": r.data.tags, "params": r.data.params, "metrics": r.data.metrics} for r in runs]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Pairs:
    root = tmp_path_factory.mktemp("gate")
    write_csv(generate(orders=ORDERS, seed=7), root / "orders")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    good = train_fast_pair(root / "orders" / "orders.csv", uri, activate=True).model_version
    worse = train_fast_pair(shuffled_labels(root / "orders" / "orders.csv", root / "worse"), uri, activate=False)
    equal = train_fast_pair(root / "orders" / "orders.csv", uri, activate=False).model_version
    return Pairs(uri, good, equal, worse.model_version)


@pytest.fixture
def settings(tmp_path: Path, pairs: Pairs) -> ServingSettings:
    return ServingSettings(
        predict_api_key=PREDICT_KEY,
        admin_api_key=ADMIN_KEY,
        database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
        tracking_uri=pairs.tracking_uri,
        model_poll_seconds=3600,  # the tests call the poller's step (`refresh`) themselves
    )


@pytest.fixture(autouse=True)
def production_is_good(pairs: Pairs) -> Iterator[None]:
    """Every test starts (the facade boots) with `good` in production and no force recorded on `worse`."""
    registry.activate(pairs.client, pairs.good)
    yield
    worse = registry.find_pair(pairs.client, pairs.worse)
    if TAG_FORCED_OVER in worse.sla.tags:
        pairs.client.delete_model_version_tag(SLA_MODEL_NAME, worse.sla.version, TAG_FORCED_OVER)


async def activate(client: httpx.AsyncClient, version: str, **extra: Any) -> httpx.Response:
    return await client.post("/models/activate", json={"modelVersion": version, **extra}, headers=ADMIN)


async def served(client: httpx.AsyncClient) -> str:
    response = await client.post("/predict", content=SEED_PREDICT, headers={"X-API-Key": PREDICT_KEY})
    assert response.status_code == 200, response.text
    return str(response.json()["modelVersion"])


def decisions(metrics_text: str, outcome: str, version: str, path: str) -> float:
    wanted = {"outcome": outcome, "model_version": version, "path": path}
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        if family.name == "osml_promotion_gate_decisions"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels == wanted
    )


async def test_a_worse_candidate_is_refused_with_both_pairs_figures(client: httpx.AsyncClient, pairs: Pairs) -> None:
    response = await activate(client, pairs.worse)

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "GATE_REFUSED" and "force" in body["message"]
    gate = body["gate"]
    assert gate["candidate"]["modelVersion"] == pairs.worse and gate["production"]["modelVersion"] == pairs.good
    # scored on orders `worse` never saw: the newest pair's evaluation slice, after its own newest order
    assert gate["source"] == "recent" and gate["sourceModelVersion"] == pairs.good
    assert gate["rows"]["sla"] > 0 and gate["rows"]["eta"] > 0
    assert gate["candidate"]["auc"] < gate["production"]["auc"] - gate["margins"]["auc"]
    assert gate["candidate"]["maeMinutes"] > gate["production"]["maeMinutes"]
    assert gate["reasons"]
    assert pairs.production() == pairs.good and await served(client) == pairs.good
    assert decisions((await client.get("/metrics")).text, "refused", pairs.worse, "activate") == 1
    run = next(r for r in pairs.gate_runs(pairs.worse) if r["tags"]["osml.gate.via"] == "activate")  # newest first
    assert run["tags"]["osml.gate.decision"] == "refused"
    assert run["metrics"]["candidate_auc"] == pytest.approx(gate["candidate"]["auc"], abs=1e-6)
    assert run["metrics"]["production_mae_minutes"] == pytest.approx(gate["production"]["maeMinutes"], abs=1e-6)


async def test_force_activates_a_refused_candidate_and_logs_both_figures(
    client: httpx.AsyncClient, pairs: Pairs, caplog: pytest.LogCaptureFixture
) -> None:
    runs_before = len(pairs.gate_runs(pairs.worse))
    with caplog.at_level(logging.WARNING, logger="osml.serving.gate"):
        response = await activate(client, pairs.worse, force=True)

    assert response.status_code == 200 and response.json() == {"activeModelVersion": pairs.worse}
    assert pairs.production() == pairs.worse and await served(client) == pairs.worse
    assert decisions((await client.get("/metrics")).text, "forced", pairs.worse, "activate") == 1
    [record] = [r for r in caplog.records if r.getMessage() == "promotion gate overridden (force)"]
    assert record.__dict__["candidate"]["auc"] < record.__dict__["production"]["auc"]
    runs = pairs.gate_runs(pairs.worse)
    assert len(runs) == runs_before + 1
    assert [r["tags"]["osml.gate.decision"] for r in runs].count("forced") >= 1
    worse = registry.find_pair(pairs.client, pairs.worse)
    assert worse.sla.tags[TAG_FORCED_OVER] == pairs.good  # so every facade's poller serves it over `good`


async def test_an_equal_candidate_passes(client: httpx.AsyncClient, pairs: Pairs) -> None:
    response = await activate(client, pairs.equal)

    assert response.status_code == 200 and response.json() == {"activeModelVersion": pairs.equal}
    assert pairs.production() == pairs.equal and await served(client) == pairs.equal
    run = pairs.gate_runs(pairs.equal)[0]  # newest first
    assert run["tags"]["osml.gate.decision"] == "passed"
    # the same data: no orders newer than its own, so its own evaluation slice
    assert run["params"]["source"] == "evaluation" and run["params"]["production"] == pairs.good


async def test_a_better_candidate_passes(client: httpx.AsyncClient, pairs: Pairs) -> None:
    forced = await activate(client, pairs.worse, force=True)
    assert forced.status_code == 200, forced.text

    response = await activate(client, pairs.good)

    assert response.status_code == 200 and response.json() == {"activeModelVersion": pairs.good}
    assert pairs.production() == pairs.good and await served(client) == pairs.good
    run = pairs.gate_runs(pairs.good)[0]  # newest first
    assert run["tags"]["osml.gate.decision"] == "passed" and run["params"]["production"] == pairs.worse
    assert run["metrics"]["candidate_auc"] > run["metrics"]["production_auc"]


async def test_the_activation_body_without_force_is_unchanged(client: httpx.AsyncClient, pairs: Pairs) -> None:
    bad = await client.post("/models/activate", json={"modelVersion": pairs.equal, "force": "sometimes"}, headers=ADMIN)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "force"


async def test_the_poller_refuses_a_worse_pair_the_alias_was_moved_to_elsewhere(
    app: FastAPI, client: httpx.AsyncClient, pairs: Pairs
) -> None:
    store = app.state.plane.store
    assert await served(client) == pairs.good
    registry.activate(pairs.client, pairs.worse)  # as the MLflow UI or another tool would

    await asyncio.to_thread(store.refresh)  # the poller's step
    await asyncio.to_thread(store.refresh)  # the next poll: refused once, not compared again

    assert await served(client) == pairs.good
    models = {m["modelVersion"]: m for m in (await client.get("/models", headers=ADMIN)).json()}
    entry = models[pairs.worse]
    assert entry["active"] is True  # the alias names it ...
    assert entry["gateRefused"]["production"]["modelVersion"] == pairs.good  # ... but this facade refused it
    assert entry["gateRefused"]["candidate"]["auc"] < entry["gateRefused"]["production"]["auc"]
    assert "gateRefused" not in models[pairs.good]
    assert decisions((await client.get("/metrics")).text, "refused", pairs.worse, "poll") == 1
    assert [
        r["tags"]["osml.gate.decision"] for r in pairs.gate_runs(pairs.worse) if r["tags"]["osml.gate.via"] == "poll"
    ]


async def test_a_recording_that_fails_does_not_fail_an_allowed_activation(
    client: httpx.AsyncClient, pairs: Pairs, caplog: pytest.LogCaptureFixture
) -> None:
    await activate(client, pairs.equal)  # records, so the gate's experiment exists
    experiment = pairs.client.get_experiment_by_name(GATE_EXPERIMENT_NAME)
    assert experiment is not None
    pairs.client.delete_experiment(experiment.experiment_id)  # no run can be created in it any more
    try:
        with caplog.at_level(logging.WARNING, logger="osml.serving.gate"):
            response = await activate(client, pairs.good)
    finally:
        pairs.client.restore_experiment(experiment.experiment_id)

    assert response.status_code == 200 and response.json() == {"activeModelVersion": pairs.good}
    assert pairs.production() == pairs.good
    assert any(r.getMessage() == "promotion gate comparison not recorded in MLflow" for r in caplog.records)


async def test_the_cli_refuses_then_forces_and_the_facade_serves_the_forced_pair(
    app: FastAPI,
    client: httpx.AsyncClient,
    pairs: Pairs,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", pairs.tracking_uri)
    assert await asyncio.to_thread(cli.main, ["activate", pairs.worse]) == 1
    refused = json.loads(capsys.readouterr().out)
    assert refused["code"] == "GATE_REFUSED"
    assert refused["gate"]["candidate"]["auc"] < refused["gate"]["production"]["auc"]
    assert refused["gate"]["production"]["maeMinutes"] is not None
    assert pairs.production() == pairs.good

    assert await asyncio.to_thread(cli.main, ["activate", pairs.worse, "--force"]) == 0
    assert json.loads(capsys.readouterr().out) == {"activeModelVersion": pairs.worse}
    assert pairs.production() == pairs.worse
    cli_runs = [r for r in pairs.gate_runs(pairs.worse) if r["tags"]["osml.gate.via"] == "cli"]
    assert [r["tags"]["osml.gate.decision"] for r in cli_runs[:2]] == ["forced", "refused"]  # newest first

    await asyncio.to_thread(app.state.plane.store.refresh)  # the facade's poller honours the force
    assert await served(client) == pairs.worse


def test_the_cli_names_an_unknown_model_version(
    pairs: Pairs, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", pairs.tracking_uri)
    assert cli.main(["activate", "2001-01-01_001"]) == 2
    assert "no model version 2001-01-01_001" in capsys.readouterr().err
