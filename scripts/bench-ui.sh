#!/usr/bin/env bash
# Web UI and API response times on a large fleet: DEVICES routers (default
# 1,000) and FINDINGS findings (default 1,000,000) stored through the
# hub's own store (hub/examples/fill_ui.rs), then the release hub serving
# them; every page is fetched five times, signed in, and the median and
# worst times printed. The target: no page over 300 ms.
#
# usage: scripts/bench-ui.sh [DEVICES] [FINDINGS]
set -euo pipefail
cd "$(dirname "$0")/.."
devices="${1:-1000}"
findings="${2:-1000000}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -p opmas-hub --bin opmas-hub --example fill_ui >&2
work="$(mktemp -d)"
hub_pid=""
cleanup() { [ -z "$hub_pid" ] || kill "$hub_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
t0=$(date +%s)
"$target/release/examples/fill_ui" "$work/data" "$devices" "$findings"
echo "filled $devices devices and $findings findings in $(( $(date +%s) - t0 )) s; database $(du -m "$work/data/opmas.db" | cut -f1) MiB"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mqtt=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$target/release/opmas-hub" serve --data-dir "$work/data" --http-listen "127.0.0.1:$port" --mqtt-listen "127.0.0.1:$mqtt" \
  > "$work/hub.log" 2>&1 &
hub_pid=$!
base="http://127.0.0.1:$port"
up=""
for _ in $(seq 300); do curl -sf "$base/api/v1/health" >/dev/null && { up=1; break; }; sleep 0.1; done
[ -n "$up" ] || { echo "the hub did not start in 30 s:" >&2; cat "$work/hub.log" >&2; exit 1; }

# Sign in as admin: a user with a known password, then the form.
printf 'bench password 1234\n' | "$target/release/opmas-hub" user add bench --role admin --password-stdin \
  --data-dir "$work/data" >/dev/null 2>&1
jar="$work/jar"
csrf=$(curl -s -c "$jar" "$base/signin" | grep -o 'name="csrf" value="[^"]*"' | head -1 | sed 's/.*value="//;s/"$//')
curl -s -b "$jar" -c "$jar" -o /dev/null "$base/signin" --data-urlencode name=bench \
  --data-urlencode "password=bench password 1234" --data-urlencode "csrf=$csrf" --data-urlencode next=/
token=$(cat "$work/data/admin.token")
last=$(curl -s -H "Authorization: Bearer $token" "$base/api/v1/findings?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["findings"][0]["id"])')
deep=$(curl -s -H "Authorization: Bearer $token" "$base/api/v1/findings?limit=1000&cursor=f$(printf %x $(( last / 2 )))" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_cursor"])')

printf '%-58s %8s %8s %6s %9s\n' page "median" "worst" status bytes
worst_all=0
page() { # PATH [token]: five fetches
  local path="$1" auth=()
  [ "${2:-}" = token ] && auth=(-H "Authorization: Bearer $token")
  local times=() status size
  for _ in 1 2 3 4 5; do
    read -r status t size < <(curl -s -b "$jar" "${auth[@]}" -o /dev/null -w '%{http_code} %{time_total} %{size_download}\n' "$base$path")
    times+=("$(awk -v t="$t" 'BEGIN { printf "%d", t * 1000 }')")
  done
  local sorted; sorted=$(printf '%s\n' "${times[@]}" | sort -n)
  local median worst
  median=$(echo "$sorted" | sed -n 3p); worst=$(echo "$sorted" | tail -1)
  [ "$worst" -gt "$worst_all" ] && worst_all=$worst
  printf '%-58s %6s ms %6s ms %6s %9s\n' "$path" "$median" "$worst" "$status" "$size"
}
page "/"
page "/?sort=findings&dir=desc"
page "/?range=7d&q=gw-09"
page "/devices/gw-0500"
page "/devices/gw-0500?range=7d"
page "/findings"
page "/findings?device=gw-0500"
page "/findings?agent=wifi"
page "/findings?kind=sys.oom_kill"
page "/findings?severity=critical"
page "/findings?severity=critical&agent=system&open=true"
page "/findings?since=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M)"
page "/findings?cursor=$deep"
page "/findings/$(( last / 3 ))"
page "/admin/users"
page "/admin/tokens"
page "/api/v1/findings?limit=100" token
page "/api/v1/findings?severity=critical&limit=100" token
page "/api/v1/devices" token
page "/api/v1/devices/gw-0500" token
page "/metrics" token
echo "worst of all: $worst_all ms (target: 300 ms)"
