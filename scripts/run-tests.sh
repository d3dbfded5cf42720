#!/usr/bin/env bash
# Runs every test. Starts the PostgreSQL server the suite needs when it is not running.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if ! pg_up; then
    echo "run-tests: starting PostgreSQL"
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        for v in $(ls /etc/postgresql); do
            pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
        done
    fi
    for _ in $(seq 50); do pg_up && break; sleep 0.2; done
fi
if pg_up && command -v psql >/dev/null 2>&1; then
    # trust auth on a CI machine; create the test database when missing
    if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
        su postgres -c "psql -c 'create database test'" >/dev/null 2>&1 \
            || psql -h 127.0.0.1 -U postgres -c 'create database test' >/dev/null 2>&1 || true
    fi
fi
if ! pg_up; then
    echo "run-tests: PostgreSQL is not reachable on 127.0.0.1:5432; the suite needs it" >&2
    exit 1
fi

export PLAYWRIGHT_BROWSERS_PATH="${PLAYWRIGHT_BROWSERS_PATH:-$(mktemp -d)}"
exec $BIN/pytest -q "$@"
