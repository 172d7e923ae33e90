#!/usr/bin/env bash
# The hub's findings queries on a big PostgreSQL table (issue: "queries over
# the last day stay fast with 100 million rows"). Starts a throwaway server
# (scripts/postgres.sh), applies migrations/postgres, generates ROWS findings
# spread over 90 days from 1,000 routers (ids growing with time, as the hub
# stores them), then times, with EXPLAIN ANALYZE, the statements the hub runs
# for the last day: the findings page (newest first, by router, by kind,
# since a time), the day's count, the charts' hourly counts, and one chunk
# of retention's delete.
#
#   scripts/bench-pg-findings.sh [ROWS] [DIR]     # default 10,000,000 rows in a temp dir
#
# Size: about 550 bytes per row with its indexes, so 100 million rows need
# some 55 GB of disk; DIR picks where.
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-10000000}"
if [ $# -ge 2 ]; then
    dir=$2
    keep=1
else
    dir=$(mktemp -d /var/tmp/opmas-pg-bench.XXXXXX)
    keep=0
fi
mkdir -p "$dir"
# A temporary directory goes with the server; a named one stays (its data too).
trap 'scripts/postgres.sh stop "$dir" || true; [ "$keep" = 1 ] || rm -rf "$dir"' EXIT
server=$(scripts/postgres.sh start "$dir")
psql "$server" -qc "CREATE DATABASE bench"
db="${server%/postgres}/bench"
q() { psql "$db" -v ON_ERROR_STOP=1 -qAt "$@"; }
q -f migrations/postgres/0001_init.sql

now_ms=$(($(date +%s) * 1000))
span_ms=$((90 * 86400 * 1000))
echo "generating $rows findings over 90 days from 1,000 routers in $dir ..."
start=$(date +%s)
q -c "INSERT INTO devices (id, name, secret, created_ms) SELECT 'gw-' || g, 'gw-' || g, 'aa', 0 FROM generate_series(0, 999) g"
# The hourly counts are kept by a trigger row by row; for a bulk load they
# are filled once afterwards, as the trigger would have.
q -c "ALTER TABLE findings DISABLE TRIGGER USER"
chunk=5000000
done_rows=0
while [ "$done_rows" -lt "$rows" ]; do
    n=$((rows - done_rows < chunk ? rows - done_rows : chunk))
    q -c "INSERT INTO findings (device_id, epoch, seq, agent, kind, severity, src_ip, \"user\", count, first_ms, last_ms,
                                summary, evidence, received_ms, identity, open)
          SELECT 'gw-' || (g % 1000), 1, g, (ARRAY['security','network','wifi','system'])[1 + g % 4],
                 (ARRAY['ssh.bruteforce','net.port_scan','wifi.deauth_flood','sys.oom_kill','ssh.user_enum'])[1 + g % 5],
                 1 + g % 5, '198.51.' || (g % 250) || '.' || (g / 250 % 250), 'root', 5 + g % 20,
                 $now_ms - $span_ms + (g::bigint * $span_ms / $rows), $now_ms - $span_ms + (g::bigint * $span_ms / $rows) + 60000,
                 'generated finding ' || g, '[\"a log line\",\"another log line\"]',
                 $now_ms - $span_ms + (g::bigint * $span_ms / $rows) + 61000, 'identity-' || g, (g % 50 = 0)::int
            FROM generate_series($((done_rows + 1)), $((done_rows + n))) g"
    done_rows=$((done_rows + n))
    echo "  $done_rows rows, $(($(date +%s) - start)) s"
done
q -c "ALTER TABLE findings ENABLE TRIGGER USER"
q -c "INSERT INTO finding_hours (hour, device_id, agent, n)
        SELECT first_ms / 3600000, device_id, agent, COUNT(*) FROM findings GROUP BY 1, 2, 3"
q -c "INSERT INTO fleet_hours (hour, agent, n) SELECT hour, agent, SUM(n) FROM finding_hours GROUP BY 1, 2"
q -c "VACUUM ANALYZE"
echo "loaded in $(($(date +%s) - start)) s; database size $(q -c "SELECT pg_size_pretty(pg_database_size('bench'))")"

day_ago=$((now_ms - 86400 * 1000))
cols="id, device_id, epoch, seq, agent, kind, severity, src_ip, mac, iface, \"user\", service, count, first_ms, last_ms, summary, evidence, received_ms, open, host"
time_of() {
    local name=$1 sql=$2
    # The best of three runs (the first warms the cache), from EXPLAIN ANALYZE.
    local best=""
    for _ in 1 2 3; do
        local t
        t=$(q -c "EXPLAIN (ANALYZE, FORMAT JSON) $sql" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Execution Time"])')
        best=$(python3 -c "print(min(float('$t'), float('${best:-1e9}')))")
    done
    local plan
    plan=$(q -c "EXPLAIN $sql" | grep -oE "(Index|Bitmap|Seq)[A-Za-z ]* (Scan|Heap Scan)( Backward)?( using [a-z_]+)? on [a-z_]+" | head -2 | paste -sd ';')
    printf "%-44s %9.2f ms   %s\n" "$name" "$best" "$plan"
}
echo "== the last day, on $rows findings (best of 3, server side)"
time_of "findings page, newest 50" "SELECT $cols FROM findings WHERE 1 = 1 ORDER BY id DESC LIMIT 50"
time_of "one router's last day, newest 50" "SELECT $cols FROM findings WHERE device_id = 'gw-7' AND last_ms >= $day_ago ORDER BY id DESC LIMIT 50"
time_of "one kind's last day, newest 50" "SELECT $cols FROM findings WHERE kind = 'ssh.bruteforce' AND last_ms >= $day_ago ORDER BY id DESC LIMIT 50"
time_of "severity >= 4 in the last day, newest 50" "SELECT $cols FROM findings WHERE severity >= 4 AND last_ms >= $day_ago ORDER BY id DESC LIMIT 50"
time_of "findings stored in the last day (count)" "SELECT COUNT(*) FROM findings WHERE received_ms >= $day_ago"
time_of "a router's open findings (count)" "SELECT COUNT(*) FROM findings o WHERE o.device_id = 'gw-7' AND o.open = 1"
time_of "the fleet's hourly counts, 24 h" "SELECT hour, agent, n FROM fleet_hours WHERE hour >= $((day_ago / 3600000))"
time_of "oldest finding (retention)" "SELECT MIN(received_ms) FROM findings"
time_of "retention: one delete chunk (5,000 rows)" "SELECT id FROM findings WHERE received_ms >= $((now_ms - span_ms)) AND received_ms < $((now_ms - span_ms + 86400000)) LIMIT 5000"
