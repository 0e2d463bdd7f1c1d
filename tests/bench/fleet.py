#!/usr/bin/env python3
"""fleet.py: how fast a ministry suspension reaches a fleet of appliances (issue 6).

Lays out one demo city and dev PKI, starts FLEET_N appliances (default 50: small configs,
distinct ports and data dirs, worker_threads 2) that poll one feed served over HTTPS on
loopback by nginx (Debian's, static file with ETag), each with two sqlite-registry instances:
`registry` serves residence, `other` serves seal.

1. Publish a list that suspends the sqlite-registry plugin for residence (atomic rename of the
   feed file) and probe every appliance with real, card-signed residence issuances until each
   answers 503 SERVICE_SUSPENDED (source ministry); print p50 / p100 of the time from
   publishing to the first such answer, the probe sweep time (the measurement's resolution),
   and check that seal (outside the list's scope) still issues everywhere.
2. On one appliance, `madoguchictl suspend other`: time until the command returns and whether
   the very first seal request after it already answers 503 (enforced before the call
   returns).
3. RSS of every appliance (VmRSS), p50 and max.

Targets (issue 6): poll within poll_interval + 1 s for the whole fleet; push enforced before
the admin call returns.  FLEET_N and FLEET_POLL (seconds, default 5) change the set-up.
"""

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SRC = os.environ["MDG_SRCDIR"]
BUILD = os.environ["MDG_BUILDDIR"]
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
sys.dont_write_bytecode = True
import issuance_client as ic  # noqa: E402

N = int(os.environ.get("FLEET_N", "50"))
POLL = int(os.environ.get("FLEET_POLL", "5"))
DAEMON = os.path.join(BUILD, "core", "madoguchid")
CTL = os.path.join(BUILD, "ctl", "madoguchictl")
PLUGINS = os.path.join(BUILD, "plugins", ".libs")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300, **kw)


def sign_list(tmp, sequence, suspensions):
    now = time.time()
    doc = {"type": "madoguchi-suspension-list", "sequence": sequence,
           "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
           "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 86400)),
           "suspensions": suspensions}
    path = os.path.join(tmp, "list-%d.json" % sequence)
    with open(path, "w") as f:
        json.dump(doc, f)
    out = run([os.path.join(SRC, "scripts", "ministry-sign"), "--key",
               os.path.join(tmp, "pki", "ministry", "fleet.key"), path]).stdout
    return out.encode()


def publish(root, data):
    """Atomically replaces the feed's file: nginx serves either the old or the new list."""
    part = os.path.join(root, ".list.part")
    with open(part, "wb") as f:
        f.write(data)
    os.rename(part, os.path.join(root, "list"))


def start_nginx(tmp, port):
    root = os.path.join(tmp, "feed")
    os.makedirs(root)
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""worker_processes 1;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/nginx-error.log;
daemon off;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:%(port)d ssl;
        ssl_certificate %(tmp)s/pki/server.pem;
        ssl_certificate_key %(tmp)s/pki/server.key;
        root %(root)s;
        location = /list { default_type application/json; etag on; }
    }
}
""" % {"tmp": tmp, "port": port, "root": root})
    p = subprocess.Popen(["nginx", "-c", conf, "-p", tmp], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    return p, root


class Appliance:
    def __init__(self, tmp, i, feed_port):
        self.dir = os.path.join(tmp, "a%02d" % i)
        os.makedirs(self.dir)
        self.sock = os.path.join(self.dir, "admin.sock")
        self.config = os.path.join(self.dir, "madoguchi.yaml")
        pki = os.path.join(tmp, "pki")
        with open(self.config, "w") as f:
            f.write("""data_dir: %(d)s/data
worker_threads: 2
listeners:
  store:
    address: 127.0.0.1
    port: 0
    tls: {certificate: %(pki)s/server.pem, key: %(pki)s/server.key, client_ca: %(pki)s/store-ca.pem}
  admin: {unix: %(d)s/admin.sock}
log: {level: info, access: false}
plugin_dir: %(plugins)s
plugins:
  registry: {file: sqlite-registry.so, config: {database: %(tmp)s/registry.sqlite}}
  other: {file: sqlite-registry.so, config: {database: %(tmp)s/registry.sqlite}}
issuance:
  municipalities: ["141003"]
  municipality_name: 横浜市中区
  document_key: %(pki)s/document.key
  card_proof: {ca: %(pki)s/card-ca.pem}
  certificates:
    residence: {plugin: registry, always_open: true}
    seal: {plugin: other, always_open: true}
ministry:
  keys: [%(pki)s/ministry/fleet.pub]
  feed_url: https://127.0.0.1:%(port)d/list
  feed_ca: %(pki)s/store-ca.pem
  poll_interval: %(poll)ds
  feed_timeout: 2s
""" % {"d": self.dir, "pki": pki, "plugins": PLUGINS, "tmp": tmp, "port": feed_port,
                "poll": POLL})
        self.log = open(os.path.join(self.dir, "daemon.log"), "w+")
        self.proc = subprocess.Popen([DAEMON, "--config", self.config], stdout=self.log,
                                     stderr=self.log)
        self.port = None
        self.client = None

    def wait_started(self, deadline):
        while time.monotonic() < deadline:
            self.log.seek(0)
            for line in self.log:
                ev = json.loads(line)
                if ev.get("event") == "listening" and ev.get("listener") == "store":
                    self.port = ev["port"]
                if ev.get("event") == "started":
                    return
            if self.proc.poll() is not None:
                raise SystemExit("appliance %s exited at start" % self.dir)
            time.sleep(0.1)
        raise SystemExit("appliance %s did not start" % self.dir)

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def main():
    tmp = tempfile.mkdtemp(prefix="mdg-fleet-")
    os.chmod(tmp, 0o755)  # nginx's workers (user nobody) read the feed file below it
    procs = []
    nginx = None
    try:
        print("fleet bench: %d appliances polling every %d s, in %s" % (N, POLL, tmp))
        run([os.path.join(SRC, "scripts", "demo-city"), "--out", tmp, "--residents", "300"])
        run([os.path.join(SRC, "scripts", "dev-pki"), "--cards",
             os.path.join(tmp, "demo", "linkage.csv"), "--card-count", "100", "--ministry",
             "fleet", os.path.join(tmp, "pki")])
        feed_port = free_port()
        nginx, root = start_nginx(tmp, feed_port)
        publish(root, sign_list(tmp, 1, []))

        t = time.monotonic()
        fleet = [Appliance(tmp, i, feed_port) for i in range(N)]
        procs = [a.proc for a in fleet]
        for a in fleet:
            a.wait_started(time.monotonic() + 60)
        for a in fleet:
            run([CTL, "--socket", a.sock, "linkage", "import",
                 os.path.join(tmp, "demo", "linkage.csv")])
        print("   started and linked in %.1f s" % (time.monotonic() - t))

        pki = os.path.join(tmp, "pki")
        card_dir = os.path.join(pki, "cards")
        with open(os.path.join(tmp, "demo", "residents.jsonl")) as f:
            residents = [json.loads(line) for line in f]
        cards = {os.path.splitext(n)[0] for n in os.listdir(card_dir) if n.endswith(".pem")}
        ok = [r for r in residents if r.get("card_serial") in cards and
              r.get("issuable", {}).get("residence") and r.get("issuable", {}).get("seal")]
        if not ok:
            raise SystemExit("no demo resident with a card may have residence and seal")
        card = ic.Card.from_dir(card_dir, ok[0]["card_serial"])
        for a in fleet:
            a.client = ic.Client(a.port, os.path.join(pki, "store-ca.pem"),
                                 os.path.join(pki, "center.pem"),
                                 os.path.join(pki, "center.key"), timeout=10)

        # Every appliance holds list 1 (nothing suspended) and issues both types.
        deadline = time.monotonic() + POLL + 10
        for a in fleet:
            while True:
                r = subprocess.run(["curl", "-s", "--unix-socket", a.sock,
                                    "http://x/v1/suspensions"], capture_output=True,
                                   text=True, timeout=10)
                seq = (json.loads(r.stdout).get("ministry_list") or {}).get("sequence")
                if seq == 1:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("appliance %s never read list 1" % a.dir)
                time.sleep(0.2)
            r = a.client.issue(card, certificate="residence")
            if r.status != 201:
                raise SystemExit("residence before the list: %d %s" % (r.status, r.body[:200]))

        # 1. Publish the suspension and probe until every appliance refuses residence.
        data = sign_list(tmp, 2, [{"id": "fleet-1", "plugin": "sqlite-registry",
                                   "certificates": ["residence"], "reason": "fleet bench"}])
        t0 = time.monotonic()
        publish(root, data)
        first = {}
        sweeps = []
        while len(first) < N and time.monotonic() - t0 < POLL + 30:
            s0 = time.monotonic()
            for i, a in enumerate(fleet):
                if i in first:
                    continue
                r = a.client.issue(card, certificate="residence")
                if r.status == 503:
                    p = r.json()
                    if p.get("code") == "SERVICE_SUSPENDED" and \
                            p.get("suspension", {}).get("source") == "ministry":
                        first[i] = time.monotonic() - t0
                elif r.status != 201:
                    raise SystemExit("unexpected answer %d %s" % (r.status, r.body[:200]))
            sweeps.append(time.monotonic() - s0)
        if len(first) < N:
            raise SystemExit("only %d of %d appliances enforced the list" % (len(first), N))
        prop = list(first.values())
        print("1. poll: %d appliances answer 503 SERVICE_SUSPENDED (ministry): p50 %.2f s, "
              "p100 %.2f s after publishing (poll_interval %d s; target <= %d s); probe "
              "sweep %.0f ms" % (N, pct(prop, 50), max(prop), POLL, POLL + 1,
                                 1000 * statistics.median(sweeps)))
        other_ok = sum(1 for a in fleet if a.client.issue(card, certificate="seal").status == 201)
        print("   seal (outside the list's scope) still issues on %d of %d appliances"
              % (other_ok, N))

        # 2. Push on one appliance.
        a = fleet[0]
        s0 = time.monotonic()
        run([CTL, "--socket", a.sock, "suspend", "other", "--reason", "fleet bench push"])
        returned = time.monotonic() - s0
        r = a.client.issue(card, certificate="seal")
        first503 = time.monotonic() - s0
        code = r.json().get("code") if r.status == 503 else str(r.status)
        print("2. push: madoguchictl suspend returned after %.1f ms; the first seal request "
              "after it: %s (%.1f ms after the call started)" % (1000 * returned, code,
                                                                 1000 * first503))

        # 3. Memory.
        rss = [a.rss_kib() / 1024.0 for a in fleet]
        print("3. RSS per appliance: p50 %.1f MiB, max %.1f MiB (%d appliances, %.0f MiB in all)"
              % (pct(rss, 50), max(rss), N, sum(rss)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
