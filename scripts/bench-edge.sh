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

# Whole processes, side by side on the same file: `opmas-edge replay FILE
# --json` (read, parse, classify, all agents, findings written as JSON)
# against the small program anyone would write with syslog_loose
# (examples/bare_parser.rs: read line by line, parse each). Best of three
# wall-clock runs each, one after the other; peak RSS from GNU time.
cargo build --release --locked -p opmas-edge --bin opmas-edge --example bare_parser >&2
edge="$target/release/opmas-edge"
bare="$target/release/examples/bare_parser"
best() { # best wall time in ms of three runs of "$@"
  local best=""
  for _ in 1 2 3; do
    local t0 t1
    t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N)
    local ms=$(( (t1 - t0) / 1000000 ))
    if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
  done
  echo "$best"
}
peak_kib() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
echo
printf '%-10s %-26s %10s %12s %10s\n' lines process ms lines/s "peak KiB"
for n in 100000 "$(( lines > 1000000 ? lines : 1000000 ))"; do
  "$bin" gen "$n" 5000 42 > "$work/process.log"
  b=$(best "$bare" "$work/process.log")
  e=$(best "$edge" replay "$work/process.log" --json)
  printf '%-10s %-26s %10s %12s %10s\n' "$n" "bare syslog_loose" "$b" "$(( n * 1000 / (b > 0 ? b : 1) ))" "$(peak_kib "$bare" "$work/process.log")"
  printf '%-10s %-26s %10s %12s %10s\n' "$n" "opmas-edge replay --json" "$e" "$(( n * 1000 / (e > 0 ? e : 1) ))" "$(peak_kib "$edge" replay "$work/process.log" --json)"
  awk -v b="$b" -v e="$e" -v n="$n" 'BEGIN { printf "%-10s edge / bare speed: %.2f\n", n, b / (e > 0 ? e : 1) }'
done
