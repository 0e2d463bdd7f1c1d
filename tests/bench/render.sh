#!/usr/bin/env bash
# render.sh: rendering throughput on one core (issue 4).
#
# Usage: tests/bench/render.sh [N] [BUILDDIR]   (default N=500, BUILDDIR=build)
# Builds nothing of the project: compiles tests/bench/render_bench.c with cc against
# BUILDDIR/core/libmdgcore.a and the pkg-config flags of its dependencies, then runs it pinned
# to one CPU (taskset, when available).  Prints documents/s and pages/s for a one-page
# residence and a three-page koseki-full document, and the PDF sizes.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
n=${1:-500}
build=${2:-$top/build}
[[ -f "$build/core/libmdgcore.a" ]] || { echo "render.sh: build first (./scripts/build)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pkgs="jansson openssl libuv yaml-0.1 cairo-png pango fontconfig harfbuzz zlib libdeflate libqrencode"
cc -O2 -std=c11 -D_GNU_SOURCE -include "$build/mdg-autoconf.h" -I"$top/core" -I"$top/include" \
    $(pkg-config --cflags $pkgs) "$top/tests/bench/render_bench.c" "$build/core/libmdgcore.a" \
    $(pkg-config --libs $pkgs) -lpthread -lm -o "$tmp/render_bench"
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)
echo "render bench: $n documents per kind, one thread on one core ($(nproc) CPUs present)"
"${pin[@]}" "$tmp/render_bench" "$n"
