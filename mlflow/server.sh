#!/bin/sh
# The osml tracking server. Run metadata and the Model Registry live in PostgreSQL; artifacts live in S3-compatible
# storage behind the server's artifact proxy (--serve-artifacts), so clients log and load through
# `mlflow-artifacts:` URIs and only this process holds the storage credentials. MLflow's basic-auth app guards
# every request: anonymous callers get a login prompt, the facade reads, only the trainer writes
# (docs/security.md).
#
#   server.sh          run the server (the image's default)
#   server.sh users    create/update the writer and reader identities (users.py beside this file; idempotent)
#   server.sh upgrade  migrate the backend store schema to this MLflow version (run before a new image serves)
#
# Settings (environment; see README.md beside this file):
#   MLFLOW_BACKEND_STORE_URI      postgresql+psycopg://USER:PASSWORD@HOST:5432/mlflow          (required)
#   MLFLOW_ARTIFACTS_DESTINATION  s3://BUCKET/mlartifacts                                       (required)
#   MLFLOW_AUTH_DATABASE_URI      users and permissions, e.g. postgresql+psycopg://USER:PASSWORD@HOST:5432/mlflow_auth
#                                 (required; no '%' in it: it goes into an ini file)
#   MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD  the admin, created on the first start (password required)
#   MLFLOW_FLASK_SERVER_SECRET_KEY  signs the login app's CSRF tokens; the same on every server (required)
#   MLFLOW_HOST / MLFLOW_PORT / MLFLOW_WORKERS                     default 0.0.0.0 / 5000 / 2
#   MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   the S3-compatible store (MinIO, moto)
#   MLFLOW_SERVER_ALLOWED_HOSTS   Host headers accepted (replaces the localhost/private-IP default), e.g. mlflow,mlflow:*
#   MLFLOW_SERVER_ENABLE_JOB_EXECUTION  default false here: MLflow's GenAI job runner (trace scoring/archival) is seven
#                                 extra processes (~250 MB each) that osml never uses
# `users` reads MLFLOW_TRACKING_URI, the admin as MLFLOW_TRACKING_USERNAME/PASSWORD, and the identities of users.py.
set -eu

export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
here="$(cd "$(dirname "$0")" && pwd)"

case "${1:-serve}" in
  upgrade)
    : "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (postgresql+psycopg://USER:PASSWORD@HOST:5432/mlflow)}"
    exec mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI"
    ;;
  users)
    exec python "$here/users.py"
    ;;
  serve)
    : "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (postgresql+psycopg://USER:PASSWORD@HOST:5432/mlflow)}"
    : "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION (s3://BUCKET/mlartifacts)}"
    : "${MLFLOW_AUTH_DATABASE_URI:?set MLFLOW_AUTH_DATABASE_URI (postgresql+psycopg://USER:PASSWORD@HOST:5432/mlflow_auth)}"
    : "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD (the tracking server admin)}"
    : "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY (CSRF secret of the login app)}"
    export MLFLOW_AUTH_ADMIN_USERNAME="${MLFLOW_AUTH_ADMIN_USERNAME:-admin}"
    # the auth app reads its settings from an ini file; this one holds a database password, so only we read it
    umask 077
    config_dir="$(mktemp -d)"
    cat > "$config_dir/basic_auth.ini" <<INI
[mlflow]
default_permission = READ
database_uri = $MLFLOW_AUTH_DATABASE_URI
admin_username = $MLFLOW_AUTH_ADMIN_USERNAME
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
    export MLFLOW_AUTH_CONFIG_PATH="$config_dir/basic_auth.ini"
    exec mlflow server \
      --app-name basic-auth \
      --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
      --serve-artifacts \
      --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
      --host "${MLFLOW_HOST:-0.0.0.0}" \
      --port "${MLFLOW_PORT:-5000}" \
      --workers "${MLFLOW_WORKERS:-2}"
    ;;
  *)
    echo "usage: server.sh [serve|users|upgrade]" >&2
    exit 2
    ;;
esac
