#!/usr/bin/env bash
# Peak resident memory of `opmas-edge replay` as the input grows: the edge's
# tables are bounded, so a million lines from a hundred thousand distinct
# source addresses must peak no higher than a hundred thousand lines do.
#
# usage: scripts/rss-edge.sh [EDGE_BINARY [RUNNER...]]
#   e.g. scripts/rss-edge.sh dist/mips-unknown-linux-musl/opmas-edge qemu-mips-static
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -p opmas-edge --example edge_lines >&2
gen="$target/release/examples/edge_lines"
if [ $# -ge 1 ]; then
  edge="$1"; shift
else
  cargo build --profile release-edge --locked -p opmas-edge >&2
  edge="$target/release-edge/opmas-edge"
fi
runner=("$@")
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

printf '%-44s %12s %12s\n' input lines/s peak_rss_kib
for spec in "100000 100000" "1000000 100000"; do
  set -- $spec
  "$gen" gen "$1" "$2" 7 > "$work/in.log"
  /usr/bin/time -f '%M' -o "$work/rss" ${runner[@]+"${runner[@]}"} "$edge" replay "$work/in.log" > /dev/null 2> "$work/err" || {
    cat "$work/err" >&2; exit 1; }
  speed=$(grep -oE '[0-9]+ lines/s' "$work/err" | grep -oE '[0-9]+' || echo "?")
  printf '%-44s %12s %12s\n' "$1 lines, $2 distinct source IPs" "$speed" "$(tail -n1 "$work/rss")"
done
