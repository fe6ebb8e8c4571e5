"""Serving benchmark: the facade against what a user would run instead, its distance to its own HTTP stack's
limit, and /predict/batch against in-process prediction of the same rows.

- the facade's POST /predict (SLA + ETA) and its bare GET /health (the limit of this HTTP stack);
- `mlflow models serve` of a scikit-learn Pipeline (OrdinalEncoder + XGBClassifier, `mlflow.sklearn`) on the
  same synthetic orders (bench/baseline.py): the baseline;
- `mlflow models serve` of the registered SLA model itself (its pyfunc, osml/mlflow_model.py);
- the facade's POST /predict again, without and then with a shadow challenger loaded (serving/shadow.py), in
  alternating rounds: a copy of the production pair registered under another modelVersion and put under the alias
  `challenger`, so the challenger costs exactly what production does.
Every server runs one worker on this machine and gets the same load from `wrk` (the seed's order, one per
request; for MLflow as `dataframe_records`): 16 connections for throughput, one for unloaded latency. The facade
runs as `osml serve` would in production: API key checked, one JSON log line per request, metrics recorded.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import baseline
from osml.conventions import SLA_MODEL_NAME
from osml.processes import VENV_BIN, free_port, http_ok, start_process, stop_process, wait_until
from osml.schema import SEED_EXAMPLE_FEATURES, SEED_EXAMPLE_PREDICT_BODY
from tests.services import fresh_database
from worker.migrate import upgrade

BATCH_ROWS = 10_000

TARGET_RATIO = 5.0  # facade /predict over the scikit-learn pipeline under `mlflow models serve`
TARGET_P99_MS = 2.0
TARGET_BATCH_SHARE = 0.6
TARGET_EXPLAIN_MS = 1.0  # what ?explain=3 may add to a /predict at p50
TARGET_SHADOW_SHARE = 0.10  # what a loaded shadow challenger may add to /predict p50 (1 connection)


@dataclass(frozen=True)
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    failures: int


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * _UNIT_MS[unit]


def parse_wrk(output: str) -> Load:
    percentile = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, flags=re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return Load(
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(percentile["50"]),
        p99_ms=_ms(percentile["99"]),
        requests=int(re.search(r"(\d+) requests in", output).group(1)),  # type: ignore[union-attr]
        failures=(int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, socket.groups())) if socket else 0),
    )


def lua_script(path: Path, body: dict[str, Any], headers: dict[str, str]) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body, separators=(',', ':')))}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def wrk(url: str, script: Path, *, connections: int, seconds: float) -> Load:
    # a generous timeout: a slow answer must count in the latency, not vanish as a socket error
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s", "--latency", "-s", str(script)]
    result = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=seconds + 90)
    try:
        return parse_wrk(result.stdout)
    except (AttributeError, KeyError) as exc:
        raise RuntimeError(f"unexpected wrk output:\n{result.stdout}\n{result.stderr}") from exc


class Child:
    """A server process in its own process group (`osml.processes`), output to a log file."""

    def __init__(self, name: str, command: list[str], *, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self.proc = start_process(command, log=log, env=env)

    def wait_http(self, url: str, *, timeout: float = 180) -> None:
        """Until `url` answers 200; fails at once if the process exits meanwhile."""
        outcome = wait_until(
            lambda: "exited" if self.proc.poll() is not None else http_ok(url),
            timeout=timeout,
            interval=0.25,
            what=f"{self.name} (log: {self.log})",
        )
        if outcome == "exited":
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")

    def stop(self) -> None:
        stop_process(self.proc)


def start_facade(uri: str, workdir: Path, *, port: int, predict_key: str, env: dict[str, str] | None = None) -> Child:
    """`osml serve` on `port` for the production pair of `uri`, job state in `workdir`."""
    return Child(
        "facade",
        [str(VENV_BIN / "osml"), "serve", "--port", str(port)],
        env={
            "MLFLOW_TRACKING_URI": uri,
            "OSML_PREDICT_API_KEY": predict_key,
            "OSML_ADMIN_API_KEY": secrets.token_urlsafe(16),
            "OSML_DATABASE_URL": f"sqlite:///{workdir / 'jobs.db'}",
            **(env or {}),
        },
        log=workdir / "facade.log",
    )


def ensure_pair(tracking_uri: str, workdir: Path, say: Callable[[str], None]) -> str:
    """The production modelVersion of `tracking_uri`, training one on synthetic orders when there is none."""
    from mlflow import MlflowClient

    from osml.registry import production_pair

    pair = production_pair(MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri))
    if pair is not None:
        return pair.model_version
    from training.data.synthetic import generate, write_csv
    from training.pipeline import train

    data = workdir / "train-data"
    write_csv(generate(orders=5_000, seed=7), data)
    os.environ["OSML_DATASET_ROOTS"] = str(data)  # the bench's own scratch data is its only dataset
    say("training a pair (xgboost candidates) on 5,000 synthetic orders ...")
    result = train(dataset_ref=str(data), activate=True, tracking_uri=tracking_uri, candidates=("xgboost",))
    return result.model_version


def batch_rows(schema_version: str) -> list[dict[str, Any]]:
    """10,000 realistic feature rows (synthetic orders through the training feature builder), as JSON values."""
    from training.data.synthetic import generate
    from training.features import build_features

    features = build_features(generate(orders=BATCH_ROWS, seed=11).orders, schema_version=schema_version)
    rows: list[dict[str, Any]] = orjson.loads(features.head(BATCH_ROWS).to_json(orient="records"))
    return [{k: v for k, v in row.items() if v is not None} for row in rows]


def interleaved_medians(
    first: Callable[[], object], second: Callable[[], object], *, repeats: int
) -> tuple[float, float]:
    """Median seconds of each action, run alternately so that both see the same machine (a burst of other work
    lands on both, not on one side of the ratio)."""
    first(), second()  # warm-up
    timings: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for action, out in ((first, timings[0]), (second, timings[1])):
            start = time.perf_counter()
            action()
            out.append(time.perf_counter() - start)
    return statistics.median(timings[0]), statistics.median(timings[1])


def in_process_predictor(tracking_uri: str, rows: list[dict[str, Any]]) -> Callable[[], object]:
    """Both production models loaded exactly as the facade loads them, predicting the rows in this process."""
    from mlflow import MlflowClient

    from osml.registry import production_pair
    from serving.model_store import RegistryLoader

    pair = production_pair(MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri))
    assert pair is not None
    with tempfile.TemporaryDirectory() as tmp:
        active = RegistryLoader(tracking_uri=tracking_uri, cache_dir=Path(tmp))(pair)

    def predict_both() -> None:
        active.sla.predict(rows)
        active.eta.predict(rows)

    return predict_both


def http_batch_poster(client: httpx.Client, url: str, key: str, rows: list[dict[str, Any]]) -> Callable[[], object]:
    """POSTs the rows as one /predict/batch call (checked once for a full answer)."""
    body = orjson.dumps(
        {"items": [{"requestId": f"r{i}", "orderId": f"o{i}", "features": r} for i, r in enumerate(rows)]}
    )
    headers = {"Content-Type": "application/json", "X-API-Key": key}

    def post() -> httpx.Response:
        response = client.post(url, content=body, headers=headers)
        response.raise_for_status()
        return response

    answered = len(orjson.loads(post().content)["items"])
    if answered != len(rows):
        raise RuntimeError(f"/predict/batch answered {answered} items for {len(rows)}")
    return post


@contextmanager
def challenger_copy(tracking_uri: str) -> Iterator[str]:
    """The production pair registered again under another modelVersion and the alias `challenger`; removed after."""
    from mlflow import MlflowClient

    from osml.conventions import CHALLENGER_ALIAS, TAG_MODEL_VERSION
    from osml.registry import production_pair

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    pair = production_pair(client)
    assert pair is not None
    model_version = f"{pair.model_version[:10]}_999"  # a day's last sequence: training does not reach it
    copies = []
    try:
        for source in (pair.eta, pair.sla):
            copy = client.create_model_version(
                source.name,
                str(source.source),
                run_id=source.run_id,
                tags={**source.tags, TAG_MODEL_VERSION: model_version},
            )
            copies.append(copy)
            client.set_registered_model_alias(source.name, CHALLENGER_ALIAS, copy.version)
        yield model_version
    finally:
        for copy in copies:
            client.delete_model_version(copy.name, copy.version)  # its alias goes with it


def prometheus_value(url: str, name: str, labels: dict[str, str]) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


SHADOW_ROUNDS = 3


def challenger_is(metrics_url: str, model_version: str, *, loaded: bool) -> bool:
    """Whether the facade at `metrics_url` has (or, loaded=False, no longer has) `model_version` as challenger."""
    value = prometheus_value(metrics_url, "osml_challenger_model_version", {"model_version": model_version})
    return (value == 1) == loaded


@dataclass(frozen=True)
class ShadowRounds:
    rounds: list[tuple[Load, Load]]  # (without, with a challenger) at 1 connection
    scored: float
    dropped: float

    @property
    def median_change(self) -> float:
        return statistics.median(on.p50_ms / off.p50_ms - 1 for off, on in self.rounds)


def shadow_rounds(
    facade_url: str, tracking_uri: str, url: str, script: Path, *, seconds: float, say: Callable[[str], None]
) -> ShadowRounds:
    """/predict at 1 connection without, then with a challenger, SHADOW_ROUNDS times."""
    metrics = f"{facade_url}/metrics"
    rounds, scored, dropped = [], 0.0, 0.0
    for round_ in range(1, SHADOW_ROUNDS + 1):
        say(f"shadow round {round_}: /predict without a challenger, 1 connection, {seconds:g} s")
        without = wrk(url, script, connections=1, seconds=seconds)
        with challenger_copy(tracking_uri) as challenger:
            loaded = {"model_version": challenger}
            wait_until(
                partial(challenger_is, metrics, challenger, loaded=True),
                timeout=120,
                interval=0.5,
                what=f"the facade loading challenger {challenger}",
            )
            say(f"shadow round {round_}: /predict with challenger {challenger}, 1 connection, {seconds:g} s")
            rounds.append((without, wrk(url, script, connections=1, seconds=seconds)))
            scored = prometheus_value(metrics, "osml_shadow_predictions_total", loaded) or 0.0
            dropped = prometheus_value(metrics, "osml_shadow_dropped_total", {}) or 0.0
        wait_until(
            partial(challenger_is, metrics, challenger, loaded=False),
            timeout=120,
            interval=0.5,
            what="the facade dropping the removed challenger",
        )
    return ShadowRounds(rounds, scored, dropped)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({model}), Python {sys.version.split()[0]}, load average at start {load}"


def run(report: list[str], *, seconds: float = 15.0, tracking_uri: str | None = None) -> bool:
    """Measure, append the serving section to `report`, and say whether every target was met."""

    def say(message: str) -> None:
        print(f"[bench serving] {message}", flush=True)

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    host = machine()
    # the facade's database is PostgreSQL, as in the stack: the shadow case stores its rows there
    with tempfile.TemporaryDirectory(prefix="osml-bench-") as tmp, fresh_database("osml_bench_serving") as database:
        upgrade(database)
        workdir = Path(tmp)
        uri = tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}"
        model_version = ensure_pair(uri, workdir, say)
        key = secrets.token_urlsafe(16)
        facade_port, mlflow_port, pipeline_port = free_port(), free_port(), free_port()
        schema_version = facade_schema_version(uri)
        say("training the baseline: a scikit-learn Pipeline (OrdinalEncoder + XGBClassifier) ...")
        pipeline_uri = baseline.log_pipeline(uri, schema_version)
        facade = start_facade(uri, workdir, port=facade_port, predict_key=key, env={"OSML_DATABASE_URL": database})
        servers = {
            "mlflow": mlflow_serve(uri, f"models:/{SLA_MODEL_NAME}@production", mlflow_port, workdir / "mlflow.log"),
            "pipeline": mlflow_serve(uri, pipeline_uri, pipeline_port, workdir / "pipeline.log"),
        }
        try:
            facade.wait_http(f"http://127.0.0.1:{facade_port}/health/ready")
            for server, port in zip(servers.values(), (mlflow_port, pipeline_port), strict=True):
                server.wait_http(f"http://127.0.0.1:{port}/ping")
            json_headers = {"Content-Type": "application/json"}
            facade_url = f"http://127.0.0.1:{facade_port}"
            health_lua = workdir / "health.lua"
            health_lua.write_text('wrk.method = "GET"\n')
            targets = {
                "facade": (
                    f"{facade_url}/predict",
                    lua_script(workdir / "facade.lua", SEED_EXAMPLE_PREDICT_BODY, {**json_headers, "X-API-Key": key}),
                ),
                "explain": (f"{facade_url}/predict?explain=3", workdir / "facade.lua"),
                "health": (f"{facade_url}/health", health_lua),
                "mlflow": (
                    f"http://127.0.0.1:{mlflow_port}/invocations",
                    lua_script(workdir / "mlflow.lua", {"dataframe_records": [SEED_EXAMPLE_FEATURES]}, json_headers),
                ),
                "pipeline": (
                    f"http://127.0.0.1:{pipeline_port}/invocations",
                    lua_script(
                        workdir / "pipeline.lua",
                        {"dataframe_records": [baseline.request_record(schema_version)]},
                        json_headers,
                    ),
                ),
            }
            loads: dict[tuple[str, int], Load] = {}
            for name, (url, script) in targets.items():
                wrk(url, script, connections=16, seconds=3)  # warm-up
                for connections in (16,) if name == "health" else (16, 1):
                    say(f"{name}: {connections} connection(s), {seconds:g} s")
                    loads[name, connections] = wrk(url, script, connections=connections, seconds=seconds)
            say(f"/predict/batch: {BATCH_ROWS} rows per call vs in-process predict")
            rows = batch_rows(schema_version)
            with httpx.Client(timeout=300) as client:
                in_process, over_http = interleaved_medians(
                    in_process_predictor(uri, rows),
                    http_batch_poster(client, f"{facade_url}/predict/batch", key, rows),
                    repeats=7,
                )
            # last, so that no other figure is taken with a challenger loaded
            predict_url, predict_lua = targets["facade"]
            shadow = shadow_rounds(facade_url, uri, predict_url, predict_lua, seconds=seconds, say=say)
        finally:
            facade.stop()
            for server in servers.values():
                server.stop()

    ratio = loads["facade", 16].requests_per_s / loads["pipeline", 16].requests_per_s
    of_limit = loads["facade", 16].requests_per_s / loads["health", 16].requests_per_s
    share = in_process / over_http
    unloaded_p99 = loads["facade", 1].p99_ms
    explain_cost = loads["explain", 1].p50_ms - loads["facade", 1].p50_ms
    shadow_cost = shadow.median_change
    checks = [
        (
            f"facade / scikit-learn pipeline throughput at 16 connections >= {TARGET_RATIO:g}x",
            ratio >= TARGET_RATIO,
            f"{ratio:.1f}x",
        ),
        (f"facade unloaded p99 <= {TARGET_P99_MS:g} ms", unloaded_p99 <= TARGET_P99_MS, f"{unloaded_p99:.2f} ms"),
        (
            f"/predict/batch >= {TARGET_BATCH_SHARE:.0%} of in-process rows/s",
            share >= TARGET_BATCH_SHARE,
            f"{share:.0%}",
        ),
        (
            f"?explain=3 adds <= {TARGET_EXPLAIN_MS:g} ms per row at p50 (1 connection)",
            explain_cost <= TARGET_EXPLAIN_MS,
            f"{explain_cost:+.2f} ms",
        ),
        (
            f"a shadow challenger adds < {TARGET_SHADOW_SHARE:.0%} to /predict p50 (1 connection, median of "
            f"{SHADOW_ROUNDS} rounds)",
            shadow_cost < TARGET_SHADOW_SHARE,
            f"{shadow_cost:+.1%}",
        ),
        (
            "no failed request under load",
            all(v.failures == 0 for v in [*loads.values(), *(x for r in shadow.rounds for x in r)]),
            "",
        ),
    ]
    report += [
        "## Serving: facade vs `mlflow models serve`",
        "",
        f"Measured {started} by `make bench` (`python -m bench.run`) on {host}.",
        f"Model pair `{model_version}` (SLA model `models:/{SLA_MODEL_NAME}@production`); one worker each; "
        f"`wrk -t1 --latency`, {seconds:g} s per run after a 3 s warm-up; the facade checks the API key, "
        "logs one JSON line and records metrics per request. The baseline is the SLA model as scikit-learn "
        "`Pipeline` (`OrdinalEncoder` + `XGBClassifier`, `mlflow.sklearn`, bench/baseline.py) under "
        "`mlflow models serve`.",
        "",
        "| server | endpoint | connections | requests/s | p50 (ms) | p99 (ms) | failed |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    described = {
        "facade": ("osml facade", "POST /predict (SLA + ETA)"),
        "explain": ("osml facade", "POST /predict?explain=3 (SLA + ETA + both TreeSHAP top-3)"),
        "health": ("osml facade", "GET /health (no work: the HTTP stack's limit)"),
        "pipeline": ("mlflow models serve", "POST /invocations, scikit-learn pipeline (SLA only)"),
        "mlflow": ("mlflow models serve", "POST /invocations, the registered SLA pyfunc"),
    }
    for (name, connections), load in loads.items():
        label, endpoint = described[name]
        report.append(
            f"| {label} | {endpoint} | {connections} | {load.requests_per_s:,.0f} | {load.p50_ms:.2f} | "
            f"{load.p99_ms:.2f} | {load.failures} |"
        )
    report += [
        "",
        f"Throughput at 16 connections: facade / scikit-learn pipeline **{ratio:.1f}x**; facade /predict is "
        f"**{of_limit:.0%}** of the same server's bare GET /health.",
        "",
        f"| batch path ({BATCH_ROWS:,} rows, SLA + ETA) | median seconds per batch | rows/s |",
        "|---|---:|---:|",
        f"| in-process `predict` (both models) | {in_process:.3f} | {BATCH_ROWS / in_process:,.0f} |",
        f"| `POST /predict/batch` (JSON both ways, validated) | {over_http:.3f} | {BATCH_ROWS / over_http:,.0f} |",
        "",
        f"/predict/batch reaches **{share:.0%}** of in-process rows/s (medians of 7 calls each, the two paths "
        "alternating so that both see the same machine).",
        "",
        "Shadow challenger: a copy of the production pair under the alias `challenger`, scored beside every "
        "/predict and stored in the facade's PostgreSQL database (a fresh one, migrated). Each round measures /predict at 1 connection without "
        "a challenger, then with one (registered, loaded, measured, removed): the rounds alternate so that both sides "
        "see the same machine.",
        "",
        "| round | p50 without (ms) | p50 with (ms) | change | p99 without (ms) | p99 with (ms) |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {i + 1} | {off.p50_ms:.3f} | {on.p50_ms:.3f} | {on.p50_ms / off.p50_ms - 1:+.1%} | "
            f"{off.p99_ms:.2f} | {on.p99_ms:.2f} |"
            for i, (off, on) in enumerate(shadow.rounds)
        ),
        "",
        f"Median change of /predict p50: **{shadow_cost:+.1%}**; the challenger scored {shadow.scored:,.0f} rows and "
        f"dropped {shadow.dropped:,.0f} (queue full).",
        "",
        "| acceptance target | measured | met |",
        "|---|---:|:---:|",
    ]
    report += [f"| {label} | {value} | {'yes' if ok else 'NO'} |" for label, ok, value in checks]
    report.append("")
    return all(ok for _, ok, _ in checks)


def mlflow_serve(tracking_uri: str, model_uri: str, port: int, log: Path) -> Child:
    """`mlflow models serve` of `model_uri` in this environment, one worker."""
    serve = ["models", "serve", "-m", model_uri, "--env-manager", "local", "--workers", "1"]
    return Child(
        f"mlflow models serve {model_uri}",
        [str(VENV_BIN / "mlflow"), *serve, "--host", "127.0.0.1", "--port", str(port)],
        # its launcher execs `uvicorn` from PATH
        env={"MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        log=log,
    )


def facade_schema_version(tracking_uri: str) -> str:
    from mlflow import MlflowClient

    from osml.registry import production_pair

    pair = production_pair(MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri))
    assert pair is not None
    return pair.schema_version
