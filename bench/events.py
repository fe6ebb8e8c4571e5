"""End-to-end events benchmark (called by bench/run.py): REQUESTED published -> READY received, at one worker.

Real processes on this machine: the facade (`osml serve`, a pair trained on synthetic orders), `osml worker`,
`osml relay`, RabbitMQ (a fresh vhost) and PostgreSQL (a fresh database). The backend simulator (the engine of
`osml simulate`) publishes and collects from this process, so it shares the machine like a real backend would.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path

from bench.serving import Child, ensure_pair, machine, start_facade
from osml.processes import VENV_BIN, free_port
from tests.services import fresh_database, fresh_vhost
from worker.runner import run as run_async
from worker.simulator import SimulationReport, generate_orders, simulate

TARGET_EVENTS_PER_S = 500.0
FLAT_OUT_EVENTS = 6000
PACED_EVENTS = 3000
PACED_RATE = 500.0


def _simulate(broker_url: str, *, events: int, rate: float, seed: int) -> SimulationReport:
    orders = generate_orders(events, seed=seed)
    return run_async(simulate(broker_url=broker_url, orders=orders, rate=rate, timeout_s=120))


def run(report: list[str], *, tracking_uri: str | None = None) -> bool:
    """Measure, append the events section to `report`, and say whether the target was met. `tracking_uri`: serve
    that store's production pair (default: train one into a temporary store)."""

    def say(message: str) -> None:
        print(f"[bench events] {message}", flush=True)

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    host = machine()
    with (
        tempfile.TemporaryDirectory(prefix="osml-bench-events-") as tmp,
        fresh_database("osml_bench") as database_url,
        fresh_vhost("osml-bench") as broker_url,
    ):
        workdir = Path(tmp)
        uri = tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}"
        ensure_pair(uri, workdir, say)
        key = secrets.token_urlsafe(16)
        port = free_port()
        facade_url = f"http://127.0.0.1:{port}"
        osml = str(VENV_BIN / "osml")
        children = [start_facade(uri, workdir, port=port, predict_key=key, env={"OSML_LOG_LEVEL": "WARNING"})]
        event_env = {
            "OSML_BROKER_URL": broker_url,
            "OSML_DATABASE_URL": database_url,
            "OSML_FACADE_URL": facade_url,
            "OSML_PREDICT_API_KEY": key,
        }
        try:
            children[0].wait_http(f"{facade_url}/health/ready")
            children.append(Child("worker", [osml, "worker"], env=event_env, log=workdir / "worker.log"))
            children.append(Child("relay", [osml, "relay"], env=event_env, log=workdir / "relay.log"))
            say("warm-up: 300 events")
            warm = _simulate(broker_url, events=300, rate=0, seed=1)
            if warm.received != warm.published:
                tails = "\n".join(f"--- {c.name}\n{c.log.read_text()[-3000:]}" for c in children)
                raise RuntimeError(f"warm-up lost events ({warm.summary()})\n{tails}")
            say(f"flat out: {FLAT_OUT_EVENTS} events")
            flat = _simulate(broker_url, events=FLAT_OUT_EVENTS, rate=0, seed=2)
            say(flat.summary())
            say(f"paced: {PACED_EVENTS} events at {PACED_RATE:g}/s")
            paced = _simulate(broker_url, events=PACED_EVENTS, rate=PACED_RATE, seed=3)
            say(paced.summary())
        finally:
            for child in reversed(children):
                child.stop()

    throughput = flat.events_per_second
    complete = flat.received == flat.published and paced.received == paced.published
    met = throughput >= TARGET_EVENTS_PER_S and complete
    report += [
        "## Events: ML_PREDICTION_REQUESTED -> ML_PREDICTION_READY end to end",
        "",
        f"Measured {started} by `make bench` (`bench/events.py`) on {host}.",
        "One `osml worker` (batches of up to 200 events: one `/predict/batch` call and one transaction each), one "
        "`osml relay` (publisher confirms), the facade (one process), RabbitMQ and PostgreSQL, all on this machine; "
        "the simulator (`osml simulate`'s engine) publishes REQUESTED with confirms and consumes READY from its own "
        "queue in the benchmark process. Latency: REQUESTED published -> READY received, per order.",
        "",
        "| run | events | offered rate | READY received | events/s end to end | p50 (ms) | p95 (ms) | p99 (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result, offered in (
        ("flat out (saturation)", flat, f"{flat.published / max(flat.publish_seconds, 1e-9):,.0f}/s (max)"),
        (f"paced at {PACED_RATE:g}/s", paced, f"{PACED_RATE:g}/s"),
    ):
        report.append(
            f"| {name} | {result.published:,} | {offered} | {result.received:,} | {result.events_per_second:,.0f} | "
            f"{result.percentile_ms(50):,.0f} | {result.percentile_ms(95):,.0f} | {result.percentile_ms(99):,.0f} |"
        )
    report += [
        "",
        "Flat out, latency is mostly queueing (every event is published at once); the paced run shows latency "
        "at the target rate. Reproduce by hand against a running worker/relay/facade: "
        "`osml simulate --orders 6000 --rate 0` and `osml simulate --orders 3000 --rate 500`.",
        "",
        "| acceptance target | measured | met |",
        "|---|---:|:---:|",
        f"| end to end >= {TARGET_EVENTS_PER_S:g} events/s at one worker | {throughput:,.0f} events/s | "
        f"{'yes' if throughput >= TARGET_EVENTS_PER_S else 'NO'} |",
        f"| every REQUESTED answered by one READY | {flat.received + paced.received:,} of "
        f"{flat.published + paced.published:,} | {'yes' if complete else 'NO'} |",
        "",
    ]
    return met


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.events", description="only the events benchmark")
    parser.add_argument("--tracking-uri", help="serve this store's production pair (default: train one)")
    lines: list[str] = []
    ok = run(lines, tracking_uri=parser.parse_args().tracking_uri)
    print("\n".join(lines))
    raise SystemExit(0 if ok else 1)
