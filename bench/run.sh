#!/usr/bin/env bash
# bench/run.sh — the one documented benchmark command.
#
#   bench/run.sh [loyalty-bench flags...]
#
#   bench/run.sh                                   # 200 members, concurrency 32, 15 s
#   bench/run.sh --concurrency 8 --duration-secs 30
#   bench/run.sh --members 1000 --mix 1:2:1        # daily_login:product_view:purchase
#   bench/run.sh --report                          # Customer Loyalty Report at 5,000,000 rows
#   target/release/loyalty-bench --help            # all flags
#
#   bench/run.sh ws                                # WebSocket fan-out: 10,000 balanceChanged
#   bench/run.sh ws --connections 2000 --events 100   subscriptions, commit-to-event latency,
#                                                  # server memory per connection
#   target/release/loyalty-ws-bench --help         # its flags
#
#   bench/run.sh rules                             # rule engine alone: `evaluate` over 200 live
#   bench/run.sh rules --rules 500 --iterations 50000   rules, µs per event (no database, no
#                                                  # server: builds and runs loyalty-rules-bench)
#
# What it does:
#   1. cargo build --release -p loyalty-server -p loyalty-bench
#   2. drops and recreates the PostgreSQL database $BENCH_DB (default loyalty_bench)
#      and flushes Redis DB $REDIS_DB (default 3)
#   3. loyalty-server migrate; loyalty-server demo   (creates program `demo`)
#   4. starts loyalty-server serve on $BENCH_LISTEN (default 127.0.0.1:18080) and
#      waits (bounded) for GET /readyz to answer 200
#   5. runs loyalty-bench against it: registers members, measures the raw SQL
#      ceiling (insert one ledger row + update one balance per transaction) in the
#      same database at the same concurrency, then the HTTP mix, and prints one
#      markdown table plus the HTTP/raw ratio
#   6. stops the server on exit (also on failure or Ctrl-C); its log stays in
#      target/bench-server.log
#
# Needs cargo, psql, redis-cli and curl; PostgreSQL >= 13 reachable as
# $PGUSER@$PGHOST:$PGPORT without a password prompt (trust auth, ~/.pgpass or
# PGPASSWORD) and Redis at $REDIS_HOST:$REDIS_PORT. Every setting below can be
# overridden through the environment. Flags after the script name are passed
# to loyalty-bench verbatim and win over the ones set here.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODE=http
if [[ "${1:-}" == "rules" ]]; then
    # Pure CPU: only this binary, nothing to prepare.
    shift
    printf '==> %s\n' "building loyalty-rules-bench (release)" >&2
    cargo build --release -p loyalty-bench --bin loyalty-rules-bench
    exec "${CARGO_TARGET_DIR:-target}/release/loyalty-rules-bench" "$@"
fi
if [[ "${1:-}" == "ws" ]]; then
    MODE=ws
    shift
    # 10,000 sockets on each side: lift the soft open-files limit to the hard one.
    ulimit -n "$(ulimit -Hn)"
fi

PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
BENCH_DB="${BENCH_DB:-loyalty_bench}"
REDIS_HOST="${REDIS_HOST:-127.0.0.1}"
REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_DB="${REDIS_DB:-3}"
BENCH_LISTEN="${BENCH_LISTEN:-127.0.0.1:18080}"
READY_TIMEOUT_SECS="${READY_TIMEOUT_SECS:-60}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

export DATABASE_URL="postgres://${PGUSER}@${PGHOST}:${PGPORT}/${BENCH_DB}"
export REDIS_URL="redis://${REDIS_HOST}:${REDIS_PORT}/${REDIS_DB}"
export JWT_SECRET="${JWT_SECRET:-bench-secret-not-for-production-0123456789abcdef}"
export LISTEN_ADDR="$BENCH_LISTEN"
export RUST_LOG="${RUST_LOG:-warn}"
# The load generator is one client address with few tokens: lift the per-IP and per-token rate
# limits so the run measures the engine, not the limiter.
export RATE_LIMIT_IP_PER_SEC="${RATE_LIMIT_IP_PER_SEC:-1000000}"
export RATE_LIMIT_SUBJECT_PER_SEC="${RATE_LIMIT_SUBJECT_PER_SEC:-1000000}"
# Every bench socket comes from 127.0.0.1: lift the per-address WebSocket cap (default 1,000).
export WS_MAX_SOCKETS_PER_IP="${WS_MAX_SOCKETS_PER_IP:-1000000}"
# The report benchmark waits for the server's folder: let it run every second.
export REPORT_FOLD_INTERVAL_SECS="${REPORT_FOLD_INTERVAL_SECS:-1}"

SERVER_BIN="$TARGET_DIR/release/loyalty-server"
BENCH_BIN="$TARGET_DIR/release/loyalty-bench"
SERVER_LOG="$TARGET_DIR/bench-server.log"
BASE_URL="http://${BENCH_LISTEN}"

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'run.sh: %s\n' "$*" >&2
    exit 1
}

for tool in cargo psql redis-cli curl; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required but not on PATH"
done
[[ "$BENCH_DB" =~ ^[a-z_][a-z0-9_]*$ ]] || die "BENCH_DB must be a plain identifier, got '$BENCH_DB'"

# Refuse to benchmark whatever else might already be listening there.
if curl -s -o /dev/null --max-time 2 "${BASE_URL}/readyz"; then
    die "something is already listening on ${BENCH_LISTEN}; stop it or set BENCH_LISTEN"
fi

log "building loyalty-server and loyalty-bench (release)"
cargo build --release -p loyalty-server -p loyalty-bench

log "recreating database ${BENCH_DB} on ${PGHOST}:${PGPORT}"
PGOPTIONS="-c client_min_messages=warning" psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -X -q -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS ${BENCH_DB} WITH (FORCE)" \
    -c "CREATE DATABASE ${BENCH_DB}"

log "flushing Redis DB ${REDIS_DB} on ${REDIS_HOST}:${REDIS_PORT}"
redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" -n "$REDIS_DB" flushdb >/dev/null

log "loyalty-server migrate"
"$SERVER_BIN" migrate
log "loyalty-server demo"
"$SERVER_BIN" demo

SERVER_PID=""
stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        log "stopping loyalty-server (pid ${SERVER_PID})"
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting loyalty-server serve on ${BENCH_LISTEN} (log: ${SERVER_LOG})"
"$SERVER_BIN" serve >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

log "waiting up to ${READY_TIMEOUT_SECS}s for ${BASE_URL}/readyz"
deadline=$((SECONDS + READY_TIMEOUT_SECS))
until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${BASE_URL}/readyz" || true)" == "200" ]]; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        tail -n 40 "$SERVER_LOG" >&2 || true
        die "loyalty-server exited before becoming ready (log above, full log in ${SERVER_LOG})"
    fi
    if ((SECONDS >= deadline)); then
        tail -n 40 "$SERVER_LOG" >&2 || true
        die "loyalty-server not ready after ${READY_TIMEOUT_SECS}s (log above)"
    fi
    sleep 0.25
done

# JWT_SECRET reaches the bench through the environment (not argv).
if [[ "$MODE" == ws ]]; then
    log "running loyalty-ws-bench"
    "$TARGET_DIR/release/loyalty-ws-bench" --server "$BASE_URL" --server-pid "$SERVER_PID" "$@"
else
    log "running loyalty-bench"
    "$BENCH_BIN" --server "$BASE_URL" --database-url "$DATABASE_URL" "$@"
fi
