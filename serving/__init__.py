"""The FastAPI facade over the MLflow Model Registry."""
