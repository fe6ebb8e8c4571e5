#!/bin/sh
# The osml tracking server. Run metadata and the Model Registry live in PostgreSQL; artifacts live in S3-compatible
# storage behind the server's artifact proxy (--serve-artifacts), so clients log and load through
# `mlflow-artifacts:` URIs and only this process holds the storage credentials.
#
#   server.sh          run the server (the image's default)
#   server.sh upgrade  migrate the backend store schema to this MLflow version (run before a new image serves)
#
# Settings (environment; see README.md beside this file):
#   MLFLOW_BACKEND_STORE_URI      postgresql+psycopg://USER:PASSWORD@HOST:5432/mlflow          (required)
#   MLFLOW_ARTIFACTS_DESTINATION  s3://BUCKET/mlartifacts                                       (required)
#   MLFLOW_HOST / MLFLOW_PORT / MLFLOW_WORKERS                     default 0.0.0.0 / 5000 / 2
#   MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   the S3-compatible store (MinIO, moto)
#   MLFLOW_SERVER_ALLOWED_HOSTS   Host headers accepted (replaces the localhost/private-IP default), e.g. mlflow,mlflow:*
#   MLFLOW_SERVER_ENABLE_JOB_EXECUTION  default false here: MLflow's GenAI job runner (trace scoring/archival) is seven
#                                 extra processes (~250 MB each) that osml never uses
set -eu

export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (postgresql+psycopg://USER:PASSWORD@HOST:5432/mlflow)}"

case "${1:-serve}" in
  upgrade)
    exec mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI"
    ;;
  serve)
    : "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION (s3://BUCKET/mlartifacts)}"
    exec mlflow server \
      --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
      --serve-artifacts \
      --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
      --host "${MLFLOW_HOST:-0.0.0.0}" \
      --port "${MLFLOW_PORT:-5000}" \
      --workers "${MLFLOW_WORKERS:-2}"
    ;;
  *)
    echo "usage: server.sh [serve|upgrade]" >&2
    exit 2
    ;;
esac
