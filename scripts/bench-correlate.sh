#!/usr/bin/env bash
# Correlation speed: the real release hub with RULES correlation rules
# (default 100, besides the shipped five; every one looks at every brute
# force, one fires for each address two routers see), and a burst of
# brute-force findings from EDGES real edges x SOURCES addresses (the same
# addresses on every edge), through scripts/load-findings.sh's driver.
# Prints findings stored per second, findings correlated per second (the
# correlator's cursor, sampled), incidents opened and their latency from
# the finding stored to the incident stored (p50/p99; goal p99 < 1 s), and
# the hub's RSS. The engine alone: cargo bench -p opmas-hub --bench correlate.
#
# usage: scripts/bench-correlate.sh [RULES] [EDGES] [SOURCES]
set -euo pipefail
cd "$(dirname "$0")/.."
rules="${1:-100}"
edges="${2:-20}"
sources="${3:-5000}"
exec scripts/load-findings.sh findings --rules "$rules" --edges "$edges" --sources "$sources" --failures 5
