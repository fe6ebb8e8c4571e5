#!/usr/bin/env bash
# Makes sure the services the integration tests need are up; starts them when possible, otherwise fails
# naming the missing one. Never lets a test skip silently because a service is down.
set -uo pipefail
PGHOST=${OSML_TEST_PGHOST:-127.0.0.1}
PGPORT=${OSML_TEST_PGPORT:-5432}
AMQP_PORT=${OSML_TEST_AMQP_PORT:-5672}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {  # host port seconds
  local deadline=$((SECONDS + $3))
  until port_open "$1" "$2"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

start_postgres() {
  command -v pg_ctlcluster >/dev/null && { pg_lsclusters -h | while read -r ver name _; do pg_ctlcluster "$ver" "$name" start; done; } 2>/dev/null
  command -v service >/dev/null && service postgresql start >/dev/null 2>&1
}

start_rabbitmq() {
  command -v service >/dev/null && service rabbitmq-server start >/dev/null 2>&1
  port_open 127.0.0.1 "$AMQP_PORT" || { command -v rabbitmq-server >/dev/null && (rabbitmq-server -detached >/dev/null 2>&1 || true); }
}

ok=1
if ! port_open "$PGHOST" "$PGPORT"; then
  echo "PostgreSQL is not listening on $PGHOST:$PGPORT; starting it"
  start_postgres
  wait_port "$PGHOST" "$PGPORT" 60 || { echo "ERROR: PostgreSQL is down on $PGHOST:$PGPORT and could not be started"; ok=0; }
fi
if ! port_open 127.0.0.1 "$AMQP_PORT"; then
  echo "RabbitMQ is not listening on 127.0.0.1:$AMQP_PORT; starting it"
  start_rabbitmq
  wait_port 127.0.0.1 "$AMQP_PORT" 90 || { echo "ERROR: RabbitMQ is down on 127.0.0.1:$AMQP_PORT and could not be started"; ok=0; }
fi
((ok)) || exit 1
