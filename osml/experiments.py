"""MLflow experiments osml writes to (training, live figures, promotion gate), created on first use."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from osml.conventions import EXPERIMENT_NAME, sqlite_artifact_root

# The MLflow UI opens an experiment in the view its kind names; untagged, 3.x infers the GenAI overview.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def ensure_experiment(client: MlflowClient, tracking_uri: str, name: str = EXPERIMENT_NAME) -> str:
    """The experiment id of `name` (`osml-training` by default), created when missing (with a local artifact root
    for SQLite), and tagged as model training so the UI opens it on its runs and models."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        if existing.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # created before the tag was set
            client.set_experiment_tag(existing.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return str(existing.experiment_id)
    root = sqlite_artifact_root(tracking_uri)
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    try:
        return str(
            client.create_experiment(
                name,
                artifact_location=root.as_uri() if root else None,
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        )
    except MlflowException as exc:  # another job created it meanwhile
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return ensure_experiment(client, tracking_uri, name)
