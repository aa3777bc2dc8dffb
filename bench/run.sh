#!/usr/bin/env bash
# bench/run.sh — the documented benchmark commands.
#
#   bench/run.sh matrix [loyalty-bench flags...]   # THE ONE RUN (issue 13), about 10 minutes:
#       for concurrency 8, 32 and 128: the raw SQL transaction, the mixed workload and each
#       earning action alone (daily_login, product_view, news_read, product_share, purchase)
#       over HTTP, with ops/s, p50, p99, p99.9 and the HTTP/raw ratio in one table; then
#       `me { balance }` beside `{ __typename }` at 32; then the embedded SQLite default's
#       earn rate at 8 on a second server (no DATABASE_URL, REDIS_URL or JWT_SECRET; target
#       >= 1,000/s with p99 < 50 ms); CPU per operation of the server, PostgreSQL and the
#       client for every cell
#   bench/run.sh matrix --duration-secs 3 --warmup-secs 1 --concurrencies 8,32 \
#       --workloads mixed,purchase --members 200     # a quick smoke run of the same
#   BENCH_SQLITE=off bench/run.sh matrix           # without the SQLite server
#   BENCH_PROFILE=debug bench/run.sh matrix ...    # checks the tool without a release build
#                                                  # (debug numbers mean nothing)
#   BENCH_SERVER_BIN=/path/to/old/loyalty-server bench/run.sh matrix
#                                                  # "before": an older server, this bench tool
#
#   bench/run.sh                                   # 200 members, concurrency 32, 15 s
#   bench/run.sh --concurrency 8 --duration-secs 30
#   bench/run.sh --members 1000 --mix 1:2:1        # daily_login:product_view:purchase
#   bench/run.sh --mix 1:1:1:1:1                   # + news_read and product_share
#   bench/run.sh --no-apq                          # query text instead of persisted queries
#   bench/run.sh --report                          # Customer Loyalty Report at 5,000,000 rows
#   target/release/loyalty-bench --help            # all flags
#
#   bench/run.sh webhooks --concurrencies 8,32     # the mix with one webhook endpoint off/on
#                                                  #   (every event type) and the delivery rate
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
#   4b. matrix only: a second loyalty-server on the embedded default in a fresh temporary
#      DATA_DIR under the target directory (demo, then serve on $BENCH_SQLITE_LISTEN,
#      default 127.0.0.1:18081; its development JWT secret is read from DATA_DIR/jwt-secret)
#   5. runs loyalty-bench against it: registers members, measures the raw SQL
#      ceiling (insert one ledger row + update one balance per transaction) in the
#      same database at the same concurrency, then the HTTP mix, and prints one
#      markdown table plus the HTTP/raw ratio (matrix: the tables described above).
#      Requests use Automatic Persisted Queries unless --no-apq (a server without
#      them is detected by the first request and then gets query text)
#   6. stops the server(s) on exit (also on failure or Ctrl-C); logs stay in
#      target/bench-server.log (and target/bench-sqlite-server.log)
#
# Needs cargo, psql, redis-cli and curl; PostgreSQL >= 13 reachable as
# $PGUSER@$PGHOST:$PGPORT without a password prompt (trust auth, ~/.pgpass or
# PGPASSWORD) and Redis at $REDIS_HOST:$REDIS_PORT. CPU per operation needs Linux /proc
# and PostgreSQL on this machine (otherwise its column says n/a). Every setting below can be
# overridden through the environment. Flags after the script name (and after `matrix`)
# are passed to loyalty-bench verbatim and win over the ones set here.
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
if [[ "${1:-}" == "matrix" ]]; then
    MODE=matrix
    shift
fi
if [[ "${1:-}" == "webhooks" ]]; then
    MODE=webhooks
    shift
    # The bench's receiver listens on 127.0.0.1.
    export WEBHOOK_ALLOW_PRIVATE_URLS=true
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
BENCH_SQLITE_LISTEN="${BENCH_SQLITE_LISTEN:-127.0.0.1:18081}"
BENCH_SQLITE="${BENCH_SQLITE:-on}"
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

# BENCH_PROFILE=debug checks the tool itself without a release build; its numbers mean nothing.
BENCH_PROFILE="${BENCH_PROFILE:-release}"
# BENCH_SERVER_BIN: another server binary (an older commit's release build, for before/after
# runs with this commit's bench tool).
SERVER_BIN="${BENCH_SERVER_BIN:-$TARGET_DIR/$BENCH_PROFILE/loyalty-server}"
BENCH_BIN="$TARGET_DIR/$BENCH_PROFILE/loyalty-bench"
SERVER_LOG="$TARGET_DIR/bench-server.log"
SQLITE_SERVER_LOG="$TARGET_DIR/bench-sqlite-server.log"
BASE_URL="http://${BENCH_LISTEN}"
SQLITE_BASE_URL="http://${BENCH_SQLITE_LISTEN}"
WITH_SQLITE=false
if [[ "$MODE" == matrix && "$BENCH_SQLITE" != off ]]; then
    WITH_SQLITE=true
fi

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'run.sh: %s\n' "$*" >&2
    exit 1
}

case "$BENCH_PROFILE" in
    release) PROFILE_FLAG=(--release) ;;
    debug) PROFILE_FLAG=() ;;
    *) die "BENCH_PROFILE must be release or debug, got '$BENCH_PROFILE'" ;;
esac

for tool in cargo psql redis-cli curl; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required but not on PATH"
done
[[ "$BENCH_DB" =~ ^[a-z_][a-z0-9_]*$ ]] || die "BENCH_DB must be a plain identifier, got '$BENCH_DB'"

# Refuse to benchmark whatever else might already be listening there.
if curl -s -o /dev/null --max-time 2 "${BASE_URL}/readyz"; then
    die "something is already listening on ${BENCH_LISTEN}; stop it or set BENCH_LISTEN"
fi
if $WITH_SQLITE && curl -s -o /dev/null --max-time 2 "${SQLITE_BASE_URL}/readyz"; then
    die "something is already listening on ${BENCH_SQLITE_LISTEN}; stop it or set BENCH_SQLITE_LISTEN"
fi

log "building loyalty-server and loyalty-bench (${BENCH_PROFILE})"
cargo build "${PROFILE_FLAG[@]}" -p loyalty-server -p loyalty-bench

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
SQLITE_PID=""
SQLITE_DATA_DIR=""
stop_pid() {
    local pid="$1" name="$2"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        log "stopping ${name} (pid ${pid})"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    fi
}
stop_servers() {
    stop_pid "$SERVER_PID" loyalty-server
    stop_pid "$SQLITE_PID" "loyalty-server (embedded SQLite)"
    if [[ -n "$SQLITE_DATA_DIR" && -d "$SQLITE_DATA_DIR" ]]; then
        rm -rf -- "$SQLITE_DATA_DIR"
    fi
}
trap stop_servers EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_ready URL PID LOG
wait_ready() {
    local url="$1" pid="$2" logfile="$3" deadline
    log "waiting up to ${READY_TIMEOUT_SECS}s for ${url}/readyz"
    deadline=$((SECONDS + READY_TIMEOUT_SECS))
    until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${url}/readyz" || true)" == "200" ]]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$logfile" >&2 || true
            die "loyalty-server exited before becoming ready (log above, full log in ${logfile})"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 40 "$logfile" >&2 || true
            die "loyalty-server not ready after ${READY_TIMEOUT_SECS}s (log above)"
        fi
        sleep 0.25
    done
}

log "starting loyalty-server serve on ${BENCH_LISTEN} (log: ${SERVER_LOG})"
"$SERVER_BIN" serve >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
wait_ready "$BASE_URL" "$SERVER_PID" "$SERVER_LOG"

if $WITH_SQLITE; then
    # The embedded default: no DATABASE_URL, REDIS_URL or JWT_SECRET (a development secret is
    # generated into DATA_DIR), every other setting at its default except the rate limits
    # lifted above (the load comes from one address).
    SQLITE_DATA_DIR="$(mktemp -d "${TARGET_DIR}/bench-sqlite.XXXXXX")"
    sqlite_env=(env -u DATABASE_URL -u REDIS_URL -u JWT_SECRET -u REPORT_FOLD_INTERVAL_SECS
        DATA_DIR="$SQLITE_DATA_DIR" LISTEN_ADDR="$BENCH_SQLITE_LISTEN")
    log "embedded SQLite server: loyalty-server demo (DATA_DIR ${SQLITE_DATA_DIR})"
    "${sqlite_env[@]}" "$SERVER_BIN" demo >"$SQLITE_SERVER_LOG" 2>&1 ||
        { tail -n 40 "$SQLITE_SERVER_LOG" >&2; die "loyalty-server demo on SQLite failed"; }
    log "starting the embedded SQLite server on ${BENCH_SQLITE_LISTEN} (log: ${SQLITE_SERVER_LOG})"
    "${sqlite_env[@]}" "$SERVER_BIN" serve >>"$SQLITE_SERVER_LOG" 2>&1 &
    SQLITE_PID=$!
    wait_ready "$SQLITE_BASE_URL" "$SQLITE_PID" "$SQLITE_SERVER_LOG"
    [[ -s "$SQLITE_DATA_DIR/jwt-secret" ]] || die "no development JWT secret in ${SQLITE_DATA_DIR}"
fi

# JWT_SECRET reaches the bench through the environment (not argv).
if [[ "$MODE" == ws ]]; then
    log "running loyalty-ws-bench"
    "$TARGET_DIR/$BENCH_PROFILE/loyalty-ws-bench" --server "$BASE_URL" --server-pid "$SERVER_PID" "$@"
elif [[ "$MODE" == matrix ]]; then
    sqlite_args=()
    if $WITH_SQLITE; then
        sqlite_args=(--sqlite-server "$SQLITE_BASE_URL" --sqlite-server-pid "$SQLITE_PID")
        BENCH_SQLITE_JWT_SECRET="$(cat "$SQLITE_DATA_DIR/jwt-secret")"
        export BENCH_SQLITE_JWT_SECRET
    fi
    log "running loyalty-bench --matrix"
    "$BENCH_BIN" --matrix --server "$BASE_URL" --server-pid "$SERVER_PID" \
        --database-url "$DATABASE_URL" "${sqlite_args[@]}" "$@"
elif [[ "$MODE" == webhooks ]]; then
    log "running loyalty-bench --webhooks"
    "$BENCH_BIN" --webhooks --server "$BASE_URL" --database-url "$DATABASE_URL" "$@"
else
    log "running loyalty-bench"
    "$BENCH_BIN" --server "$BASE_URL" --database-url "$DATABASE_URL" "$@"
fi
