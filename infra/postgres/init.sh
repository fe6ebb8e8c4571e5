#!/bin/sh
# docker-entrypoint-initdb.d: runs once, when the PostgreSQL volume is empty, as POSTGRES_USER (the superuser,
# which no service uses). Creates each service's role and database (roles.sql beside this file).
set -eu
for name in MLFLOW_DB_PASSWORD MIGRATE_DB_PASSWORD FACADE_DB_PASSWORD WORKER_DB_PASSWORD RELAY_DB_PASSWORD TRAINER_DB_PASSWORD LIVE_DB_PASSWORD; do
  eval "value=\${$name:-}"
  [ -n "$value" ] || { echo "init.sh: set $name" >&2; exit 1; }
done
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v mlflow_db=mlflow -v mlflow_auth_db=mlflow_auth -v osml_db=osml \
  -v mlflow_role=mlflow -v migrate_role=osml_migrate -v facade_role=osml_facade \
  -v worker_role=osml_worker -v relay_role=osml_relay -v trainer_role=osml_trainer -v live_role=osml_live \
  -v mlflow_password="$MLFLOW_DB_PASSWORD" -v migrate_password="$MIGRATE_DB_PASSWORD" \
  -v facade_password="$FACADE_DB_PASSWORD" -v worker_password="$WORKER_DB_PASSWORD" \
  -v relay_password="$RELAY_DB_PASSWORD" -v trainer_password="$TRAINER_DB_PASSWORD" \
  -v live_password="$LIVE_DB_PASSWORD" \
  -f /osml/postgres/roles.sql
