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
# (examples/bare_parser.rs: read line by line, parse each). Runs alternate
# (bare, edge, bare, edge...) so that both meet the same machine; the best
# wall time of five each, with that run's CPU time (user + system: the
# edge spreads its work over four threads, so its CPU time shows what it
# costs a machine with fewer cores) and peak RSS, from GNU time.
cargo build --release --locked -p opmas-edge --bin opmas-edge --example bare_parser >&2
edge="$target/release/opmas-edge"
bare="$target/release/examples/bare_parser"
run() { # "wall_ms cpu_ms peak_kib" of one run of "$@"
  /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" >/dev/null 2>&1
  awk '{ printf "%d %d %d\n", $1 * 1000, ($2 + $3) * 1000, $4 }' "$work/time"
}
echo
printf '%-10s %-26s %9s %9s %12s %10s\n' lines process "wall ms" "cpu ms" lines/s "peak KiB"
for n in 100000 "$(( lines > 1000000 ? lines : 1000000 ))"; do
  "$bin" gen "$n" 5000 42 > "$work/process.log"
  b=""; e=""
  for _ in 1 2 3 4 5; do
    r=$(run "$bare" "$work/process.log"); if [ -z "$b" ] || [ "${r%% *}" -lt "${b%% *}" ]; then b=$r; fi
    r=$(run "$edge" replay "$work/process.log" --json); if [ -z "$e" ] || [ "${r%% *}" -lt "${e%% *}" ]; then e=$r; fi
  done
  for row in "bare syslog_loose|$b" "opmas-edge replay --json|$e"; do
    read -r ms cpu kib <<< "${row#*|}"
    printf '%-10s %-26s %9s %9s %12s %10s\n' "$n" "${row%%|*}" "$ms" "$cpu" "$(( n * 1000 / (ms > 0 ? ms : 1) ))" "$kib"
  done
  awk -v b="${b%% *}" -v e="${e%% *}" -v n="$n" 'BEGIN { printf "%-10s edge / bare speed: %.2f\n", n, b / (e > 0 ? e : 1) }'
done
