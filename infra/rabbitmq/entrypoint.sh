#!/bin/sh
# Renders the boot-time definitions directory read by rabbitmq.conf, then starts the broker as the image would.
set -eu
: "${RABBITMQ_USER:?set RABBITMQ_USER}"
: "${RABBITMQ_PASSWORD:?set RABBITMQ_PASSWORD}"

dir=/tmp/osml-definitions
mkdir -p "$dir"
cp /etc/osml-rabbitmq/definitions.json "$dir/10-topology.json"
# self-contained (declares the vhost too) so that the import order of the two files does not matter
umask 077
cat > "$dir/20-access.json" <<JSON
{
  "users": [{"name": "$RABBITMQ_USER", "password": "$RABBITMQ_PASSWORD", "tags": "administrator"}],
  "vhosts": [{"name": "osml"}],
  "permissions": [{"user": "$RABBITMQ_USER", "vhost": "osml", "configure": ".*", "write": ".*", "read": ".*"}]
}
JSON
chown -R rabbitmq:rabbitmq "$dir" 2>/dev/null || true
exec docker-entrypoint.sh rabbitmq-server
