#!/usr/bin/env bash
# issuance.sh: issuances per second and latency of POST /v1/issuances (issue 5).
#
# Usage: tests/bench/issuance.sh [COUNT] [BUILDDIR]   (default COUNT=20000, BUILDDIR=build)
#
# Lays out a demo appliance in a temporary directory (scripts/demo-city, scripts/dev-pki with
# 300 cards), starts madoguchid with the sqlite-registry plugin, every type open, a durable
# audit (WAL, synchronous=FULL) and TLS on the store listener, loads the linkage table, then
# drives it with madoguchi-kiosk-sim (one-page residence certificates, TLS keep-alive):
#   1. closed loop, COUNT requests over 64 connections: the highest rate it sustains;
#   2. open loop at 80 % of that rate for 15 s over the same 64 connections (opened before the
#      clock starts): p50 and p99 latency from each request's due time, so a queue cannot hide,
#      and the p99 of each second (a stall shows as one high second, a queue as a run of them);
# and prints the audit's rows, commits and rows per commit from the daemon's metrics (a commit
# that stored responses is two fsyncs: the response spool's segment, then the WAL).
# Client and daemon share the machine's cores; the figures are for the pair.
# OPEN_CONNECTIONS=N changes the open loop's connections (default 64); RATE=N runs the open
# loop at N/s instead of 80 % of the closed loop's rate (to draw a latency curve);
# SECONDS_OPEN=N runs it for N s instead of 15 (a sustained load).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
count=${1:-20000}
build=${2:-$top/build}
for f in core/madoguchid ctl/madoguchictl tools/kiosk-sim/madoguchi-kiosk-sim; do
    [[ -x "$build/$f" ]] || { echo "issuance.sh: build first (./scripts/build)" >&2; exit 1; }
done
tmp=$(mktemp -d)
daemon=
cleanup() {
    [[ -z "$daemon" ]] || { kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true; }
    rm -rf "$tmp"
}
trap cleanup EXIT
# shellcheck source=tests/bench/appliance.sh
. "$top/tests/bench/appliance.sh"

echo "issuance bench: preparing a demo appliance in $tmp"
appliance_prepare "$tmp" 300
appliance_config "$tmp" "$build" <<'YAML'
    residence: {plugin: registry, always_open: true}
YAML
appliance_start "$tmp" "$build"
"$build/ctl/madoguchictl" --socket "$tmp/admin.sock" linkage import "$tmp/demo/linkage.csv"

sim=("$build/tools/kiosk-sim/madoguchi-kiosk-sim" --url "https://127.0.0.1:$store"
    --ca "$tmp/pki/store-ca.pem" --cert "$tmp/pki/center.pem" --key "$tmp/pki/center.key"
    --cards "$tmp/pki/cards" --residents "$tmp/demo/residents.jsonl" --certificate residence
    --json)
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

echo "1. closed loop: $count requests over 64 connections"
"${sim[@]}" --count "$count" --connections 64 >"$tmp/closed.json" || true
rate=$(field 'round(d["rate_per_s"])' <"$tmp/closed.json")
field '"   %d answered (%s), %.0f issuances/s, p50 %.1f ms, p99 %.1f ms, mismatches %d" % (d["completed"], d["by_status"], d["rate_per_s"], d["latency_ms"]["p50"], d["latency_ms"]["p99"], d["mismatches"])' <"$tmp/closed.json"

target=${RATE:-$((rate * 8 / 10))}
open_s=${SECONDS_OPEN:-15}
if [[ -n "${RATE:-}" ]]; then
    echo "2. open loop at RATE=$target/s for $open_s s"
else
    echo "2. open loop at 80 % of that: $target/s for $open_s s"
fi
curl -s "http://127.0.0.1:$metrics/metrics" >"$tmp/before.prom"
"${sim[@]}" --rate "$target" --duration "$open_s" --connections "${OPEN_CONNECTIONS:-64}" >"$tmp/open.json" || true
curl -s "http://127.0.0.1:$metrics/metrics" >"$tmp/after.prom"
field '"   %d answered (%s), %.0f/s, p50 %.1f ms, p99 %.1f ms, max %.1f ms, mismatches %d" % (d["completed"], d["by_status"], d["rate_per_s"], d["latency_ms"]["p50"], d["latency_ms"]["p99"], d["latency_ms"]["max"], d["mismatches"])' <"$tmp/open.json"
field '"   p99 of each second (ms): " + " ".join("%.0f" % x for x in d["p99_by_second_ms"])' <"$tmp/open.json"
# The daemon's own view of the same requests (arrival to answer, without the client's queues).
python3 - "$tmp/before.prom" "$tmp/after.prom" <<'PY'
import sys
def buckets(path):
    b = {}
    for line in open(path):
        if line.startswith("madoguchi_issuance_duration_seconds_bucket{certificate=\"residence\""):
            k, v = line.rsplit(" ", 1)
            b[k.split('le="')[1].split('"')[0]] = float(v)
    return b
before, after = buckets(sys.argv[1]), buckets(sys.argv[2])
d = {k: after[k] - before.get(k, 0) for k in after}
total = d.get("+Inf", 0)
if total:
    print("   daemon side: %.2f %% answered within 25 ms, %.2f %% within 50 ms, %.2f %% within 100 ms"
          % tuple(100 * d.get(k, 0) / total for k in ("0.025", "0.05", "0.1")))
PY

echo "3. audit and card cache"
curl -s "http://127.0.0.1:$metrics/metrics" | python3 -c '
import sys
m = {}
for line in sys.stdin:
    if line.startswith("#") or not line.strip():
        continue
    k, v = line.rsplit(" ", 1)
    m[k] = float(v)
rows = m.get("madoguchi_audit_batch_rows_sum", 0)
commits = m.get("madoguchi_audit_batch_rows_count", 0)
secs = m.get("madoguchi_audit_commit_duration_seconds_sum", 0)
print("   %d rows in %d commits: %.1f rows per commit, %.2f ms per commit"
      % (rows, commits, rows / commits if commits else 0,
         1000 * secs / commits if commits else 0))
slow = [(k, v) for k, v in m.items()
        if k.startswith("madoguchi_audit_commit_duration_seconds_bucket")]
le = lambda k: float(k.split("le=\"")[1].split("\"")[0].replace("+Inf", "inf"))
slow.sort(key=lambda kv: le(kv[0]))
prev = 0
shown = []
for k, v in slow:
    if le(k) > 0.01 and v > prev:
        shown.append("%d up to %s s" % (v - prev, k.split("le=\"")[1].split("\"")[0]))
    prev = v
print("   commits over 10 ms: %s" % (", ".join(shown) or "none"))
hits = m.get("madoguchi_card_cache_lookups_total{result=\"hit\"}", 0)
misses = m.get("madoguchi_card_cache_lookups_total{result=\"miss\"}", 0)
print("   card certificates: %d cache hits, %d misses (parsed and chain-checked)"
      % (hits, misses))
'
"$build/ctl/madoguchictl" audit verify --db "$tmp/data/audit.sqlite" --public-key "$tmp/pki/document.pub"
