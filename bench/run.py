"""`make bench`: the serving benchmark, then the events benchmark (bench/events.py); prints the report and
writes it to docs/benchmarks.md. Exits 1 when a target is missed."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench import events, serving

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
# sections `make bench` does not produce, kept as they are (from the first of them on) when it rewrites the rest:
# the training-time measurements (their commands are in the section) and `make bench-scale` (bench/scale.py), which
# runs for hours
KEPT_SECTIONS = ("## Training: ", "## Training and scoring at scale")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each wrk run")
    parser.add_argument(
        "--tracking-uri", help="benchmark this store's production pair (default: train into a temp one)"
    )
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {DOC.name} alone")
    args = parser.parse_args(argv)

    report = ["# Benchmarks", "", "Produced by `make bench` (`python -m bench.run`); numbers from one run.", ""]
    # one store for both parts: a pair is trained once (when the store has none) and both serve the same one
    with tempfile.TemporaryDirectory(prefix="osml-bench-store-") as tmp:
        uri = args.tracking_uri or f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        ok = serving.run(report, seconds=args.seconds, tracking_uri=uri)
        ok = events.run(report, tracking_uri=uri) and ok
    text = "\n".join(report).rstrip() + "\n"
    earlier = DOC.read_text() if DOC.exists() else ""
    kept = [earlier.index(heading) for heading in KEPT_SECTIONS if heading in earlier]
    if kept:
        text += "\n" + earlier[min(kept) :]
    print(text)
    if not args.no_write:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
