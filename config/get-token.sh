#!/bin/sh
# An example credential provider (config/example.toml, feed "orders").
#
# feedvisor runs it, without a shell, in the config file's directory, with
# its own environment plus FEEDVISOR_FEED (the feed's name) and the
# arguments the config gives, before every connect attempt and on the
# feed's refresh timer. It prints one JSON object, every field optional:
#   {"url": "wss://...", "headers": {"Name": "value"},
#    "values": {"name": "value"}, "expires_at": "2026-05-01T12:00:00Z"}
# and exits 0. Whatever it writes to stderr is read and dropped, never
# logged: it may hold secrets. Here the token is read from a file that
# something else (a vault agent, a cron job) keeps fresh for 15 minutes.
set -eu
token=$(cat "${ORDERS_TOKEN_FILE:-/run/secrets/orders-token}")
expires=$(date -u -d '+15 minutes' +%Y-%m-%dT%H:%M:%SZ)
printf '{"headers":{"Authorization":"Bearer %s"},"values":{"token":"%s"},"expires_at":"%s"}\n' \
    "$token" "$token" "$expires"
