#!/usr/bin/env bash
# http.sh: how fast is madoguchid's store listener next to nginx on the same hardware?
#
# Run by hand (not part of `make check`); prints the figures:
#   madoguchid: N req/s, N req per CPU-second    (medians of the rounds)
#   nginx: N req/s, N req per CPU-second
#   ratio (req/s): X.XX                  (madoguchid / nginx)
#   ratio (req per CPU-second): X.XX     (the server-bound comparison; see below)
#
# Both servers terminate TLS 1.3 with mutual TLS (client certificate required), the same
# ECDSA P-256 dev PKI (scripts/dev-pki), write an access log, and answer a tiny 200 (madoguchid
# GET /healthz, nginx `return 200`). Each server is pinned to one core (SERVER_CPU, default 0)
# and wrk to another (CLIENT_CPU, default 1) with taskset, so the figure compares one core of
# each. nginx gets keepalive_requests 10000, madoguchid's default max_requests_per_connection.
# wrk cannot present a client certificate by itself: wrk-client-cert.c, preloaded, adds one.
#
# Usage: tests/bench/http.sh [--nginx-only]
#   --nginx-only   measure only nginx (to check the setup before madoguchid is built)
# Environment:
#   MADOGUCHID   daemon binary (default: build/core/madoguchid under the repository root)
#   CONNS        wrk connections (default 64)      DURATION  wrk -d (default 10s)
#   MDG_PORT     madoguchid's port (default 18443) NGINX_PORT nginx's port (default 18444)
#   SERVER_CPU / CLIENT_CPU   cores for the servers / wrk (default 0 / 1)
#   ROUNDS       alternating rounds per server; each prints the median (default 3)
#   MDG_ACCESS_LOG  madoguchid's log.access (default true; nginx always logs)
#   KEEP_TMP=1   keep the temporary directory (configs, logs) for inspection
# Needs: cc, libssl-dev, openssl, wrk, nginx, taskset (scripts/install-deps installs them).
set -euo pipefail

prog=${0##*/}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
madoguchid=${MADOGUCHID:-$root/build/core/madoguchid}
conns=${CONNS:-64}
duration=${DURATION:-10s}
rounds=${ROUNDS:-3}
mdg_port=${MDG_PORT:-18443}
nginx_port=${NGINX_PORT:-18444}
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
nginx_only=0

die() {
    echo "$prog: $*" >&2
    exit 1
}

for arg in "$@"; do
    case "$arg" in
    --nginx-only) nginx_only=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "$prog: unknown argument '$arg' (see --help)" >&2
        exit 2
        ;;
    esac
done

for tool in cc openssl wrk nginx taskset; do
    command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-deps"
done
if ((!nginx_only)) && [[ ! -x "$madoguchid" ]]; then
    die "madoguchid not found at $madoguchid: build it first (autoreconf -i && mkdir -p build && cd build && ../configure && make), or set MADOGUCHID=/path/to/madoguchid"
fi
ncpu=$(nproc)
((server_cpu < ncpu && client_cpu < ncpu && server_cpu != client_cpu)) ||
    die "need two distinct cores (SERVER_CPU=$server_cpu, CLIENT_CPU=$client_cpu, this machine has $ncpu)"

# port_in_use PORT: succeeds when something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for port in "$mdg_port" "$nginx_port"; do
    ! port_in_use "$port" || die "port $port is already in use; choose others with MDG_PORT / NGINX_PORT"
done

tmp=$(mktemp -d /tmp/madoguchi-bench.XXXXXX)
pids=()
# cleanup: stop every server this script started, then remove the temporary directory.
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then
        echo "$prog: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- client-certificate shim and PKI -------------------------------------------------------
cc -O2 -shared -fPIC -o "$tmp/wrk-client-cert.so" "$root/tests/bench/wrk-client-cert.c" \
    -ldl -lssl || die "cannot build the wrk client-certificate shim (is libssl-dev installed?)"
"$root/scripts/dev-pki" "$tmp/pki" >/dev/null
pki=$tmp/pki

# wait_for NAME PID PORT LOG: wait up to 10 s until PORT accepts connections (or, for
# madoguchid, it logs that its store listener is up); fail with LOG's tail if PID dies.
wait_for() {
    local name=$1 pid=$2 port=$3 log=$4 i
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$prog: $name exited during startup; last lines of $log:" >&2
            tail -n 20 "$log" >&2 || true
            exit 1
        fi
        if grep -q '"event":"listening".*"listener":"store"' "$log" 2>/dev/null ||
            port_in_use "$port"; then
            return 0
        fi
        sleep 0.1
    done
    echo "$prog: $name is not listening on port $port after 10 s; last lines of $log:" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
}

# --- madoguchid ----------------------------------------------------------------------------
if ((!nginx_only)); then
    mkdir -p "$tmp/data"
    cat >"$tmp/madoguchi.yaml" <<YAML
data_dir: $tmp/data
listeners:
  store:
    address: 127.0.0.1
    port: $mdg_port
    tls: {certificate: $pki/server.pem, key: $pki/server.key, client_ca: $pki/store-ca.pem, min_version: "1.3"}
  admin:
    unix: $tmp/admin.sock
log: {level: info, access: ${MDG_ACCESS_LOG:-true}}
YAML
    taskset -c "$server_cpu" "$madoguchid" --config "$tmp/madoguchi.yaml" 2>"$tmp/madoguchid.log" &
    mdg_pid=$!
    pids+=("$mdg_pid")
    wait_for madoguchid "$mdg_pid" "$mdg_port" "$tmp/madoguchid.log"
fi

# --- nginx ---------------------------------------------------------------------------------
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
master_process off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log $tmp/nginx/access.log combined buffer=64k;
    client_body_temp_path $tmp/nginx/client_body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    default_type text/plain;
    keepalive_requests 10000;
    server {
        listen 127.0.0.1:$nginx_port ssl;
        ssl_certificate $pki/server.pem;
        ssl_certificate_key $pki/server.key;
        ssl_protocols TLSv1.3;
        ssl_verify_client on;
        ssl_client_certificate $pki/store-ca.pem;
        location / { return 200 "ok\n"; }
    }
}
NGINX
taskset -c "$server_cpu" nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" \
    2>"$tmp/nginx/stderr.log" &
nginx_pid=$!
pids+=("$nginx_pid")
wait_for nginx "$nginx_pid" "$nginx_port" "$tmp/nginx/error.log"

# --- measure -------------------------------------------------------------------------------
# bench NAME PID LOG URL: run wrk against URL with the client certificate; prints wrk's
# report and leaves the requests per second in $rate. Socket errors and non-2xx answers are
# reported; a server (PID) that died during the run (a crash, or Ctrl-C, which wrk survives
# and reports as a short run) ends the script.
# cpu_ticks PID: user + system CPU time the process has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
clk_tck=$(getconf CLK_TCK)

bench() {
    local name=$1 pid=$2 log=$3 url=$4 out ticks_before ticks_after requests
    echo "== $name: wrk -t1 -c$conns -d$duration $url"
    ticks_before=$(cpu_ticks "$pid")
    out=$(taskset -c "$client_cpu" env LD_PRELOAD="$tmp/wrk-client-cert.so" \
        WRK_CLIENT_CERT="$pki/center.pem" WRK_CLIENT_KEY="$pki/center.key" \
        wrk -t1 -c"$conns" -d"$duration" "$url") || die "wrk failed against $name"
    ticks_after=$(cpu_ticks "$pid")
    echo "$out"
    # wrk closes all its connections as it ends; give a crash on that path time to show.
    sleep 0.5
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "$prog: $name exited during the benchmark; last lines of $log:" >&2
        tail -n 20 "$log" >&2 || true
        exit 1
    fi
    rate=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    [[ -n "$rate" ]] || die "no Requests/sec in wrk's output for $name"
    # Requests per second of the server's own CPU time: what one fully busy core would serve.
    requests=$(awk '/ requests in / { print $1 }' <<<"$out")
    per_core=$(awk -v r="$requests" -v t=$((ticks_after - ticks_before)) -v hz="$clk_tck" \
        'BEGIN { printf "%.0f", (t > 0 ? r / (t / hz) : 0) }')
    echo "$name used $(awk -v t=$((ticks_after - ticks_before)) -v hz="$clk_tck" 'BEGIN { printf "%.2f", t / hz }') s of CPU: $per_core requests per CPU-second"
    if grep -qE '^ *(Socket errors|Non-2xx)' <<<"$out"; then
        echo "$prog: warning: $name had errors (see above); its figure is not comparable" >&2
    fi
}

# The machine is shared and its speed drifts by tens of percent within a minute, so the two
# servers are measured in alternating rounds and each gets the median of its rounds.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
mdg_rates=()
nginx_rates=()
mdg_cores=()
nginx_cores=()
for ((round = 1; round <= rounds; round++)); do
    echo "== round $round of $rounds"
    if ((!nginx_only)); then
        bench madoguchid "$mdg_pid" "$tmp/madoguchid.log" "https://127.0.0.1:$mdg_port/healthz"
        mdg_rates+=("$rate")
        mdg_cores+=("$per_core")
    fi
    bench nginx "$nginx_pid" "$tmp/nginx/error.log" "https://127.0.0.1:$nginx_port/"
    nginx_rates+=("$rate")
    nginx_cores+=("$per_core")
done

echo
if ((!nginx_only)); then
    echo "madoguchid rounds: ${mdg_rates[*]} req/s; ${mdg_cores[*]} req per CPU-second"
    mdg_rate=$(printf '%s\n' "${mdg_rates[@]}" | median)
    mdg_core=$(printf '%s\n' "${mdg_cores[@]}" | median)
fi
echo "nginx rounds: ${nginx_rates[*]} req/s; ${nginx_cores[*]} req per CPU-second"
nginx_rate=$(printf '%s\n' "${nginx_rates[@]}" | median)
nginx_core=$(printf '%s\n' "${nginx_cores[@]}" | median)
# On a two-core machine wrk's one core can saturate before a server's does, so raw req/s
# can measure the client; requests per CPU-second of the server measure the server.
if ((!nginx_only)); then
    printf 'madoguchid: %.0f req/s, %.0f req per CPU-second\n' "$mdg_rate" "$mdg_core"
fi
printf 'nginx: %.0f req/s, %.0f req per CPU-second\n' "$nginx_rate" "$nginx_core"
if ((!nginx_only)); then
    awk -v a="$mdg_rate" -v b="$nginx_rate" 'BEGIN { printf "ratio (req/s): %.2f\n", (b > 0 ? a / b : 0) }'
    awk -v a="$mdg_core" -v b="$nginx_core" 'BEGIN { printf "ratio (req per CPU-second): %.2f\n", (b > 0 ? a / b : 0) }'
fi
