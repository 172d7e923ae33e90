#!/usr/bin/env bash
# A throwaway PostgreSQL server on a free loopback port, for the tests and
# benchmarks (Debian's `postgresql` package; nothing of a system cluster is
# touched).
#
#   scripts/postgres.sh start DIR   initdb in DIR (if new), start, print the URL
#   scripts/postgres.sh stop DIR    stop it
#
# The URL (postgres://opmas@127.0.0.1:PORT/postgres, trust authentication on
# loopback only) is also written to DIR/url. PostgreSQL refuses to run as
# root, so under root the server runs as the `postgres` user (or `nobody`).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(realpath -m "$2")

bin=""
for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && bin=$d
done
if [ -z "$bin" ]; then
    echo "no PostgreSQL server found (apt-get install postgresql)" >&2
    exit 3
fi

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$owner" -- "$@"
    else
        "$@"
    fi
}

owner=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
    owner=postgres
    id "$owner" >/dev/null 2>&1 || owner=nobody
fi

case "$cmd" in
start)
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown "$owner" "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner "$bin/initdb" -D "$dir/data" -U opmas --auth=trust --no-sync -E UTF8 >"$dir/initdb.log"
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # Loopback only, no Unix socket in a system directory; fsync off: the
    # data is thrown away after the run, and the tests measure logic, not disks.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
        "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        >/dev/null
    url="postgres://opmas@127.0.0.1:$port/postgres"
    echo "$url" >"$dir/url"
    echo "$url"
    ;;
stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    ;;
*)
    usage
    ;;
esac
