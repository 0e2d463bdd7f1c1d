#!/usr/bin/env bash
# soak.sh: madoguchid under a steady mixed load for a while; its memory and fds must not grow
# (issue 7).
#
# Usage: tests/bench/soak.sh [SECONDS] [BUILDDIR]   (default SECONDS=600, BUILDDIR=build)
#
# Lays out a demo appliance in a temporary directory as tests/bench/issuance.sh does
# (scripts/demo-city, scripts/dev-pki with 300 cards, sqlite-registry, durable audit, TLS on
# the store listener), with three ways to be refused built in: tax-income is closed every day
# (OUTSIDE_SERVICE_HOURS), koseki-attachment is not offered (UNSUPPORTED_CERTIFICATE), and the
# linkage of the last 30 cards is not imported (NO_RECORD).  Then:
#   1. calibration: 2000 requests of every type, closed loop over 32 connections: the rate it
#      sustains;
#   2. the soak: madoguchi-kiosk-sim, every type in turn (--certificate mix), open loop at
#      RATE (default 60 % of the calibrated rate) over 32 connections for SECONDS; beside it,
#      a request for another municipality (MUNICIPALITY_NOT_SERVED) every second, and every
#      5 s a handshake without a client certificate, GET /metrics and an admin GET /v1/status;
#   3. samples of the daemon's RSS (VmRSS of /proc/PID/status) and open fds (/proc/PID/fd):
#      idle before the load, after a warm-up of min(60 s, SECONDS/4) ("start"), every minute,
#      at the end of the load ("end") and idle again after it (an idle sample is the lowest fd
#      count over 5 s; when the two differ, the fds that differ are listed).
# Verdict: FAIL when RSS at the end exceeds the start by more than 10 % + 8 MiB, when the idle
# fd count after the load is above the one before it (connections to the registry file aside:
# sqlite-registry opens its pool of at most 8 on demand), when any 201 was wrong (kiosk-sim's
# mismatches) or the daemon died; else PASS.  Exit status 0 on PASS, 1 on FAIL.
# Client and daemon share the machine's cores.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-600}
build=${2:-$top/build}
for f in core/madoguchid ctl/madoguchictl tools/kiosk-sim/madoguchi-kiosk-sim; do
    [[ -x "$build/$f" ]] || { echo "soak.sh: build first (./scripts/build)" >&2; exit 1; }
done
((seconds >= 20)) || { echo "soak.sh: SECONDS must be at least 20" >&2; exit 2; }
warmup=$((seconds / 4 < 60 ? seconds / 4 : 60))
tmp=$(mktemp -d)
daemon=
helpers=()
cleanup() {
    for p in "${helpers[@]}"; do kill "$p" 2>/dev/null || true; done
    [[ -z "$daemon" ]] || { kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true; }
    rm -rf "$tmp"
}
trap cleanup EXIT
# shellcheck source=tests/bench/appliance.sh
. "$top/tests/bench/appliance.sh"

echo "soak: preparing a demo appliance in $tmp"
appliance_prepare "$tmp" 300
# dev-pki made cards for the first 300 linkage rows: leave the last 30 of them unlinked.
{ head -1 "$tmp/demo/linkage.csv"; sed -n '2,271p' "$tmp/demo/linkage.csv"; } >"$tmp/linkage-part.csv"
appliance_config "$tmp" "$build" <<'YAML'
    residence: {plugin: registry, always_open: true}
    residence-record: {plugin: registry, always_open: true}
    seal: {plugin: registry, always_open: true}
    tax-income: {plugin: registry, closed: ["01-01..12-31"]}
    koseki-full: {plugin: registry, always_open: true}
    koseki-individual: {plugin: registry, always_open: true}
YAML
appliance_start "$tmp" "$build"
"$build/ctl/madoguchictl" --socket "$tmp/admin.sock" linkage import "$tmp/linkage-part.csv"

sim=("$build/tools/kiosk-sim/madoguchi-kiosk-sim" --url "https://127.0.0.1:$store"
    --ca "$tmp/pki/store-ca.pem" --cert "$tmp/pki/center.pem" --key "$tmp/pki/center.key"
    --cards "$tmp/pki/cards" --residents "$tmp/demo/residents.jsonl" --json)
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
summary='"%d answered, %.0f/s, p50 %.1f ms, p99 %.1f ms, mismatches %d, transport errors %d\n   by code %s" % (d["completed"], d["rate_per_s"], d["latency_ms"]["p50"], d["latency_ms"]["p99"], d["mismatches"], d["transport_errors"], d["by_code"])'

# RSS in KiB and open fds of the daemon, "rss fds".
sample() {
    local rss fds
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$daemon/status")
    fds=$(find "/proc/$daemon/fd" -mindepth 1 -maxdepth 1 | wc -l)
    echo "$rss $fds"
}
# An idle sample: connections still closing (the last requests, a handshake in progress) are
# not a leak, so take the lowest fd count over 5 s and keep the fd targets of that sample.
idle_sample() {
    local best="" s i
    for i in 1 2 3 4 5; do
        s=$(sample)
        if [[ -z "$best" || ${s#* } -lt ${best#* } ]]; then
            best=$s
            fd_targets >"$tmp/fds-$1"
        fi
        ((i == 5)) || sleep 1
    done
    echo "$best"
}
# What each open fd of the daemon is (sockets and pipes by kind only).
fd_targets() {
    local f
    for f in "/proc/$daemon/fd/"*; do readlink "$f" || true; done |
        sed -E 's/^(socket|pipe|anon_inode):.*/\1/' | sort
}
show() { printf '   %-22s RSS %7.1f MiB   fds %4d\n' "$1" "$(echo "$2" | awk '{print $1 / 1024}')" "$(echo "$2" | awk '{print $2}')"; }

echo "1. calibration: 2000 requests of every type, closed loop over 32 connections"
"${sim[@]}" --certificate mix --count 2000 --connections 32 >"$tmp/calibration.json" || true
echo "   $(field "$summary" <"$tmp/calibration.json")"
capacity=$(field 'round(d["rate_per_s"])' <"$tmp/calibration.json")
rate=${RATE:-$((capacity * 6 / 10))}
((rate > 0)) || { echo "soak: the calibration ran at 0/s" >&2; exit 1; }

idle_before=$(idle_sample before)

echo "2. soak: every type in turn at $rate/s (60 % of $capacity/s) over 32 connections for ${seconds} s, warm-up ${warmup} s"
"${sim[@]}" --certificate mix --rate "$rate" --duration "$seconds" --connections 32 \
    --timeout 30 >"$tmp/soak.json" &
load=$!
helpers+=("$load")
# Another municipality, once a second: refused before any backend is asked.
"${sim[@]}" --certificate residence --municipality 999999 --rate 1 --duration "$seconds" \
    --timeout 30 >"$tmp/other-municipality.json" &
other=$!
helpers+=("$other")
# Every 5 s a handshake without a client certificate, the metrics and the admin status.
(
    while sleep 5; do
        openssl s_client -connect "127.0.0.1:$store" -servername localhost </dev/null >/dev/null 2>&1 || true
        curl -s -o /dev/null "http://127.0.0.1:$metrics/metrics" || true
        curl -s -o /dev/null --unix-socket "$tmp/admin.sock" http://localhost/v1/status || true
    done
) &
poker=$!
helpers+=("$poker")

echo "3. samples"
show "idle before the load" "$idle_before"
t0=$SECONDS
sleep "$warmup"
start=$(sample)
show "start (${warmup} s)" "$start"
next=$((warmup + 60))
end_at=$((seconds - 2))
while ((next < end_at)); do
    sleep $((next - (SECONDS - t0)))
    kill -0 "$daemon" 2>/dev/null || break
    show "${next} s" "$(sample)"
    next=$((next + 60))
done
now=$((SECONDS - t0))
((now >= end_at)) || sleep $((end_at - now))
alive=1
kill -0 "$daemon" 2>/dev/null || alive=0
end=$start
if ((alive)); then
    end=$(sample)
    show "end (${end_at} s)" "$end"
fi
wait "$load" || true
wait "$other" || true
kill "$poker" 2>/dev/null || true
wait "$poker" 2>/dev/null || true
helpers=()
idle_after=$idle_before
if ((alive)) && kill -0 "$daemon" 2>/dev/null; then
    idle_after=$(idle_sample after)
    show "idle after the load" "$idle_after"
    if ! cmp -s "$tmp/fds-before" "$tmp/fds-after"; then
        echo "   fds idle before (<) and after (>) the load, where they differ:"
        diff "$tmp/fds-before" "$tmp/fds-after" | grep '^[<>]' | sed 's/^/     /' || true
    fi
else
    alive=0
fi

echo "4. the load"
echo "   mix:                $(field "$summary" <"$tmp/soak.json")"
echo "   other municipality: $(field "$summary" <"$tmp/other-municipality.json")"
mismatches=$(field 'd["mismatches"]' <"$tmp/soak.json")

read -r rss0 _ <<<"$start"
read -r rss1 _ <<<"$end"
read -r _ fds0 <<<"$idle_before"
read -r _ fds1 <<<"$idle_after"
limit=$((rss0 + rss0 / 10 + 8192))
verdict=PASS
why=()
((alive)) || { verdict=FAIL; why+=("the daemon died"); }
((rss1 <= limit)) || { verdict=FAIL; why+=("RSS grew beyond 10 % + 8 MiB"); }
# sqlite-registry opens its pool of read-only connections on demand (at most 8): more of them
# after the load is not a leak.  Any other fd more is.
grown=0
if ((fds1 > fds0)); then
    grown=$(comm -13 "$tmp/fds-before" "$tmp/fds-after" | grep -vcF "$tmp/registry.sqlite" || true)
fi
((grown == 0)) || { verdict=FAIL; why+=("idle fds grew"); }
((mismatches == 0)) || { verdict=FAIL; why+=("$mismatches wrong 201s"); }
printf 'soak verdict: %s  RSS %.1f -> %.1f MiB (%+.1f %%, limit %.1f MiB), idle fds %d -> %d, %d s at %d/s%s\n' \
    "$verdict" "$(awk "BEGIN {print $rss0 / 1024}")" "$(awk "BEGIN {print $rss1 / 1024}")" \
    "$(awk "BEGIN {print 100 * ($rss1 - $rss0) / $rss0}")" "$(awk "BEGIN {print $limit / 1024}")" \
    "$fds0" "$fds1" "$seconds" "$rate" "${why[*]:+ (${why[*]})}"
[[ $verdict == PASS ]]
