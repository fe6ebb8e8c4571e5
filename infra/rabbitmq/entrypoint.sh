#!/bin/sh
# Renders the boot-time definitions directory read by rabbitmq.conf (the topology, and the users of access.sh),
# then starts the broker as the image would.
set -eu
dir=/tmp/osml-definitions
mkdir -p "$dir"
cp /etc/osml-rabbitmq/definitions.json "$dir/10-topology.json"
# self-contained (declares the vhost too) so that the import order of the two files does not matter
umask 077
sh /etc/osml-rabbitmq/access.sh > "$dir/20-access.json"
chown -R rabbitmq:rabbitmq "$dir" 2>/dev/null || true
exec docker-entrypoint.sh rabbitmq-server
