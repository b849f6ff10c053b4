#!/usr/bin/env bash
# The case service's tests on SQLite and PostgreSQL (extra arguments go to cargo test).
exec "$(dirname "$0")/with-postgres.sh" cargo test -p fengqiao-cases "$@"
