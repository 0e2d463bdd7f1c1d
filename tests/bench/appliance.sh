# appliance.sh: the demo appliance the issuance and soak benchmarks run against; sourced by
# them, not run.
#
# appliance_prepare DIR CARDS   lays out scripts/demo-city (3000 residents) and scripts/dev-pki
#                               (CARDS cards) in DIR, with an empty DIR/data
# appliance_config DIR BUILD    writes DIR/madoguchi.yaml: TLS store listener (port 0, 4096
#                               connections), admin socket, metrics (port 0), no access log,
#                               sqlite-registry (max_in_flight 1024), a durable audit; the
#                               certificates section is read from standard input (YAML lines,
#                               indented four spaces)
# appliance_start DIR BUILD     starts madoguchid on it (log in DIR/daemon.log) and sets
#                               $daemon (its pid), $store and $metrics (their ports)
appliance_prepare() {
    "$top/scripts/demo-city" --out "$1" --residents 3000 >/dev/null
    "$top/scripts/dev-pki" --cards "$1/demo/linkage.csv" --card-count "$2" "$1/pki" >/dev/null
    mkdir -p "$1/data"
}

appliance_config() {
    {
        cat <<YAML
data_dir: $1/data
listeners:
  store:
    address: 127.0.0.1
    port: 0
    tls: {certificate: $1/pki/server.pem, key: $1/pki/server.key, client_ca: $1/pki/store-ca.pem}
    limits: {max_connections: 4096}
  admin: {unix: $1/admin.sock}
  metrics: {address: 127.0.0.1, port: 0}
log: {level: info, access: false}
plugin_dir: $2/plugins/.libs
plugins:
  registry:
    file: sqlite-registry.so
    max_in_flight: 1024
    config: {database: $1/registry.sqlite}
issuance:
  municipalities: ["141003"]
  municipality_name: 横浜市中区
  document_key: $1/pki/document.key
  card_proof: {ca: $1/pki/card-ca.pem}
  audit: {queue_limit: 65536}
  certificates:
YAML
        cat
    } >"$1/madoguchi.yaml"
}

appliance_start() {
    "$2/core/madoguchid" --config "$1/madoguchi.yaml" 2>"$1/daemon.log" &
    daemon=$!
    for _ in $(seq 100); do
        grep -q '"event":"started"' "$1/daemon.log" 2>/dev/null && break
        kill -0 "$daemon" 2>/dev/null || {
            cat "$1/daemon.log" >&2
            exit 1
        }
        sleep 0.1
    done
    store=$(appliance_port "$1" store)
    metrics=$(appliance_port "$1" metrics)
}

appliance_port() {
    grep "\"listener\":\"$2\"" "$1/daemon.log" | grep -o '"port":[0-9]*' | head -1 | cut -d: -f2
}
