#!/usr/bin/env bash
# The whole test suite on SQLite and on PostgreSQL, the two runs side by side (`make test`).
#
# Why side by side: CI has 2 cores and one run keeps about one busy (the tests, the app in-process, SQLite); the
# PostgreSQL run's server work overlaps too. One after the other took ~35 min on CI; together they take the longer
# of the two plus contention. Each run has its own coverage data file and its own port range for the servers the
# tests start (tests/services.py); the PostgreSQL run's output is kept in var/test-logs/postgresql.log and printed
# after the SQLite run's. Exit status: non-zero when either run fails.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PG_URL=$(bash .ci/postgres.sh) || { echo "could not start PostgreSQL" >&2; exit 1; }
mkdir -p var/test-logs
rm -f .coverage .coverage.sqlite .coverage.postgresql
started=$(date +%s)

COVERAGE_FILE=.coverage.postgresql PORTAL_TEST_DATABASE_URL="$PG_URL" PORTAL_TEST_PORTS=18500-18599 \
  "$PY" -m pytest -q -p no:cacheprovider --durations=15 --cov --cov-report= "$@" > var/test-logs/postgresql.log 2>&1 &
postgresql=$!
trap 'kill $postgresql 2>/dev/null' INT TERM

echo "== SQLite (PostgreSQL runs beside it: var/test-logs/postgresql.log) =="
COVERAGE_FILE=.coverage.sqlite PORTAL_TEST_PORTS=18400-18499 \
  "$PY" -m pytest -q --durations=15 --cov --cov-report=term "$@"
sqlite_status=$?
wait $postgresql
postgresql_status=$?

echo
echo "== PostgreSQL ($PG_URL) =="
cat var/test-logs/postgresql.log
echo
echo "== Coverage of both runs combined =="
"$PY" -m coverage combine -q --keep .coverage.sqlite .coverage.postgresql >/dev/null && "$PY" -m coverage report | grep -E "^(Name|TOTAL)"
echo "SQLite: exit $sqlite_status; PostgreSQL: exit $postgresql_status; wall time $(( $(date +%s) - started )) s"
[ "$sqlite_status" = 0 ] && [ "$postgresql_status" = 0 ]
