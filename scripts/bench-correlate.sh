#!/usr/bin/env bash
# Correlation speed: the real release hub (embedded broker, SQLite) with
# RULES correlation rules (default 100, besides the shipped ones; every one
# looks at every brute force, one fires for each address two routers see),
# and 20 simulated routers sending RATE signed brute-force findings per
# second between them (default 10,000) for SECONDS (default 30), through
# scripts/load-findings.sh's driver (`opmas-load push`). The routers walk
# the same addresses at the same pace, so every address opens incidents and
# then grows them.
# Prints findings sent, stored and correlated per second while pushing,
# when the last was stored and correlated, incidents opened and their
# latency from the finding stored to the incident stored (p50/p99; goal
# p99 < 1 s), and the hub's RSS and CPU. The engine alone:
# cargo bench -p opmas-hub --bench correlate. The same rules under a burst
# from 20 real edges that parse logs on these cores:
# scripts/load-findings.sh findings --rules 100.
#
# usage: scripts/bench-correlate.sh [RULES] [RATE] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rules="${1:-100}"
rate="${2:-10000}"
seconds="${3:-30}"
exec scripts/load-findings.sh push --rules "$rules" --rate "$rate" --seconds "$seconds"
