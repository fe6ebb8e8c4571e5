"""Registered models are MLflow models that stand alone, hold no pickle, and a planted pickle is refused.

- Every file of both registered versions is data or source: no pickle anywhere; each version links its run,
  and the experiment opens in the UI's model-training view.
- In a fresh virtualenv holding only the model's logged requirements (no osml), `mlflow.pyfunc.load_model` of
  `models:/os-sla-risk@production` predicts the seed example, and `mlflow models serve --env-manager virtualenv`
  answers /invocations, with the same number the facade's own loader gives.
- A pickle planted where a model file is expected is refused by the facade's loader, and never runs.

The virtualenv tests install the pinned requirements with pip (from its cache or the package index) and, for
`mlflow models serve`, need pyenv on PATH: MLflow's virtualenv manager takes its Python from pyenv.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from osml import model_files, registry
from osml.conventions import EXPERIMENT_NAME, SLA_MODEL_NAME
from osml.experiments import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
from serving.errors import ModelLoadFailed
from serving.model_store import RegistryLoader
from tests.conftest_training import train_fast_pair
from tests.support import SEED_FEATURES, free_port, start_process, stop_process, wait_until

pytestmark = pytest.mark.integration

PRODUCTION_SLA = f"models:/{SLA_MODEL_NAME}@production"
INSTALL_TIMEOUT_S = 900  # a fresh environment: mlflow, xgboost, numpy, pandas, pydantic and their dependencies


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, synthetic_csv: Path) -> str:
    """An embedded registry holding one trained production pair (read-only for the tests of this module)."""
    root = tmp_path_factory.mktemp("model-format")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    train_fast_pair(synthetic_csv, uri)
    return uri


def _facade_risk(uri: str, tmp_path: Path) -> float:
    pair = registry.production_pair(MlflowClient(uri, registry_uri=uri))
    assert pair is not None
    cache = tmp_path / "facade-cache"
    cache.mkdir()
    active = RegistryLoader(tracking_uri=uri, cache_dir=cache)(pair)
    assert list(cache.iterdir()) == []  # the runtime holds the model in memory: its download is deleted
    return float(active.sla.predict([SEED_FEATURES])[0])


def test_registered_versions_hold_no_pickle_and_link_their_runs(store: str, tmp_path: Path) -> None:
    client = MlflowClient(store, registry_uri=store)
    pair = registry.production_pair(client)
    assert pair is not None
    for version in (pair.sla, pair.eta):
        assert client.get_run(version.run_id).info.run_id == version.run_id  # the version page links its run
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=client.get_model_version_download_uri(version.name, version.version),
                dst_path=str(tmp_path / version.name),
                tracking_uri=store,
            )
        )
        files = [p for p in local.rglob("*") if p.is_file()]
        assert {p.name for p in files} >= {"MLmodel", "requirements.txt", *model_files.FILES, model_files.PROFILE_FILE}
        for path in files:
            assert path.suffix not in {".pkl", ".pickle"}, path
            assert path.read_bytes()[:1] != b"\x80", f"{path} is a pickle"
        requirements = (local / "requirements.txt").read_text().split()
        assert all("==" in line for line in requirements) and any(r.startswith("xgboost==") for r in requirements)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    assert experiment is not None and experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_a_planted_pickle_is_refused_by_the_facade_and_never_runs(
    sqlite_tracking_uri: str, synthetic_csv: Path, tmp_path: Path
) -> None:
    train_fast_pair(synthetic_csv, sqlite_tracking_uri)
    client = MlflowClient(sqlite_tracking_uri, registry_uri=sqlite_tracking_uri)
    pair = registry.production_pair(client)
    assert pair is not None
    source = client.get_model_version_download_uri(pair.sla.name, pair.sla.version)
    booster = Path(source.removeprefix("file://")) / "artifacts" / model_files.ARTIFACT / model_files.BOOSTER_FILE
    assert booster.is_file()
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return exec, (f"open({str(marker)!r}, 'w').write('ran')",)

    booster.write_bytes(pickle.dumps(Payload()))  # what anyone with write access to the artifact store could do
    (tmp_path / "cache").mkdir()
    with pytest.raises(ModelLoadFailed, match="refused"):
        RegistryLoader(tracking_uri=sqlite_tracking_uri, cache_dir=tmp_path / "cache")(pair)
    assert not marker.exists()
    assert list((tmp_path / "cache").iterdir()) == []  # a refused download is not left behind either


def _fresh_virtualenv(directory: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True, timeout=120)
    return directory / "bin" / "python"


def test_the_pyfunc_predicts_in_a_fresh_virtualenv_with_only_its_requirements(store: str, tmp_path: Path) -> None:
    mlflow.set_tracking_uri(store)
    requirements_file = Path(mlflow.pyfunc.get_model_dependencies(PRODUCTION_SLA))
    python = _fresh_virtualenv(tmp_path / "venv")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(requirements_file)],
        check=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    script = (
        "import importlib.util, json, sys\n"
        "assert importlib.util.find_spec('osml') is None, 'osml must come from the model, not this environment'\n"
        "import mlflow, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model({PRODUCTION_SLA!r})\n"
        "print(json.dumps(float(model.predict(pd.DataFrame([json.loads(sys.argv[1])]))[0])))\n"
    )
    work = tmp_path / "elsewhere"  # not the repo: nothing of osml on the path but the model's own code
    work.mkdir()
    result = subprocess.run(
        [str(python), "-c", script, json.dumps(SEED_FEATURES)],
        capture_output=True,
        text=True,
        cwd=work,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MLFLOW_TRACKING_URI": store},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    risk = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0.0 <= risk <= 1.0
    assert risk == _facade_risk(store, tmp_path)


def test_mlflow_models_serve_with_the_virtualenv_manager_answers_invocations(store: str, tmp_path: Path) -> None:
    pyenv = shutil.which("pyenv")
    assert pyenv is not None, "MLflow's virtualenv env manager needs pyenv on PATH"
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    log = tmp_path / "serve.log"
    serve = ["models", "serve", "-m", PRODUCTION_SLA, "--env-manager", "virtualenv", "--workers", "1"]
    proc = start_process(
        [str(mlflow_bin), *serve, "--host", "127.0.0.1", "--port", str(port)],
        log=log,
        env={"MLFLOW_TRACKING_URI": store, "MLFLOW_ENV_ROOT": str(tmp_path / "envs")},
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def pinged() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"mlflow models serve exited with {proc.returncode}: {log.read_text()[-4000:]}")
            try:
                return httpx.get(f"{url}/ping", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(pinged, timeout=INSTALL_TIMEOUT_S, interval=1.0, what=f"mlflow models serve ({log})")
        response = httpx.post(f"{url}/invocations", json={"dataframe_records": [SEED_FEATURES]}, timeout=30)
        assert response.status_code == 200, response.text
        [risk] = response.json()["predictions"]
        assert risk == _facade_risk(store, tmp_path)
    finally:
        stop_process(proc)
