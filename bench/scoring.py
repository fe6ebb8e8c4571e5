"""Batch scoring cost: `osml score --all` on synthetic orders (Parquet parts) in one process and on a 2-worker
LocalCluster; wall time, rows/s and peak RSS (the client, each worker, and their sum at its highest).

    python -m bench.scoring [--orders 100000 1000000] [--workers 0 2]

Prints a markdown table (docs/scale.md quotes one run). Every run writes a Parquet folder in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from osml.processes import VENV_BIN
from training.data.synthetic import generate, write_csv
from training.pipeline import train

ROWS_PER_PART = 125_000
TRAIN_ORDERS = 5_000


@dataclass(frozen=True)
class Measured:
    orders: int
    workers: int
    wall_s: float
    written: int
    client_peak_mb: float
    worker_peak_mb: float  # the largest single worker process (0 in one process)
    total_peak_mb: float  # the process tree's RSS summed, at its highest


def write_parts(orders: int, root: Path) -> None:
    data = generate(orders=orders, seed=2026)
    (root / "orders").mkdir(parents=True)
    for i, rows in enumerate(np.array_split(np.arange(orders), max(1, orders // ROWS_PER_PART))):
        data.orders.iloc[rows].to_parquet(root / "orders" / f"part.{i}.parquet", index=False)


@dataclass(frozen=True)
class Sampled:
    wall_s: float
    stdout: str
    client_peak_mb: float
    worker_peak_mb: float  # the largest child process (0 without children)
    total_peak_mb: float  # the process tree's RSS summed, at its highest
    returncode: int


def sampled(command: list[str], env: dict[str, str]) -> Sampled:
    """Run `command`, sampling the RSS of its process tree every 0.2 s."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    root = psutil.Process(proc.pid)
    peaks: dict[int, float] = {}
    total_peak = 0.0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            sizes = {p.pid: p.memory_info().rss / 2**20 for p in tree}
        except psutil.Error:
            continue
        for pid, mb in sizes.items():
            peaks[pid] = max(peaks.get(pid, 0.0), mb)
        total_peak = max(total_peak, sum(sizes.values()))
        time.sleep(0.2)
    wall = time.perf_counter() - started
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    others = [mb for pid, mb in peaks.items() if pid != proc.pid]
    return Sampled(wall, stdout, peaks.get(proc.pid, 0.0), max(others, default=0.0), total_peak, int(proc.returncode))


def measure(dataset: Path, out: Path, *, workers: int, tracking_uri: str, orders: int) -> Measured:
    command = [str(VENV_BIN / "osml"), "score", "--dataset", str(dataset), "--all", "--out", str(out)]
    command += ["--as-of", "2100-01-01T00:00:00Z", "--workers", str(workers)]
    run = sampled(command, {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri})
    if run.returncode != 0:
        raise RuntimeError(f"osml score failed ({run.returncode}): {run.stdout}")
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    return Measured(
        orders=orders,
        workers=workers,
        wall_s=run.wall_s,
        written=int(summary["written"]),
        client_peak_mb=run.client_peak_mb,
        worker_peak_mb=run.worker_peak_mb,
        total_peak_mb=run.total_peak_mb,
    )


def table(results: list[Measured]) -> str:
    lines = [
        "| orders | engine | wall s | rows/s | peak RSS client MB | peak RSS largest worker MB | peak RSS all MB |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        engine = "one process" if r.workers == 0 else f"LocalCluster, {r.workers} workers"
        lines.append(
            f"| {r.orders:,} | {engine} | {r.wall_s:.1f} | {r.written / r.wall_s:,.0f} | {r.client_peak_mb:,.0f} |"
            f" {r.worker_peak_mb:,.0f} | {r.total_peak_mb:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scoring")
    parser.add_argument("--orders", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args(argv)
    results: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="osml-bench-scoring-") as tmp:
        work = Path(tmp)
        write_csv(generate(orders=TRAIN_ORDERS, seed=1), work / "train")
        uri = f"sqlite:///{work / 'mlflow.db'}"
        train(dataset_ref=str(work / "train"), tracking_uri=uri, activate=True, candidates=("xgboost",))
        for orders in args.orders:
            dataset = work / f"orders-{orders}"
            write_parts(orders, dataset)
            for workers in args.workers:
                result = measure(
                    dataset, work / f"out-{orders}-{workers}.parquet", workers=workers, tracking_uri=uri, orders=orders
                )
                print(result, flush=True)
                results.append(result)
    print(f"load average at the end: {os.getloadavg()}")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
