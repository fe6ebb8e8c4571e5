"""Offline training: data adapters, labels, features, candidates, MLflow logging and registration."""
