#!/usr/bin/env bash
# fleet.sh: propagation of a ministry suspension to a fleet of appliances (issue 6).
#
# Usage: tests/bench/fleet.sh [BUILDDIR]   (default build)
# Environment: FLEET_N appliances (default 50), FLEET_POLL seconds between polls (default 5).
# Needs nginx (scripts/install-deps installs nginx-light); everything runs on loopback.
# What it measures and prints: tests/bench/fleet.py.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$top/build}
for f in core/madoguchid ctl/madoguchictl plugins/.libs/sqlite-registry.so; do
    [[ -e "$build/$f" ]] || { echo "fleet.sh: build first (./scripts/build)" >&2; exit 1; }
done
command -v nginx >/dev/null || { echo "fleet.sh: nginx is missing (scripts/install-deps)" >&2; exit 1; }
MDG_SRCDIR=$top MDG_BUILDDIR=$build exec python3 "$top/tests/bench/fleet.py"
