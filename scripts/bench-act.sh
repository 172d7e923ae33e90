#!/usr/bin/env bash
# Fleet-wide response time: ROUTERS real edges (default 100), each in a
# network namespace with its own nftables, connected to a real hub; an
# `auto` playbook blocks a brute-forcing address on all of them. Prints,
# per round and as p50/p99/max, the time from the finding stored to the last
# router's answer (sent once its nft transaction ran). Needs root,
# iproute2, nftables and dropbear-bin (as .ci/run installs).
#
# usage: scripts/bench-act.sh [ROUTERS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export ROUTERS="${1:-100}" ROUNDS="${2:-20}"
cargo build --release --locked --workspace --bins
export OPMAS_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/release" OPMAS_REQUIRE_NETNS=1
cargo test --release --locked -p opmas-e2e --test act -- --ignored fleet_wide_block_latency --nocapture 2>&1 \
    | grep -E "routers online|round|fleet-wide block|panicked|test result"
