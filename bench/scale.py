"""Training and scoring cost as the data grows: `osml train` single-process and on Dask, `osml score` in batch.

    python -m bench.scale [--sizes 100k,1M,5M] [--engines single,dask] [--score-orders 1M] [--results FILE]
    python -m bench.scale --report FILE [FILE ...]   # the table and fit of earlier runs' results

For each size, synthetic orders with status histories (`osml generate`'s generator) are written twice: as one
CSV pair (what the single-process path reads whole) and as Parquet parts of `ROWS_PER_PART` orders (what the Dask
engine reads partitioned). Each `osml train --candidates xgboost --tune-seconds 0` runs in its own process tree,
its RSS sampled every 0.2 s (the client, the largest Dask worker, the sum); the Dask runs use a 2-worker
LocalCluster. Then `osml score --all` scores `--score-orders` orders with the pair the first run registered.
Every result is appended to `--results` as one JSON line as soon as it is measured (a long run can be read half
way), and the end prints a markdown table and a power-law fit per engine (wall = a * orders^b; memory linear in
orders) with the estimate at 50M orders. docs/benchmarks.md quotes one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.scoring import measure, sampled, write_parts
from osml.processes import VENV_BIN
from training.data.synthetic import generate, write_csv

ROWS_PER_PART = 125_000
MIN_PARTS = 4  # a 2-worker cluster gets work for both even on the smallest size
MEMORY_GB = 24
ESTIMATE_ORDERS = 50_000_000


@dataclass(frozen=True)
class Run:
    step: str  # "train" or "score"
    engine: str
    orders: int
    rows: int  # orders trained on (train) or predictions written (score): what rows/s counts
    wall_s: float
    client_peak_mb: float
    worker_peak_mb: float
    total_peak_mb: float
    ok: bool
    message: str


def orders_count(text: str) -> int:
    """`100k`, `1M`, `5M`, `250000`."""
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def write_dataset(orders: int, root: Path) -> tuple[Path, Path]:
    """The same orders as a CSV pair (single process) and as Parquet parts split by order (Dask)."""
    data = generate(orders=orders, seed=2026)
    whole = root / "csv"
    write_csv(data, whole)
    parts = root / "parts"
    (parts / "orders").mkdir(parents=True)
    (parts / "order_status_history").mkdir(parents=True)
    chunks = np.array_split(np.arange(orders), max(MIN_PARTS, orders // ROWS_PER_PART))
    history = data.history if data.history is not None else pd.DataFrame()
    by_order = history.groupby("order_id", sort=False).indices if len(history) else {}
    for i, rows in enumerate(chunks):
        chunk = data.orders.iloc[rows]
        chunk.to_parquet(parts / "orders" / f"part.{i}.parquet", index=False)
        taken = [by_order[o] for o in chunk["id"] if o in by_order]
        rows_of = np.concatenate(taken) if taken else np.zeros(0, dtype=np.int64)
        history.iloc[np.sort(rows_of)].to_parquet(parts / "order_status_history" / f"part.{i}.parquet", index=False)
    del data
    return whole, parts


def train_once(dataset: Path, *, engine: str, orders: int, env: dict[str, str], activate: bool) -> Run:
    command = [str(VENV_BIN / "osml"), "train", "--dataset", str(dataset), "--engine", engine]
    command += ["--candidates", "xgboost", "--tune-seconds", "0", "--activate", str(activate).lower()]
    run = sampled(command, env)
    last = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    ok = run.returncode == 0
    return Run("train", engine, orders, orders, run.wall_s, run.client_peak_mb, run.worker_peak_mb,
               run.total_peak_mb, ok, "" if ok else f"exit {run.returncode}: {last[-300:]}")  # fmt: skip


def table(runs: list[Run]) -> str:
    lines = [
        "| step | engine | orders | rows | wall s | rows/s | peak RSS client MB | largest worker MB | all MB | outcome |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        rate = f"{r.rows / r.wall_s:,.0f}" if r.ok and r.rows else "—"
        lines.append(
            f"| {r.step} | {r.engine} | {r.orders:,} | {r.rows:,} | {r.wall_s:,.0f} | {rate} | {r.client_peak_mb:,.0f}"
            f" | {r.worker_peak_mb:,.0f} | {r.total_peak_mb:,.0f} | {'ok' if r.ok else r.message} |"
        )
    return "\n".join(lines)


def growth(runs: list[Run]) -> list[str]:
    """Per engine with two sizes or more: wall = a * orders^b (least squares in log-log), memory = c + d * orders."""
    out = []
    for engine in sorted({r.engine for r in runs if r.step == "train"}):
        done = sorted((r for r in runs if r.step == "train" and r.engine == engine and r.ok), key=lambda r: r.orders)
        if len(done) < 2:
            continue
        n = np.array([r.orders for r in done], dtype=float)
        b, log_a = np.polyfit(np.log(n), np.log([r.wall_s for r in done]), 1)
        d, c = np.polyfit(n, [r.total_peak_mb for r in done], 1)
        wall = float(np.exp(log_a) * ESTIMATE_ORDERS**b)
        memory = c + d * ESTIMATE_ORDERS
        fits = (MEMORY_GB * 1024 - c) / d if d > 0 else float("inf")
        out.append(
            f"{engine}: wall ~ orders^{b:.2f}; {ESTIMATE_ORDERS:,} orders ~ {wall / 3600:.1f} h and {memory / 1024:.1f} GB"
            f" in all ({d * 1e6 / 1024:.2f} GB per million orders); {MEMORY_GB} GB holds about {fits / 1e6:.1f}M orders"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--sizes", default=os.environ.get("SIZES", "100k,1M,5M"))
    parser.add_argument("--engines", default=os.environ.get("ENGINES", "single,dask"))
    parser.add_argument("--score-orders", default=os.environ.get("SCORE_ORDERS", "1M"), help="0 skips scoring")
    parser.add_argument("--results", type=Path, default=Path(os.environ.get("RESULTS", "bench-scale.jsonl")))
    parser.add_argument("--report", type=Path, nargs="+", help="print the table and fit of these results files")
    args = parser.parse_args(argv)
    if args.report:
        earlier = [Run(**json.loads(line)) for path in args.report for line in path.read_text().splitlines() if line]
        print(table(sorted(earlier, key=lambda r: (r.step != "train", r.orders, r.engine))))
        for line in growth(earlier):
            print(line)
        return 0
    sizes = [orders_count(s) for s in args.sizes.split(",") if s.strip()]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    runs: list[Run] = []

    def record(run: Run) -> None:
        runs.append(run)
        with args.results.open("a") as handle:
            handle.write(json.dumps(asdict(run)) + "\n")
        print(run, flush=True)

    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="osml-bench-scale-") as tmp:
        work = Path(tmp)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OSML_DATASET_ROOTS": str(work)}
        for size in sizes:
            whole, parts = write_dataset(size, work / f"orders-{size}")
            for engine in engines:
                record(train_once(whole if engine == "single" else parts, engine=engine, orders=size, env=env,
                                  activate=not runs))  # fmt: skip
        score_orders = orders_count(args.score_orders)
        if score_orders and any(r.ok for r in runs):
            dataset = work / f"score-{score_orders}"
            write_parts(score_orders, dataset)
            scored = measure(dataset, work / "scored.parquet", workers=0, tracking_uri=uri, orders=score_orders)
            record(Run("score", "one process", score_orders, scored.written, scored.wall_s, scored.client_peak_mb,
                       scored.worker_peak_mb, scored.total_peak_mb, True, ""))  # fmt: skip
    print(f"load average at the end: {os.getloadavg()}")
    print(table(runs))
    for line in growth(runs):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
