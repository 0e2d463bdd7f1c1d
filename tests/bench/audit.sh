#!/usr/bin/env bash
# audit.sh: audit rows per second through the group-committing writer (core/audit.c).
#
# Usage: tests/bench/audit.sh [N] [IN_FLIGHT] [RESPONSE_BYTES]
#        (default N=20000, IN_FLIGHT=256, RESPONSE_BYTES=0 and then 100000)
# Builds nothing of the project: compiles tests/bench/audit_bench.c with cc -O2 together with
# core/audit.c, core/spool.c, core/errbuf.c, core/ossl.c, core/metrics.c and core/log.c and the
# pkg-config flags of their dependencies, then runs it on a fresh database in a directory under
# $MDG_BENCH_DIR (default /var/tmp: a real disk, since fsync on tmpfs costs nothing).
# Prints rows/s, commits and rows per commit (a commit with responses is two fsyncs: the
# response spool's segment, then the WAL), the writer's time per commit,
# p50/p99/max latency from audit_submit() to the callback, and audit_verify()'s speed.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
n=${1:-20000}
in_flight=${2:-256}
sizes=${3:-"0 100000"}
tmp=$(mktemp -d)
data=$(mktemp -d "${MDG_BENCH_DIR:-/var/tmp}/mdg-audit-bench.XXXXXX")
trap 'rm -rf "$tmp" "$data"' EXIT
pkgs="jansson openssl libuv sqlite3"
cc -O2 -std=c11 -D_GNU_SOURCE -I"$top/core" -I"$top/include" $(pkg-config --cflags $pkgs) \
    "$top/tests/bench/audit_bench.c" "$top/core/audit.c" "$top/core/spool.c" "$top/core/errbuf.c" \
    "$top/core/ossl.c" "$top/core/metrics.c" "$top/core/log.c" \
    $(pkg-config --libs $pkgs) -ldeflate -lpthread -o "$tmp/audit_bench"
echo "audit bench: $n rows, $in_flight in flight, database on $(stat -f -c %T "$data")" \
    "($(nproc) CPUs)"
for size in $sizes; do
    rm -rf "${data:?}"/*
    "$tmp/audit_bench" "$data" "$n" "$in_flight" "$size"
done
