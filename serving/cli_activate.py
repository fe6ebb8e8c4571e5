"""`osml activate MODEL_VERSION [--force]`: move the alias `production` to a pair through the promotion gate.

The path of POST /models/activate (`ModelStore.promote`), run in this process against the registry of
MLFLOW_TRACKING_URI with this identity (the writer's: docs/security.md): the production pair and the candidate
are loaded and compared (OSML_GATE_AUC_MARGIN, OSML_GATE_MAE_MARGIN), and the alias moves when the candidate
passes, or with --force. The facades following the alias serve it at their next poll.

stdout is one JSON object: {"activeModelVersion": ...}, or the refusal's {"code", "message", "gate"} with both
pairs' figures. Exit status 0 activated, 1 refused by the gate, 2 any other failure (message on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from osml import conventions, registry
from osml.logs import configure_logging
from serving.errors import GateRefused, ModelLoadFailed, ServingError
from serving.gate import Gate
from serving.model_store import ModelStore, RegistryLoader
from serving.settings import GateSettings

REFUSED = 1
FAILED = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_version", metavar="MODEL_VERSION", help="the pair to activate, e.g. 2026-05-01_001")
    parser.add_argument("--force", action="store_true", help="activate even when the gate refuses (recorded)")


def activate(model_version: str, *, tracking_uri: str, settings: GateSettings, force: bool = False) -> str:
    """The activated modelVersion; GateRefused, registry.UnknownModelVersion or a load error otherwise."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    pair = registry.find_pair(client, model_version)
    with tempfile.TemporaryDirectory(prefix="osml-activate-") as cache:
        loader = RegistryLoader(tracking_uri=tracking_uri, cache_dir=Path(cache))
        gate = Gate(
            client=lambda: client,
            tracking_uri=tracking_uri,
            read_slice=loader.evaluation,
            auc_margin=settings.auc_margin,
            mae_margin=settings.mae_margin,
        )
        production = registry.production_pair(client)
        store = ModelStore(read_production=lambda: production, load=loader, poll_seconds=1.0, gate=gate)
        store.refresh()
        if production is not None and store.current is None:
            raise ModelLoadFailed(f"the production pair {production.model_version} could not be loaded to compare with")
        active = store.promote(pair, commit=lambda: registry.activate(client, model_version), force=force, via="cli")
    return active.model_version


def run(args: argparse.Namespace) -> int:
    configure_logging()
    try:
        version = activate(
            args.model_version, tracking_uri=conventions.tracking_uri(), settings=GateSettings(), force=args.force
        )
    except GateRefused as exc:
        print(json.dumps({"code": exc.code, "message": exc.message, **exc.body_fields()}, indent=1))
        return REFUSED
    except registry.UnknownModelVersion:
        print(f"osml activate: no model version {args.model_version} in the registry", file=sys.stderr)
        return FAILED
    except ServingError as exc:
        print(f"osml activate: {exc.message}", file=sys.stderr)
        return FAILED
    except MlflowException as exc:
        print(f"osml activate: the registry refused or failed: {exc}", file=sys.stderr)
        return FAILED
    print(json.dumps({"activeModelVersion": version}))
    return 0
