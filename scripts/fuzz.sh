#!/usr/bin/env bash
# Fuzzes everything OPMAS parses from outside (fuzz/fuzz_targets: log lines,
# UCI, envelopes and message bodies, rules, playbooks, agent configuration
# layers, API query strings) with cargo-fuzz (libFuzzer) on the pinned
# nightly, each target for SECONDS (default 60), from seeds taken from the
# repository (real router logs, golden wire files, the shipped rules,
# playbooks and configuration) plus the corpus earlier runs grew.
# Prints, per target, runs, coverage (cov/ft) and corpus size; exits
# non-zero on a crash, a timeout (a hang) or a run past the memory limit,
# and leaves the input that did it under $OPMAS_FUZZ_DIR/artifacts.
#
# usage: scripts/fuzz.sh [SECONDS] [TARGET ...]
#   OPMAS_FUZZ_DIR   where corpora and artifacts live (default /var/tmp/opmas-fuzz)
#   OPMAS_NIGHTLY    the nightly (default: the one scripts/build-openwrt.sh pins)
#   OPMAS_FUZZ_TARGET_DIR  the instrumented build (default /var/tmp/opmas-fuzz-target,
#                    apart from the main one: other flags, another toolchain;
#                    dropped past 10 GiB)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
nightly="${OPMAS_NIGHTLY:-nightly-2026-05-20}"
work="${OPMAS_FUZZ_DIR:-/var/tmp/opmas-fuzz}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(log_line uci envelope rule playbook config_layer http_query)
fi

export CARGO_TARGET_DIR="${OPMAS_FUZZ_TARGET_DIR:-/var/tmp/opmas-fuzz-target}"
if [ -d "$CARGO_TARGET_DIR" ] && [ "$(du -s --block-size=1G "$CARGO_TARGET_DIR" | cut -f1)" -gt 10 ]; then
    rm -rf "$CARGO_TARGET_DIR"
fi
if ! rustup run "$nightly" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$nightly" --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.1
fi

# Seeds: one file per log line, UCI file, wire file, document.
seed() { # target file...
    local dir="$work/seeds/$1"
    shift
    mkdir -p "$dir"
    for f in "$@"; do cp "$f" "$dir/$(basename "$(dirname "$f")")-$(basename "$f")"; done
}
rm -rf "$work/seeds"
mkdir -p "$work/seeds/log_line"
n=0
for f in edge/tests/data/real-syslog/*.log edge/tests/data/syslog-frames.log; do
    while IFS= read -r line; do
        n=$((n + 1))
        printf '%s' "$line" >"$work/seeds/log_line/$n"
    done <"$f"
done
seed uci openwrt/files/opmas.config
mkdir -p "$work/seeds/envelope"
for c in status_online status_offline heartbeat finding_batch result ack config command; do
    # The target's first byte picks the channel, in the order of Channel::ALL.
    case "$c" in
        status_*) i=0 ;; heartbeat) i=1 ;; finding_batch) i=2 ;; result) i=3 ;;
        ack) i=4 ;; config) i=5 ;; command) i=6 ;;
    esac
    { printf '%b' "\\x$(printf %02x "$i")"; cat "shared/tests/golden/$c.bin"; } >"$work/seeds/envelope/$c"
done
seed rule config/rules/*.yaml
seed playbook config/playbooks/*.yaml
mkdir -p "$work/seeds/config_layer" "$work/seeds/http_query"
printf '%s' '{"enabled":true,"params":{"window_s":300,"threshold":5},"exclude_patterns":["*dropbear*"]}' >"$work/seeds/config_layer/1"
printf '%s' '{"local_block":true,"local_block_for":3600,"local_kinds":["ssh.bruteforce"]}' >"$work/seeds/config_layer/2"
printf '%s' 'device=gw-1&kind=ssh.bruteforce&severity=high&since=1h&limit=50' >"$work/seeds/http_query/1"
printf '%s' 'state=open&rule=wifi-attack-with-scan&min_severity=medium&before=MTIz&limit=10' >"$work/seeds/http_query/2"

cd fuzz
status=0
for t in "${targets[@]}"; do
    corpus="$work/corpus/$t"
    mkdir -p "$corpus" "$work/artifacts/$t"
    log="$work/$t.log"
    echo "== $t ($seconds s)"
    if ! cargo "+$nightly" fuzz run "$t" "$corpus" "$work/seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
        status=1
        echo "   FAILED: $(grep -m1 -E 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer' "$log" || tail -1 "$log")"
        echo "   input: $(find "$work/artifacts/$t" -type f | head -1); log: $log"
        continue
    fi
    runs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
    echo "   runs $runs; ${done_line:-$(tail -1 "$log")}"
done
exit $status
