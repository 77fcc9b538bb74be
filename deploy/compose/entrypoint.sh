#!/bin/sh
# Build the PostgreSQL URL from the password secret, then run `edgewise "$@"`.
set -eu
if [ -n "${EDGEWISE_PG_PASSWORD_FILE:-}" ] && [ -z "${EDGEWISE_DB_URL:-}" ]; then
  EDGEWISE_DB_URL="postgresql+psycopg://edgewise:$(cat "$EDGEWISE_PG_PASSWORD_FILE")@postgres/edgewise"
  export EDGEWISE_DB_URL
fi
exec edgewise "$@"
