#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on a local port for the tests and benchmarks (Debian's
# postgresql package; run as root: the cluster itself runs as the unprivileged `postgres` user),
# and print the URL the tests read from HARNESS_TEST_POSTGRES:
#   export HARNESS_TEST_POSTGRES=$(bash tools/start_postgres.sh)
set -euo pipefail
PORT=${PORT:-55432}
VERSION=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | awk '{print $2}' | grep -qx harness; then
  pg_createcluster "$VERSION" harness --port "$PORT" >&2
fi
pg_ctlcluster "$VERSION" harness start >&2 2>/dev/null || true  # stdout carries only the URL
for _ in $(seq 1 30); do
  su postgres -c "psql -p $PORT -tAc 'select 1'" >/dev/null 2>&1 && break
  sleep 1
done
su postgres -c "psql -p $PORT -v ON_ERROR_STOP=1 -q" >/dev/null <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'harness') THEN
    CREATE ROLE harness LOGIN SUPERUSER PASSWORD 'harness';
  END IF;
END $$;
SQL
su postgres -c "psql -p $PORT -tAc \"select 1 from pg_database where datname = 'harness'\"" | grep -q 1 \
  || su postgres -c "createdb -p $PORT -O harness harness"
echo "postgresql://harness:harness@127.0.0.1:$PORT/harness"
