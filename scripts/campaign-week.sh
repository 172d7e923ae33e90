#!/usr/bin/env bash
# New findings per kind per day on a generated week of a busy
# internet-facing router's log (issue: "one finding per campaign"), with the
# release edge. The log is deterministic; see scripts/campaign-week.py.
#
#   scripts/campaign-week.sh [EDGE_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
edge="${1:-}"
if [ -z "$edge" ]; then
    cargo build --release --locked -p opmas-edge
    edge="$CARGO_TARGET_DIR/release/opmas-edge"
fi
log="${TMPDIR:-/tmp}/opmas-week.log"
python3 scripts/campaign-week.py generate "$log"
python3 scripts/campaign-week.py table "$log" "$edge"
