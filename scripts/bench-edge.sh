#!/usr/bin/env bash
# Instructions per line of the edge's hot path, counted with callgrind (a
# count, not a time: stable on a noisy machine), and lines/s on one core.
#
# Compares, on the same generated corpus (half RFC 3164 with <PRI>, half
# logread format, the mix of a busy router):
#   syslog_loose   syslog_loose::parse_message alone (the reference parser)
#   parse          the edge's parse_line
#   classify       parse_line + classify (line -> typed event)
#   pipeline       parse + classify + all agents + spool
# Each figure has the cost of loading the file (mode `read`) subtracted.
#
# usage: scripts/bench-edge.sh [LINES]        (default 200000)
set -euo pipefail
cd "$(dirname "$0")/.."
lines="${1:-200000}"
target="${CARGO_TARGET_DIR:-target}"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

cargo build --release --locked -p opmas-edge --example edge_lines >&2
bin="$target/release/examples/edge_lines"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin" gen "$lines" 5000 42 > "$work/corpus.log"
echo "corpus: $lines lines, $(wc -c < "$work/corpus.log") bytes"

ir() { # total instructions of one mode under callgrind
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.$1" "$bin" "$1" "$work/corpus.log" >/dev/null 2>&1
  awk '/^(summary|totals):/ { print $2; exit }' "$work/cg.$1"
}

base=$(ir read)
printf '%-14s %14s %14s\n' stage instr/line lines/s
for mode in syslog_loose parse classify pipeline; do
  total=$(ir "$mode")
  per_line=$(( (total - base) / lines ))
  speed=$("$bin" "$mode" "$work/corpus.log" 2>&1 >/dev/null | sed -E 's/.* ([0-9]+) lines\/s/\1/')
  printf '%-14s %14s %14s\n' "$mode" "$per_line" "$speed"
done
