#!/usr/bin/env bash
# Counts what each hot operation sends to PostgreSQL, exactly (DEVELOPERS.md "Statements per
# posting"): a throwaway database with log_statement = 'all', the real server with every
# background job off, two tiers, one warm-up posting, then one request per operation and the
# statements the PostgreSQL log shows for that database in between. Needs to read the server
# log (PG_LOG, default Debian's) and a built server (SERVER, default target/debug).
set -euo pipefail
cd "$(dirname "$0")/.."
DB=${DB:-loyalty_statements}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
PG_LOG=${PG_LOG:-$(ls /var/log/postgresql/postgresql-*-main.log | head -1)}
SERVER=${SERVER:-target/debug/loyalty-server}
LISTEN=${LISTEN:-127.0.0.1:18099}
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" -qc "CREATE DATABASE $DB"
export DATABASE_URL="$PG/$DB" REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379} REDIS_PREFIX="stmt$$:" \
    JWT_SECRET=statements-count-secret-0123456789abcdef0123456789 LISTEN_ADDR=$LISTEN \
    EXPIRY_INTERVAL_SECS=0 REPORT_FOLD_INTERVAL_SECS=0 LEADERBOARD_CATCH_UP_INTERVAL_SECS=0 \
    WEBHOOK_POLL_INTERVAL_MS=0 WORK_POLL_INTERVAL_MS=0 RATE_LIMIT_IP_PER_SEC=100000 \
    RATE_LIMIT_SUBJECT_PER_SEC=100000 RUST_LOG=warn
"$SERVER" migrate >/dev/null
"$SERVER" demo >/dev/null
psql "$PG/postgres" -qc "ALTER DATABASE $DB SET log_statement = 'all'"
"$SERVER" serve & SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null; psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null' EXIT
for _ in $(seq 100); do curl -sf "http://$LISTEN/readyz" >/dev/null && break; sleep 0.2; done
token() { "$SERVER" token --program demo --role "$1" --sub "$2" --ttl-secs 3600; }
ADMIN=$(token admin stmt-admin); SERVICE=$(token service stmt-pos); MEMBER=$(token member stmt-m1)
gql() { curl -sf "http://$LISTEN/graphql" -H "authorization: Bearer $1" -H 'content-type: application/json' -d "$2" >/dev/null; }
lines() { grep -cE "@$DB LOG:  (execute|statement:)" "$PG_LOG" || true; }
count() { # label token body
    local before after
    sleep 0.3; before=$(lines)
    gql "$2" "$3"
    sleep 0.3; after=$(lines)
    printf '| %s | %s |\n' "$1" "$((after - before))"
}
gql "$ADMIN" '{"query":"mutation { a: upsertTier(input: {name: \"Silver\", minQualification: \"100\", multiplier: \"1.25\"}) { id } b: upsertTier(input: {name: \"Gold\", minQualification: \"1000\", multiplier: \"1.5\"}) { id } }"}' || true
gql "$MEMBER" '{"query":"mutation { register(input: {displayName: \"Stmt\"}) { created } }"}'
gql "$SERVICE" '{"query":"mutation { recordPurchase(input: {memberExternalId: \"stmt-m1\", orderId: \"warm\", amount: \"10\", idempotencyKey: \"warm\"}) { balance } }"}'
echo "| operation (demo program) | statements |"
echo "|---|---:|"
count 'recordAction daily_login (pays)' "$MEMBER" '{"query":"mutation { recordAction(input: {action: \"daily_login\", idempotencyKey: \"d1\"}) { awarded } }"}'
count 'daily_login again (ALREADY_CLAIMED)' "$MEMBER" '{"query":"mutation { recordAction(input: {action: \"daily_login\", idempotencyKey: \"d2\"}) { awarded } }"}'
count 'recordAction product_view (pays)' "$MEMBER" '{"query":"mutation { recordAction(input: {action: \"product_view\", objectId: \"sku-1\", idempotencyKey: \"v1\"}) { awarded } }"}'
count 'recordPurchase without lines' "$SERVICE" '{"query":"mutation { recordPurchase(input: {memberExternalId: \"stmt-m1\", orderId: \"o1\", amount: \"20\", idempotencyKey: \"o1\"}) { balance } }"}'
count 'me { balance }' "$MEMBER" '{"query":"{ me { balance } }"}'
