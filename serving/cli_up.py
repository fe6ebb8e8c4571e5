"""`osml up` (what `make up` runs): the embedded default, from an empty clone to a serving facade.

If the registry has no production pair it trains one on freshly generated synthetic orders (`osml generate`,
`osml train --activate`, as child processes) or activates the newest servable pair when some exist. Then it
starts one trainer (`osml trainer`, which runs POST /train jobs) and the MLflow UI on the same store as child
processes, and serves the facade in this one, which never imports `training`. Ctrl-C stops everything.

The children die with this process however it dies: each gets the kernel's parent-death signal
(`osml.processes.die_with_parent`), and so does this process itself, so that SIGKILL of `make up` (a closed
terminal, a supervisor) stops it too. The UI runs without MLflow's GenAI job runner (seven processes, ~2.5 GB,
for trace scoring that osml does not use), as the stack's tracking server does (mlflow/server.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from mlflow import MlflowClient

from osml import registry
from osml.conventions import EMBEDDED_DIR, embedded_artifact_root, sqlite_artifact_root, tracking_uri
from osml.logs import configure_logging
from osml.processes import VENV_BIN, die_with_parent, start_process, stop_process
from osml.schema import SEED_EXAMPLE_PREDICT_BODY, SUPPORTED_SCHEMA_VERSIONS
from serving.cli_serve import bounded_registry_calls, serve
from serving.settings import ServingSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=int, default=5_000, help="synthetic orders to train on (empty registry)")
    parser.add_argument(
        "--candidates", help="comma-separated model families to try when training (default: all), e.g. xgboost"
    )
    parser.add_argument("--seed", type=int, default=42, help="synthetic data seed")
    parser.add_argument("--ui-port", type=int, default=5000, help="MLflow UI port (0: no UI)")


def _say(message: str) -> None:
    print(message, flush=True)


def _osml(*args: str) -> str:
    """Run `osml ARGS` in a child that dies with this process; its stderr is shown, its stdout returned."""
    done = subprocess.run(
        [str(VENV_BIN / "osml"), *args],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        preexec_fn=die_with_parent,
    )
    if done.returncode != 0:
        raise SystemExit(f"osml {args[0]} failed (exit code {done.returncode})")
    return done.stdout


def ensure_production_pair(uri: str, *, orders: int, seed: int, candidates: Sequence[str] | None = None) -> str:
    """The active modelVersion, training one on synthetic data when the registry has none."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    pair = registry.production_pair(client)
    if pair is not None:
        _say(f"registry: {pair.model_version} is in production")
        return pair.model_version
    servable = [p for p in registry.list_pairs(client) if p.schema_version in SUPPORTED_SCHEMA_VERSIONS]
    if servable:
        newest = registry.activate(client, servable[-1].model_version)
        _say(f"registry: no production pair; activated the newest, {newest.model_version}")
        return newest.model_version

    data_dir = Path.cwd() / EMBEDDED_DIR / "data" / "synthetic"
    _say(f"registry is empty: generating {orders} synthetic orders into {data_dir}")
    _osml("generate", "--orders", str(orders), "--seed", str(seed), "--out", str(data_dir))
    _say("training the SLA and ETA models (progress below)")
    train = ["train", "--dataset", str(data_dir), "--activate", "--candidates", ",".join(candidates or ["all"])]
    result = json.loads(_osml(*train).strip().splitlines()[-1])  # its last stdout line (training/cli_train.py)
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(result["metrics"].items()))
    _say(f"trained and activated {result['modelVersion']} ({metrics})")
    return str(result["modelVersion"])


def _api_keys() -> dict[str, str]:
    """Keys from the environment, else the ones `osml up` generated before (kept under .osml/)."""
    if os.environ.get("OSML_PREDICT_API_KEY") and os.environ.get("OSML_ADMIN_API_KEY"):
        return {}
    path = Path.cwd() / EMBEDDED_DIR / "api-keys.json"
    if path.exists():
        keys: dict[str, str] = json.loads(path.read_text())
    else:
        keys = {"predict_api_key": secrets.token_urlsafe(24), "admin_api_key": secrets.token_urlsafe(24)}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(keys, indent=2))
    return keys


def start_ui(uri: str, port: int) -> subprocess.Popen[bytes]:
    command = [
        str(VENV_BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        str(sqlite_artifact_root(uri) or embedded_artifact_root()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return start_process(
        command,
        log=Path.cwd() / EMBEDDED_DIR / "mlflow-ui.log",
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        with_parent=True,
    )


def start_trainer(settings: ServingSettings) -> subprocess.Popen[bytes]:
    """One `osml trainer` on the facade's job table and registry: it runs what POST /train queues."""
    env = {"OSML_DATABASE_URL": settings.database_url, "MLFLOW_TRACKING_URI": settings.tracking_uri}
    return start_process(
        [str(VENV_BIN / "osml"), "trainer"], log=Path.cwd() / EMBEDDED_DIR / "trainer.log", env=env, with_parent=True
    )


def banner(settings: ServingSettings, *, model_version: str, ui_url: str | None) -> str:
    facade = f"http://{settings.host}:{settings.port}"
    key = settings.predict_api_key.get_secret_value() if settings.predict_api_key else None
    headers = "-H 'Content-Type: application/json'" + (f" -H 'X-API-Key: {key}'" if key else "")
    body = shlex.quote(json.dumps(SEED_EXAMPLE_PREDICT_BODY))
    lines = [
        "",
        "osml is starting",
        f"  facade     {facade}   (OpenAPI docs {facade}/docs, metrics {facade}/metrics)",
        f"  MLflow UI  {ui_url}" if ui_url else "  MLflow UI  (not started)",
        f"  trainer    runs POST /train jobs (log {EMBEDDED_DIR / 'trainer.log'})",
        f"  model      {model_version} (registry alias 'production')",
    ]
    if settings.admin_api_key is not None:
        lines.append(f"  admin key  {settings.admin_api_key.get_secret_value()}  (for /train and /models)")
    lines += ["", "predict:", f"  curl -s {facade}/predict {headers} -d {body}", "", "Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    die_with_parent()  # `make up` killed, even by SIGKILL: this process gets SIGTERM and stops its children
    bounded_registry_calls()
    configure_logging(os.environ.get("OSML_LOG_LEVEL", "INFO"))
    uri = tracking_uri()
    os.environ["MLFLOW_TRACKING_URI"] = uri  # the facade, the trainer and the UI share one store
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()] if args.candidates else None
    model_version = ensure_production_pair(uri, orders=args.orders, seed=args.seed, candidates=candidates)
    settings = ServingSettings(**_api_keys())  # type: ignore[arg-type]
    children = [start_trainer(settings)]
    ui_url: str | None = uri if uri.startswith("http") else None
    if ui_url is None and args.ui_port:
        children.append(start_ui(uri, args.ui_port))
        ui_url = f"http://127.0.0.1:{args.ui_port}"
    _say(banner(settings, model_version=model_version, ui_url=ui_url))
    try:
        serve(settings)
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it shut down on; here it is the normal way to stop
    finally:
        for child in children:
            stop_process(child, timeout=15)
    return 0
