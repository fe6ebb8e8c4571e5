"""The `osml` command: one entry point, each area registers its own subcommands.

Areas are imported lazily by name so that `osml worker` does not pay for importing training code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# subcommand -> (module exposing `add_arguments(parser)` and `run(args) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("training.cli_generate", "write synthetic orders (CSV or Postgres tables)"),
    "train": ("training.cli_train", "train SLA + ETA models, log to MLflow, register versions"),
    "features": ("training.cli_features", "features as of creation, status changes or an instant, as CSV"),
    "eval-uci": ("training.cli_eval", "real-data quality report on the UCI incident event log"),
    "score": ("scoring.cli_score", "batch-score open (or all) orders with the production pair on Dask"),
    "serve": ("serving.cli_serve", "run the FastAPI facade"),
    "activate": ("serving.cli_activate", "move the alias production to a pair through the promotion gate"),
    "trainer": ("trainer.cli", "claim queued training jobs (POST /train) and run them"),
    "up": ("serving.cli_up", "embedded default: train if the registry is empty, then serve + a trainer + MLflow UI"),
    "worker": ("worker.cli_worker", "consume ML_PREDICTION_REQUESTED and store predictions"),
    "relay": ("worker.cli_relay", "publish outbox rows as ML_PREDICTION_READY"),
    "migrate": ("worker.cli_migrate", "apply the database migrations (orders_prediction, outbox)"),
    "simulate": ("worker.cli_simulate", "backend simulator: publish REQUESTED events, measure READY"),
    "evaluate-live": ("worker.cli_evaluate_live", "live accuracy per model version from realised outcomes"),
}


def _build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, Callable[[argparse.Namespace], int]]:
    parser = argparse.ArgumentParser(prog="osml", description="osml: SLA-risk and ETA models for service orders")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    runner: Callable[[argparse.Namespace], int] = lambda _args: 2  # noqa: E731
    for name, (module_name, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sp)
            runner = module.run
    return parser, runner


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser, runner = _build_parser(args_list)
    args = parser.parse_args(args_list)
    return runner(args)


if __name__ == "__main__":
    raise SystemExit(main())
