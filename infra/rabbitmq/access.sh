#!/bin/sh
# Prints the broker's users and permissions as a definitions document (imported at boot by entrypoint.sh; also
# by tests/integration/test_rabbitmq_access.py). One user per component, each limited to what it does:
#   worker   consumes its queue (any suffix: .quorum, and .dlq for its dead letters)
#   relay    publishes ML_PREDICTION_READY to osml.events, and consumes nothing
# Both declare the whole topology on start (worker/topology.py: either may come first), so both may configure
# the exchange and the queues and bind them with the REQUESTED key; only the worker may read a queue.
#   backend  publishes ML_PREDICTION_REQUESTED to osml.events, nothing else
#   RABBITMQ_USER  the operator's administrator (management UI); no service uses it
# Environment: RABBITMQ_USER/PASSWORD, RABBITMQ_{WORKER,RELAY,BACKEND}_PASSWORD (required),
# RABBITMQ_{WORKER,RELAY,BACKEND}_USER (default osml-worker, osml-relay, osml-backend), RABBITMQ_VHOST (osml).
# No guest: importing definitions at boot leaves the image's default user out.
set -eu
: "${RABBITMQ_USER:?set RABBITMQ_USER}"
: "${RABBITMQ_PASSWORD:?set RABBITMQ_PASSWORD}"
: "${RABBITMQ_WORKER_PASSWORD:?set RABBITMQ_WORKER_PASSWORD}"
: "${RABBITMQ_RELAY_PASSWORD:?set RABBITMQ_RELAY_PASSWORD}"
: "${RABBITMQ_BACKEND_PASSWORD:?set RABBITMQ_BACKEND_PASSWORD}"
vhost="${RABBITMQ_VHOST:-osml}"
worker="${RABBITMQ_WORKER_USER:-osml-worker}"
relay="${RABBITMQ_RELAY_USER:-osml-relay}"
backend="${RABBITMQ_BACKEND_USER:-osml-backend}"
# the worker's queue under every name it has had or declares (the quorum queue, its dead letters, the classic one)
queue='osml\\.ml-prediction-requested(\\.[a-z]+)?'

cat <<JSON
{
  "vhosts": [{"name": "$vhost"}],
  "users": [
    {"name": "$RABBITMQ_USER", "password": "$RABBITMQ_PASSWORD", "tags": "administrator"},
    {"name": "$worker", "password": "$RABBITMQ_WORKER_PASSWORD", "tags": ""},
    {"name": "$relay", "password": "$RABBITMQ_RELAY_PASSWORD", "tags": ""},
    {"name": "$backend", "password": "$RABBITMQ_BACKEND_PASSWORD", "tags": ""}
  ],
  "permissions": [
    {"user": "$RABBITMQ_USER", "vhost": "$vhost", "configure": ".*", "write": ".*", "read": ".*"},
    {"user": "$worker", "vhost": "$vhost",
     "configure": "^(osml\\\\.events|$queue)\$", "write": "^(amq\\\\.default|$queue)\$", "read": "^(osml\\\\.events|$queue)\$"},
    {"user": "$relay", "vhost": "$vhost",
     "configure": "^(osml\\\\.events|$queue)\$", "write": "^(osml\\\\.events|$queue)\$", "read": "^osml\\\\.events\$"},
    {"user": "$backend", "vhost": "$vhost", "configure": "^\$", "write": "^osml\\\\.events\$", "read": "^\$"}
  ],
  "topic_permissions": [
    {"user": "$worker", "vhost": "$vhost", "exchange": "osml.events", "write": "^\$", "read": "^ML_PREDICTION_REQUESTED\$"},
    {"user": "$relay", "vhost": "$vhost", "exchange": "osml.events",
     "write": "^ML_PREDICTION_READY\$", "read": "^ML_PREDICTION_REQUESTED\$"},
    {"user": "$backend", "vhost": "$vhost", "exchange": "osml.events", "write": "^ML_PREDICTION_REQUESTED\$", "read": "^\$"}
  ]
}
JSON
