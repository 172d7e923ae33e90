#!/usr/bin/env bash
# Load figures for the hub's ingest, with the real release binaries on
# loopback (issue: "nothing lost under load"). Prints, for each scenario,
# findings expected / stored / dropped / unaccounted, time to done,
# findings/s, probe latency, hub RSS and CPU; then hub RSS per connected
# router and the reconnect time after hub restarts.
#
#   scripts/load-findings.sh                 # all scenarios, full size
#   scripts/load-findings.sh findings --edges 4 --sources 2000
#   scripts/load-findings.sh reconnect --routers 500
#
# Full size: 20 edges x 5,000 sources (5 and 6 failures each), the first
# again on two hub replicas with mosquitto and PostgreSQL (needs Debian's
# mosquitto and postgresql), the same with the router's default 1 MiB
# spool, and 2,000 routers restarted 5 times.
# It exits non-zero if any finding is unaccounted.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# The hub and edge exactly as users build them (no test features) ...
cargo build --release --locked -p opmas-hub -p opmas-edge
# ... and the driver, which links the e2e harness.
cargo build --release --locked -p opmas-e2e --bin opmas-load
export OPMAS_BIN_DIR="$CARGO_TARGET_DIR/release"
load="$OPMAS_BIN_DIR/opmas-load"

if [ $# -gt 0 ]; then
    exec "$load" "$@"
fi
echo "### 20 edges x 5,000 sources x 5 failures (one finding each), 8 MiB spools"
"$load" findings --edges 20 --sources 5000 --failures 5
echo
echo "### 20 edges x 5,000 sources x 6 failures (each finding and its update), 8 MiB spools"
"$load" findings --edges 20 --sources 5000 --failures 6
echo
echo "### the same burst on two hub replicas, mosquitto and PostgreSQL (doc/scale-out.md)"
"$load" findings --edges 20 --sources 5000 --failures 5 --replicas
echo
echo "### 20 edges x 5,000 sources x 5 failures, the router's default 1 MiB spool (drops are counted)"
"$load" findings --edges 20 --sources 5000 --failures 5 --spool-bytes 1048576
echo
echo "### 2,000 routers, hub killed and restarted 5 times"
"$load" reconnect --routers 2000 --restarts 5
