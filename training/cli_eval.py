"""`osml eval-uci --path ZIP_OR_CSV`: the model card's real-data numbers, against the naive baselines.

Trains exactly as `osml train` does (all candidates, test = newest 20% of incidents by opening time), into a
throwaway embedded tracking store unless MLFLOW_TRACKING_URI is set. Exit status 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from training.data.errors import DataError

# the quality bars on the UCI log (docs/model-card.md)
MIN_AUC = 0.78
MIN_F1 = 0.50
MAE_GAIN = 0.05
MEDIAN_AE_GAIN = 0.30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--path", required=True, help="incident_event_log.zip (or the CSV inside it)")
    parser.add_argument("--test-size", type=float, default=0.2)
    parser.add_argument("--random-state", type=int, default=42)


def _rows(report: dict[str, float]) -> list[tuple[str, str, str, str, bool | None]]:
    def gain(metric: str) -> float:
        return 1.0 - report[metric] / report[f"baseline_{metric}"]

    mae_gain, median_gain = gain("mae_minutes"), gain("median_ae_minutes")
    return [
        ("SLA AUC", f"{report['auc']:.4f}", f"{report['baseline_auc']:.4f}", f">= {MIN_AUC}", report["auc"] >= MIN_AUC),
        (
            f"SLA F1 (threshold {report['threshold']:.3f} from validation)",
            f"{report['f1']:.4f}",
            f"{report['baseline_f1']:.4f}",
            f">= {MIN_F1}",
            report["f1"] >= MIN_F1,
        ),
        ("SLA precision", f"{report['precision']:.4f}", f"{report['baseline_precision']:.4f}", "", None),
        ("SLA recall", f"{report['recall']:.4f}", f"{report['baseline_recall']:.4f}", "", None),
        ("SLA Brier score", f"{report['brier']:.4f}", f"{report['baseline_brier']:.4f}", "lower is better", None),
        (
            "SLA expected calibration error (10 bins)",
            f"{report['calibration_error']:.4f}",
            f"{report['baseline_calibration_error']:.4f}",
            "lower is better",
            None,
        ),
        (
            "ETA MAE (minutes)",
            f"{report['mae_minutes']:.0f} ({mae_gain:.1%} below)",
            f"{report['baseline_mae_minutes']:.0f}",
            f">= {MAE_GAIN:.0%} below",
            mae_gain >= MAE_GAIN,
        ),
        (
            "ETA median absolute error (minutes)",
            f"{report['median_ae_minutes']:.0f} ({median_gain:.1%} below)",
            f"{report['baseline_median_ae_minutes']:.0f}",
            f">= {MEDIAN_AE_GAIN:.0%} below",
            median_gain >= MEDIAN_AE_GAIN,
        ),
        ("ETA RMSE (minutes)", f"{report['rmse_minutes']:.0f}", f"{report['baseline_rmse_minutes']:.0f}", "", None),
        ("clusters silhouette", f"{report['silhouette']:.4f}", "", "", None),
    ]


def run(args: argparse.Namespace) -> int:
    from training.pipeline import train

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    path = Path(args.path)
    with tempfile.TemporaryDirectory(prefix="osml-eval-") as scratch:
        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(scratch) / 'mlflow.db'}"
        started = time.perf_counter()
        try:
            result = train(
                dataset_ref=str(path),
                test_size=args.test_size,
                random_state=args.random_state,
                tracking_uri=tracking_uri,
                progress=lambda fraction, message: print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True),
            )
        except (DataError, ValueError) as exc:
            print(f"osml eval-uci: {exc}", file=sys.stderr)
            return 2
        elapsed = time.perf_counter() - started
    rows = _rows(result.report)
    print(f"UCI incident event log ({path.name}); test = newest {args.test_size:.0%} of incidents by opening time")
    print(f"models chosen on validation: SLA {result.chosen['sla']}, ETA {result.chosen['eta']}")
    print(f"training + evaluation + registration: {elapsed:.0f} s on {os.cpu_count()} cores")
    print()
    print("| metric (test slice) | model | baseline | bar | met |")
    print("|---|---|---|---|---|")
    for name, model, baseline, bar, met in rows:
        print(f"| {name} | {model} | {baseline} | {bar} | {'' if met is None else ('yes' if met else 'NO')} |")
    return 0 if all(met is not False for *_, met in rows) else 1
