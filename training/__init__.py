"""Offline training: data adapters, labels, features, candidates, MLflow logging and registration."""

import os

# OpenMP threads that finish their share sleep instead of spinning (set before XGBoost or scikit-learn load their
# OpenMP runtime, which reads it once). On a machine shared with other work, spinning siblings starved the one
# thread still computing: a 2-thread XGBoost fit ran 8-10x slower than with this (docs/benchmarks.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
