"""docker-compose.yml against the code it runs: commands, environment names, ports, databases, broker topology.

No Docker engine here, so the file is checked structurally: every osml service runs a subcommand that exists, sets
only variables its settings class reads (and those parse), and the URLs, ports and names agree across services.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import mlflow
import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from osml.cli import COMMANDS
from tests.support import REPO_ROOT

pytestmark = pytest.mark.unit

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
OSML_DOCKERFILE = "infra/Dockerfile"
DATA_DIRS = {"postgres": "/var/lib/postgresql/data", "minio": "/data", "rabbitmq": "/var/lib/rabbitmq"}
# settings read beside a subcommand's own class: the datasetRef allow-lists, wherever datasets are named or read
# and, for the trainer, where a Dask training job runs (OSML_DASK_*)
SHARED_SETTINGS = {
    "serve": ("osml.dataset_access:DatasetAccess",),
    "trainer": ("osml.dataset_access:DatasetAccess", "training.cluster:DaskSettings"),
}
# the settings class each osml subcommand reads
SETTINGS_BY_COMMAND = {
    "serve": "serving.settings:ServingSettings",
    "trainer": "trainer.settings:TrainerSettings",
    "worker": "worker.settings:WorkerSettings",
    "relay": "worker.settings:WorkerSettings",
    "migrate": "worker.settings:WorkerSettings",
    "simulate": "worker.settings:WorkerSettings",
    "evaluate-live": "worker.live.settings:LiveSettings",
}
# variables read by libraries rather than by our settings classes
LIBRARY_ENV = {
    "MLFLOW_TRACKING_URI",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|API_KEY|ACCESS_KEY|_USER$")
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def _load_env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


COMPOSE_TEXT = COMPOSE_FILE.read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ENV_VALUES = _load_env_example()


def interpolate(value: str, env: dict[str, str] = ENV_VALUES) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}; `$$` is a literal `$`."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        if name in env and (env[name] or not (operator or "").startswith(":")):
            return env[name]
        if operator in (":?", "?"):
            raise AssertionError(f"${{{name}}} is required but has no value in .env.example")
        return argument if operator in (":-", "-") else ""

    return VARIABLE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: write environment as a mapping"
    return {key: str(value) for key, value in env.items()}


def resolved_environment(service: str) -> dict[str, str]:
    return {key: interpolate(value) for key, value in environment(service).items()}


def built_from_osml_image(service: dict[str, Any]) -> bool:
    build = service.get("build") or {}
    return isinstance(build, dict) and build.get("dockerfile") == OSML_DOCKERFILE


def osml_services() -> dict[str, str]:
    """service -> osml subcommand, for every service that runs the osml image's entrypoint."""
    found = {}
    for name, service in SERVICES.items():
        if built_from_osml_image(service) and "entrypoint" not in service:
            command = service.get("command")
            assert isinstance(command, list) and command, f"{name}: command must be a list like ['serve']"
            found[name] = command[0]
    return found


def _load_settings(path: str) -> type[BaseSettings]:
    module_name, _, class_name = path.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert issubclass(cls, BaseSettings)
    return cls


def settings_class(command: str) -> type[BaseSettings]:
    return _load_settings(SETTINGS_BY_COMMAND[command])


def shared_settings(command: str) -> list[type[BaseSettings]]:
    return [_load_settings(path) for path in SHARED_SETTINGS.get(command, ())]


def env_names(cls: type[BaseSettings]) -> set[str]:
    """The environment variables a pydantic-settings class reads."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice.upper() for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def healthcheck_port(service: str) -> int:
    test = " ".join(SERVICES[service]["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", test)
    assert match, f"{service}: healthcheck does not probe an HTTP port: {test}"
    return int(match.group(1))


def container_ports(service: str) -> set[int]:
    return {int(interpolate(str(p)).rsplit(":", 1)[-1]) for p in SERVICES[service].get("ports", [])}


def test_every_variable_is_in_env_example_and_every_example_is_used() -> None:
    used = {m.group(1) for m in VARIABLE.finditer(COMPOSE_TEXT)}
    assert used - ENV_VALUES.keys() == set(), "add these to .env.example"
    assert ENV_VALUES.keys() - used == set(), ".env.example lists variables the compose file no longer uses"


def test_no_secret_is_written_in_the_file() -> None:
    for name in SERVICES:
        for key, value in environment(name).items():
            if SECRET_NAME.search(key):
                assert "${" in value, f"{name}.{key} must come from .env, not be written in the file"
            credentials = urlsplit(value).password if "://" in value else None
            if credentials:
                assert credentials.startswith("${"), f"{name}.{key} has a literal password"


def test_osml_services_run_subcommands_that_exist() -> None:
    services = osml_services()
    assert {"serve", "trainer", "worker", "relay"} <= set(services.values())
    for name, command in services.items():
        assert command in COMMANDS, f"{name}: `osml {command}` is not a subcommand (osml/cli.py COMMANDS)"
        module = COMMANDS[command][0]
        assert importlib.util.find_spec(module) is not None, f"{name}: {module} (osml {command}) does not exist"


@pytest.mark.parametrize("service", sorted(osml_services()))
def test_osml_service_environment_is_what_its_settings_read(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = settings_class(osml_services()[service])
    env = resolved_environment(service)
    shared = shared_settings(osml_services()[service])
    read = env_names(cls).union(*(env_names(other) for other in shared))
    unknown = {key for key in env if key not in LIBRARY_ENV} - read
    assert unknown == set(), f"{service} sets variables {cls.__name__} does not read"
    for key in list(os.environ):
        if key.startswith("OSML_") or key == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(key)
    for key, value in env.items():
        # the example's change-me keys are refused by design (test below); an operator's real ones parse
        monkeypatch.setenv(key, value.replace("change-me", "0123456789") if key.endswith("_API_KEY") else value)
    cls()  # parses (types, ranges, the facade's both-keys rule) exactly as the container would
    for other in shared:
        other()


def test_the_facade_refuses_to_start_with_the_example_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    cls = settings_class("serve")
    for key in list(os.environ):
        if key.startswith("OSML_"):
            monkeypatch.delenv(key)
    for key, value in resolved_environment("facade").items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match="change-me placeholder"):
        cls()


def test_facade_port_agrees_everywhere() -> None:
    port = int(resolved_environment("facade")["OSML_PORT"])
    assert resolved_environment("facade")["OSML_HOST"] == "0.0.0.0"
    assert port in container_ports("facade")
    assert healthcheck_port("facade") == port
    facade_url = urlsplit(resolved_environment("worker")["OSML_FACADE_URL"])
    assert (facade_url.hostname, facade_url.port) == ("facade", port)
    assert (
        resolved_environment("worker")["OSML_PREDICT_API_KEY"] == resolved_environment("facade")["OSML_PREDICT_API_KEY"]
    )


def test_tracking_server_port_and_clients_agree() -> None:
    env = resolved_environment("mlflow")
    port = int(env["MLFLOW_PORT"])
    assert port in container_ports("mlflow")
    assert healthcheck_port("mlflow") == port
    tracking = urlsplit(resolved_environment("facade")["MLFLOW_TRACKING_URI"])
    assert (tracking.scheme, tracking.hostname, tracking.port) == ("http", "mlflow", port)


def test_tracking_server_uses_postgres_and_proxied_s3_artifacts() -> None:
    env = resolved_environment("mlflow")
    backend = urlsplit(env["MLFLOW_BACKEND_STORE_URI"])
    assert backend.scheme == "postgresql+psycopg" and backend.hostname == "postgres"
    assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith(f"s3://{ENV_VALUES['S3_BUCKET']}/")
    assert urlsplit(env["MLFLOW_S3_ENDPOINT_URL"]).hostname == "minio"
    build = SERVICES["mlflow"]["build"]
    assert Path(REPO_ROOT / build["context"]).resolve() == REPO_ROOT / "mlflow"
    script = (REPO_ROOT / "mlflow" / "server.sh").read_text()
    for flag in (
        "--backend-store-uri",
        "--serve-artifacts",
        "--artifacts-destination",
        "--host",
        "--port",
        "--workers",
    ):
        assert flag in script
    dockerfile = (REPO_ROOT / "mlflow" / "Dockerfile").read_text()
    assert "server.sh" in dockerfile and SERVICES["mlflow"]["command"] == ["serve"]


def test_only_the_tracking_server_holds_artifact_store_credentials() -> None:
    root_secret = ENV_VALUES["MINIO_ROOT_PASSWORD"]
    assert resolved_environment("mlflow")["AWS_SECRET_ACCESS_KEY"] == root_secret
    for name in osml_services():
        env = resolved_environment(name)
        assert not any(root_secret in value for value in env.values()), f"{name} must not hold the store's root key"
        assert "MLFLOW_S3_ENDPOINT_URL" not in env, f"{name} must reach artifacts through the tracking server"


def test_tracking_server_image_matches_the_client_version() -> None:
    dockerfile = (REPO_ROOT / "mlflow" / "Dockerfile").read_text()
    match = re.search(r"^ARG MLFLOW_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert match, "mlflow/Dockerfile must pin MLFLOW_VERSION"
    server_version = match.group(1)
    assert server_version.split(".")[:2] == mlflow.__version__.split(".")[:2]
    assert SERVICES["mlflow"]["image"].endswith(f":{server_version}")


def test_osml_image_carries_every_package() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    dockerfile = (REPO_ROOT / OSML_DOCKERFILE).read_text()
    copied = set(re.findall(r"^COPY (\w+) ", dockerfile, re.MULTILINE))
    assert packages <= copied, f"{OSML_DOCKERFILE} does not copy {packages - copied}"
    assert 'ENTRYPOINT ["osml"]' in dockerfile


def test_dependencies_wait_for_health_or_completion() -> None:
    for name, service in SERVICES.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, spec in depends.items():
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{name} waits for {target}, which has no healthcheck"
            else:
                assert condition == "service_completed_successfully", f"{name} -> {target}: {condition}"
                assert SERVICES[target].get("restart") == "no", f"{target} is a one-shot job: restart: 'no'"


def test_long_running_services_restart_and_report_health() -> None:
    for name, service in SERVICES.items():
        if service.get("restart") != "no":
            assert service.get("restart") == "unless-stopped", f"{name} should restart"
            assert "healthcheck" in service, f"{name} has no healthcheck"


def test_trainers_scale_and_alone_read_datasets() -> None:
    trainer = SERVICES["trainer"]
    assert "ports" not in trainer and "container_name" not in trainer, "replicas of the trainer would collide"
    env = resolved_environment("trainer")
    assert env["AWS_ACCESS_KEY_ID"] == ENV_VALUES["OSML_DATASETS_ACCESS_KEY"]
    trainer_db, facade_db = (urlsplit(e["OSML_DATABASE_URL"]) for e in (env, resolved_environment("facade")))
    assert (trainer_db.hostname, trainer_db.path) == (facade_db.hostname, facade_db.path), "one job table"
    assert trainer_db.username != facade_db.username, "each its own PostgreSQL role"
    assert env["MLFLOW_TRACKING_URI"] == resolved_environment("facade")["MLFLOW_TRACKING_URI"]
    assert not any(key.endswith("_API_KEY") for key in env), "the trainer answers no request"
    assert not any(key.startswith("AWS_") for key in resolved_environment("facade")), "the facade reads no dataset"
    port = urlsplit(env["OSML_DATABASE_URL"]).port or 5432
    assert f"':{port:04X}'" in " ".join(trainer["healthcheck"]["test"]), "healthcheck must watch the job database"


def test_worker_and_relay_health_watches_the_broker_port_they_use() -> None:
    for service in ("worker", "relay"):
        port = urlsplit(resolved_environment(service)["OSML_BROKER_URL"]).port or 5672
        probe = " ".join(SERVICES[service]["healthcheck"]["test"])
        assert f"':{port:04X}'" in probe, f"{service}: healthcheck does not watch the broker port {port}"


def test_state_lives_on_named_volumes() -> None:
    declared = set(COMPOSE["volumes"])
    for service, path in DATA_DIRS.items():
        on_named = {
            target
            for source, target in (str(v).split(":")[:2] for v in SERVICES[service]["volumes"])
            if source in declared
        }
        assert path in on_named, f"{service} keeps {path} on no named volume"


def _init_variables() -> dict[str, str]:
    """The psql -v NAME=VALUE pairs infra/postgres/init.sh hands roles.sql."""
    script = (REPO_ROOT / "infra/postgres/init.sh").read_text()
    return dict(re.findall(r"-v (\w+)=([\w$\"]+)", script))


def _database_logins() -> dict[str, tuple[str, str]]:
    """service -> (role, database) of every PostgreSQL URL in the file."""
    found = {}
    for service in SERVICES:
        for value in resolved_environment(service).values():
            if value.startswith("postgresql") and "/mlflow_auth" not in value:
                parts = urlsplit(value)
                assert parts.hostname == "postgres"
                found[service] = (parts.username or "", parts.path.lstrip("/"))
    return found


def test_every_database_url_names_a_role_and_database_init_sh_creates() -> None:
    variables = _init_variables()
    roles = {value for name, value in variables.items() if name.endswith("_role")}
    databases = {value for name, value in variables.items() if name.endswith("_db")}
    roles_sql = (REPO_ROOT / "infra/postgres/roles.sql").read_text()
    for name in (*(n for n in variables if n.endswith(("_role", "_db"))),):
        assert f':"{name}"' in roles_sql, f"roles.sql does not use {name}"
    logins = _database_logins()
    assert logins
    for service, (role, database) in logins.items():
        assert role in roles, f"{service} logs in as {role}, which init.sh does not create"
        assert database in databases, f"{service}: init.sh does not create database {database}"


def test_each_service_logs_in_as_its_own_role_never_the_superuser() -> None:
    logins = _database_logins()
    assert {"mlflow", "migrate", "facade", "worker", "relay"} <= logins.keys()
    roles = [role for role, _ in logins.values()]
    assert len(set(roles)) == len(roles), f"services share a role: {logins}"
    assert ENV_VALUES["POSTGRES_USER"] not in roles
    assert "POSTGRES_PASSWORD" not in " ".join(
        value for service in SERVICES if service != "postgres" for value in environment(service).values()
    )
    grants = SERVICES["db-grants"]
    assert grants["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    for service in ("worker", "relay"):
        assert "db-grants" in SERVICES[service]["depends_on"], f"{service} starts before its tables are granted"


def test_the_tracking_server_asks_for_a_login_and_each_client_has_its_identity() -> None:
    from osml.conventions import EXPERIMENT_NAME, MODEL_NAMES

    script = (REPO_ROOT / "mlflow" / "server.sh").read_text()
    assert "--app-name basic-auth" in script
    server = resolved_environment("mlflow")
    users = resolved_environment("mlflow-users")
    facade = resolved_environment("facade")
    assert SERVICES["mlflow-users"]["command"] == ["users"]
    assert users["MLFLOW_TRACKING_PASSWORD"] == server["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert (facade["MLFLOW_TRACKING_USERNAME"], facade["MLFLOW_TRACKING_PASSWORD"]) == (
        users["MLFLOW_READER_USERNAME"],
        users["MLFLOW_READER_PASSWORD"],
    )
    trainer = resolved_environment("trainer")
    assert not any(key.startswith("OSML_TRAINER_TRACKING") for key in facade), "the facade holds no writer login"
    assert (trainer["MLFLOW_TRACKING_USERNAME"], trainer["MLFLOW_TRACKING_PASSWORD"]) == (
        users["MLFLOW_WRITER_USERNAME"],
        users["MLFLOW_WRITER_PASSWORD"],
    )
    assert users["MLFLOW_READER_PASSWORD"] != users["MLFLOW_WRITER_PASSWORD"]
    assert users["MLFLOW_WRITER_EXPERIMENTS"].split(",") == [EXPERIMENT_NAME]
    assert users["MLFLOW_WRITER_MODELS"].split(",") == list(MODEL_NAMES)
    assert "mlflow-users" in SERVICES["facade"]["depends_on"]


def test_the_facade_names_what_a_dataset_ref_may_reach() -> None:
    facade = resolved_environment("facade")
    assert facade["OSML_DATASET_ROOTS"].startswith("/")
    assert facade["OSML_DATASET_BUCKETS"] == ENV_VALUES["S3_BUCKET"]
    assert "OSML_DATASET_HOSTS" in facade


def test_broker_urls_and_definitions_agree_with_the_worker() -> None:
    from worker import topology

    definitions = json.loads((REPO_ROOT / "infra/rabbitmq/definitions.json").read_text())
    vhosts = {v["name"] for v in definitions["vhosts"]}
    for service in ("worker", "relay"):
        url = urlsplit(resolved_environment(service)["OSML_BROKER_URL"])
        assert url.scheme == "amqp" and url.hostname == "rabbitmq" and url.path.lstrip("/") in vhosts
    assert [(x["name"], x["type"], x["durable"]) for x in definitions["exchanges"]] == [
        (topology.EXCHANGE, "topic", True)
    ]
    queues = {q["name"]: q for q in definitions["queues"]}
    assert set(queues) == {topology.REQUESTED_QUEUE, topology.DEAD_LETTER_QUEUE}
    assert all(q["durable"] for q in queues.values())
    assert queues[topology.REQUESTED_QUEUE]["arguments"]["x-dead-letter-routing-key"] == topology.DEAD_LETTER_QUEUE
    assert [(b["source"], b["destination"], b["routing_key"]) for b in definitions["bindings"]] == [
        (topology.EXCHANGE, topology.REQUESTED_QUEUE, topology.REQUESTED_KEY)
    ]


def test_rabbitmq_loads_the_definitions_its_entrypoint_renders() -> None:
    conf = (REPO_ROOT / "infra/rabbitmq/rabbitmq.conf").read_text()
    path = re.search(r"^definitions\.local\.path = (\S+)$", conf, re.MULTILINE)
    assert path, "rabbitmq.conf must load definitions at boot"
    entrypoint = (REPO_ROOT / "infra/rabbitmq/entrypoint.sh").read_text()
    assert f"dir={path.group(1)}" in entrypoint and "definitions.json" in entrypoint
    assert "access.sh" in entrypoint
    env = resolved_environment("rabbitmq")
    access = (REPO_ROOT / "infra/rabbitmq/access.sh").read_text()
    for component in ("worker", "relay"):
        url = urlsplit(resolved_environment(component)["OSML_BROKER_URL"])
        assert f'{component}="${{RABBITMQ_{component.upper()}_USER:-{url.username}}}"' in access
        assert url.password == env[f"RABBITMQ_{component.upper()}_PASSWORD"]
        assert url.username != env["RABBITMQ_USER"], f"{component} must not be the broker's administrator"


def test_no_guest_anywhere() -> None:
    for path in (COMPOSE_FILE, ENV_EXAMPLE):
        assert "guest" not in path.read_text().lower(), f"{path} mentions guest"
    env = {"PATH": os.environ["PATH"], **resolved_environment("rabbitmq")}
    rendered = subprocess.run(
        ["sh", str(REPO_ROOT / "infra/rabbitmq/access.sh")], env=env, capture_output=True, text=True, check=True
    ).stdout
    users = {user["name"] for user in json.loads(rendered)["users"]}
    assert "guest" not in users and len(users) == 4


def test_shell_scripts_parse() -> None:
    scripts = [
        "mlflow/server.sh",
        "infra/rabbitmq/entrypoint.sh",
        "infra/rabbitmq/access.sh",
        "infra/minio/init.sh",
        "infra/postgres/init.sh",
    ]
    for script in scripts:
        result = subprocess.run(["sh", "-n", str(REPO_ROOT / script)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_live_evaluator_serves_the_port_prometheus_scrapes() -> None:
    env = resolved_environment("live-evaluator")
    port = int(env["OSML_LIVE_METRICS_PORT"])
    assert env["OSML_LIVE_METRICS_HOST"] == "0.0.0.0"
    assert healthcheck_port("live-evaluator") == port
    assert f"live-evaluator:{port}" in scrape_targets()
    assert SERVICES["live-evaluator"]["command"] == ["evaluate-live", "--loop"]
    tracking = urlsplit(env["MLFLOW_TRACKING_URI"])
    assert (tracking.hostname, tracking.port) == ("mlflow", int(resolved_environment("mlflow")["MLFLOW_PORT"]))


def scrape_targets() -> set[str]:
    config = yaml.safe_load((REPO_ROOT / "infra/prometheus/prometheus.yml").read_text())
    return {t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}


def test_prometheus_scrapes_the_facade_worker_relay_and_live_evaluator() -> None:
    targets = scrape_targets()
    hosts = {t.partition(":")[0] for t in targets}
    assert hosts == {"facade", "worker", "relay", "live-evaluator"}
    assert hosts <= SERVICES.keys()
    assert f"facade:{resolved_environment('facade')['OSML_PORT']}" in targets
    mounts = [str(v) for v in SERVICES["prometheus"]["volumes"]]
    assert "./infra/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    assert "--config.file=/etc/prometheus/prometheus.yml" in SERVICES["prometheus"]["command"]
    config = yaml.safe_load((REPO_ROOT / "infra/prometheus/prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert f"./infra/prometheus/{Path(rule_file).name}:{rule_file}:ro" in mounts


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    mounts = {target: source for source, target, *_ in (str(v).split(":") for v in SERVICES["grafana"]["volumes"])}
    assert mounts["/etc/grafana/provisioning"] == "./infra/grafana/provisioning"
    provisioning = REPO_ROOT / "infra/grafana/provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    prometheus_port = container_ports("prometheus").pop()
    assert urlsplit(datasource["url"])[1:3] == (f"prometheus:{prometheus_port}", "")
    (provider,) = yaml.safe_load((provisioning / "dashboards/osml.yml").read_text())["providers"]
    assert mounts[provider["options"]["path"]] == "./infra/grafana/dashboards"
    dashboard = json.loads((REPO_ROOT / "infra/grafana/dashboards/osml.json").read_text())
    used = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert used == {datasource["uid"]}


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_dask_services_run_the_images_distributed_and_meet_where_clients_look() -> None:
    from training.cluster import DaskSettings

    scheduler, worker = SERVICES["dask-scheduler"], SERVICES["dask-worker"]
    for service in (scheduler, worker):
        # the osml image: tasks find the code and the exact libraries of the client that submitted them
        assert built_from_osml_image(service) and service["entrypoint"] == ["dask"]
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert any(re.fullmatch(r"distributed==[\d.]+", d) for d in pyproject["project"]["dependencies"])
    assert scheduler["command"][0] == "scheduler" and worker["command"][0] == "worker"
    port = int(_flag(scheduler["command"], "--port"))
    address = urlsplit(COMPOSE["x-dask-client"]["OSML_DASK_SCHEDULER"])
    assert (address.scheme, address.hostname, address.port) == ("tcp", "dask-scheduler", port)
    assert worker["command"][1] == COMPOSE["x-dask-client"]["OSML_DASK_SCHEDULER"]
    assert "OSML_DASK_SCHEDULER" in env_names(DaskSettings)
    assert DaskSettings(scheduler=COMPOSE["x-dask-client"]["OSML_DASK_SCHEDULER"]).scheduler
    for service, name in ((scheduler, "dask-scheduler"), (worker, "dask-worker")):
        dashboard = int(_flag([interpolate(str(c)) for c in service["command"]], "--dashboard-address").lstrip(":"))
        assert healthcheck_port(name) == dashboard, f"{name}: healthcheck does not probe its HTTP port"


def test_dask_workers_scale_out_and_hold_only_library_settings() -> None:
    worker = SERVICES["dask-worker"]
    # replicas: no fixed name, no published port, one process each (memory is per replica)
    assert "container_name" not in worker and "ports" not in worker
    command = [interpolate(str(c)) for c in worker["command"]]
    assert _flag(command, "--nworkers") == "1"
    assert _flag(command, "--memory-limit") == ENV_VALUES["DASK_WORKER_MEMORY"]
    env = resolved_environment("dask-worker")
    assert set(env) <= LIBRARY_ENV
    assert urlsplit(env["MLFLOW_TRACKING_URI"]).hostname == "mlflow"
    assert ENV_VALUES["MINIO_ROOT_PASSWORD"] not in env.values(), "dask workers read datasets with the read-only key"
