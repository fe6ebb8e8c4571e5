"""The tracking server's identities, provisioned by its admin: `server.sh users` (idempotent, run after each start).

- the **writer** (the trainer: logs runs, registers model versions, moves the `production` alias) owns, with
  MANAGE, the training experiment and the registered models named below. The admin creates them here, so no
  other identity can claim those names first;
- the **reader** (the facade: polls the alias and downloads the artifacts it serves) gets nothing beyond the
  server's `default_permission = READ`, so it can never plant a model;
- anyone else gets a login prompt (HTTP 401): the basic-auth app refuses anonymous requests.

Environment (a user whose password is unset is skipped):
  MLFLOW_TRACKING_URI                                  the server
  MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD  the admin (MLFLOW_AUTH_ADMIN_* of server.sh)
  MLFLOW_WRITER_USERNAME / MLFLOW_WRITER_PASSWORD      default user osml-trainer
  MLFLOW_READER_USERNAME / MLFLOW_READER_PASSWORD      default user osml-facade
  MLFLOW_WRITER_EXPERIMENTS / MLFLOW_WRITER_MODELS     comma-separated names the writer owns
"""

from __future__ import annotations

import os
import sys

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client
from mlflow.server.auth.client import AuthServiceClient


def _names(variable: str) -> list[str]:
    return [name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()]


def _ensure_user(auth: AuthServiceClient, username: str, password: str) -> None:
    try:
        auth.get_user(username)
    except MlflowException:
        auth.create_user(username, password)
        print(f"created user {username}")
        return
    auth.update_user_password(username, password)
    print(f"user {username} exists; password set")


def _grant(auth: AuthServiceClient, username: str, resource_type: str, resource_id: str) -> None:
    auth.grant_user_permission(username, resource_type, resource_id, "MANAGE")


def main() -> int:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    auth: AuthServiceClient = get_app_client("basic-auth", tracking_uri=uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    writer = os.environ.get("MLFLOW_WRITER_USERNAME", "osml-trainer")
    for user, password in (
        (writer, os.environ.get("MLFLOW_WRITER_PASSWORD")),
        (os.environ.get("MLFLOW_READER_USERNAME", "osml-facade"), os.environ.get("MLFLOW_READER_PASSWORD")),
    ):
        if password:
            _ensure_user(auth, user, password)
    for name in _names("MLFLOW_WRITER_EXPERIMENTS"):
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
        _grant(auth, writer, "experiment", experiment_id)
        print(f"experiment {name}: {writer} may manage it")
    for name in _names("MLFLOW_WRITER_MODELS"):
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        _grant(auth, writer, "registered_model", name)
        print(f"registered model {name}: {writer} may manage it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
