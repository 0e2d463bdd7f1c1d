#!/usr/bin/env python3
"""Load shedding (issue 7): bounded queues, 503 OVERLOADED answered fast, bounded memory, and
a slow backend that never slows another plugin's certificate types.

  1. config: issuance.max_pending must exceed the routed plugins' max_in_flight together (a
     slow backend could otherwise take every place); the daemon refuses to start, naming it.
  2. admission and render queues: a burst of residence requests (kiosk-sim, 48 connections)
     against max_pending 12 and render_queue 2: every answer is a 201 that verifies or a 503
     OVERLOADED; both queues shed (madoguchi_issuances_shed_total); a 503 carries
     Retry-After: 1; render sheds are audited (after step 7) and admission sheds are not; the
     server answered its 503s fast (access log duration_ms).
  3. a slow backend: the vendor simulator answers after 2 s; while koseki requests keep its
     max_in_flight full, residence and seal requests through the registry plugin are all
     issued, none OVERLOADED, and in well under the vendor's latency.
  4. bounded memory: 512 connections each with a request in flight at once against
     max_pending 128: only 201s and OVERLOADED, the daemon's peak RSS stays within what
     max_pending and max_connections allow, and it still answers afterwards.

Environment: MDG_SRCDIR, MDG_BUILDDIR, MDG_KIOSK_SIM, MDG_SANITIZERS.
"""

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, expect  # noqa: E402
from issuance_client import Client, DemoCity, request_body  # noqa: E402

KIOSK = os.environ.get("MDG_KIOSK_SIM") or os.path.join(harness.BUILDDIR, "tools", "kiosk-sim",
                                                        "madoguchi-kiosk-sim")
PLUGINS = os.environ.get("MDG_PLUGINS") or os.path.join(harness.BUILDDIR, "plugins", ".libs")
SLACK = 3 if harness.SANITIZERS else 1
KOSEKI = ("koseki-full", "koseki-individual", "koseki-attachment")
REGISTRY_TYPES = ("residence", "residence-record", "seal", "tax-income")
VENDOR_LATENCY_MS = 2000
FLOOD_CONNECTIONS = 512
FLOOD_PENDING = 128


def routes(vendor):
    out = {t: {"plugin": "registry", "always_open": True} for t in REGISTRY_TYPES}
    if vendor:
        for t in KOSEKI:
            out[t] = {"plugin": "vendor", "always_open": True}
    return out


def config(city, sim=None, reg_in_flight=64, vendor_in_flight=8, listeners=None, **issuance):
    plug = {"registry": {"file": "sqlite-registry.so", "timeout": "5s",
                         "max_in_flight": reg_in_flight,
                         "config": {"database": city.registry}}}
    if sim is not None:
        plug["vendor"] = {"file": "fujitsu-like.so", "timeout": "10s",
                          "max_in_flight": vendor_in_flight,
                          "config": {"endpoint": sim.endpoint}}
    iss = {"municipalities": ["141003"], "municipality_name": "横浜市中区",
           "document_key": "pki/document.key",
           "card_proof": {"ca": "pki/card-ca.pem", "max_skew": "5m"},
           "deadline": "%ds" % (20 * SLACK), "certificates": routes(sim is not None)}
    iss.update(issuance)
    cfg = {"plugin_dir": PLUGINS, "plugins": plug, "issuance": iss,
           "log": {"level": "info", "access": True}}
    if listeners is not None:
        cfg["listeners"] = listeners
    return cfg


def kiosk(d, city, certificate, count=None, connections=8, rate=None, duration=None,
          timeout=60):
    argv = [KIOSK, "--url", "https://127.0.0.1:%d" % d.store_port, "--ca", d.store_ca,
            "--cert", d.center_cert, "--key", d.center_key, "--cards", city.cards_dir,
            "--residents", city.residents_path, "--certificate", certificate,
            "--connections", str(connections), "--json", "--timeout", str(int(30 * SLACK))]
    if count is not None:
        argv += ["--count", str(count)]
    if rate is not None:
        argv += ["--rate", str(rate), "--duration", str(duration)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout * SLACK)
    try:
        out = json.loads(p.stdout)
    except ValueError:
        raise AssertionError("kiosk-sim exit %d, no JSON: %s %s"
                             % (p.returncode, p.stdout[-300:], p.stderr[-600:]))
    out["exit"] = p.returncode
    return out


def shed(d, queue):
    return harness.metric_sum(d.metrics_text(), "madoguchi_issuances_shed_total",
                              {"queue": queue})


def access_durations(d, status):
    """duration_ms of every /v1/issuances access line with this status."""
    out = []
    for e in d.events("access"):
        if e.get("route") == "/v1/issuances" and e.get("status") == status:
            out.append(float(e.get("duration_ms", 0)))
    return out


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


def peak_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        m = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1))


def main(tap):
    expect(os.access(KIOSK, os.X_OK), "madoguchi-kiosk-sim is not built (%s)" % KIOSK)
    city = DemoCity(residents=600, cards=120, prefix="mdg-overload-")
    sims = []
    try:
        run_points(tap, city, sims)
    finally:
        for s in sims:
            s.cleanup()
        harness.sanitizer_point(tap, *list(Daemon._all))
        city.cleanup()


def run_points(tap, city, sims):
    # -- 1. the config check
    def refuses_small_max_pending():
        code, log = city.refused_start(config(city, reg_in_flight=64, max_pending=64),
                                       timeout=10 * SLACK)
        expect(code not in (0, None), "daemon exit %r" % code)
        expect("issuance.max_pending (64) must exceed the max_in_flight of the routed "
               "plugins together (64)" in log, "log: %s" % log[-600:])
    tap.check("a max_pending not above the routed plugins' max_in_flight together refuses the "
              "start, naming both numbers", refuses_small_max_pending)

    # -- 2. admission and render queues under a burst
    d = city.start_daemon(config(city, reg_in_flight=8, max_pending=12, render_queue=2))
    seen_retry = []
    burst_done = threading.Event()

    def prober():
        c = Client.for_daemon(d, timeout=15 * SLACK)
        people = city.issuable("residence", 10)
        i = 0
        try:
            while not burst_done.is_set() and len(seen_retry) < 3 and i < 400:
                r = people[i % len(people)]
                i += 1
                resp = c.issue(city.card(r), request_body("residence"))
                if resp.status == 503:
                    seen_retry.append((resp.json().get("code"), resp.header("Retry-After")))
                if resp.closes():
                    c.close()
        finally:
            c.close()

    def burst():
        th = threading.Thread(target=prober, daemon=True)
        th.start()
        try:
            out = kiosk(d, city, "residence", count=1500, connections=48)
        finally:
            burst_done.set()
            th.join(30 * SLACK)
        codes = out.get("by_code") or {}
        tap.diag("burst: completed %s by_status %s by_code %s latency %s"
                 % (out.get("completed"), out.get("by_status"), codes, out.get("latency_ms")))
        expect(out.get("completed") == 1500 and not out.get("transport_errors"),
               "completed %r, transport errors %r" % (out.get("completed"),
                                                       out.get("transport_errors")))
        expect(not out.get("mismatches") and not out.get("verify_failures"),
               "mismatches %r verify failures %r" % (out.get("mismatches"),
                                                     out.get("verify_failures")))
        unexpected = {k: v for k, v in (out.get("unexpected_refusals") or {}).items()
                      if k != "OVERLOADED"}
        expect(not unexpected, "refusals other than OVERLOADED: %r" % unexpected)
        expect(codes.get("OVERLOADED", 0) > 0, "no OVERLOADED in the burst: %r" % codes)
        adm, ren = shed(d, "admission"), shed(d, "render")
        tap.diag("shed: admission %d, render %d" % (adm, ren))
        expect(adm > 0, "no admission shed")
        expect(ren > 0, "no render shed")
        expect(seen_retry, "the prober saw no 503")
        expect(all(code == "OVERLOADED" and ra == "1" for code, ra in seen_retry),
               "503s seen by the prober: %r" % seen_retry)
        # Render sheds happen after step 7: audited.  Admission sheds come before: not.
        db = sqlite3.connect("file:%s?mode=ro" % d.path("data/audit.sqlite"), uri=True)
        try:
            rows = db.execute("SELECT count(*) FROM audit_rows WHERE outcome = 'OVERLOADED'"
                              ).fetchone()[0]
        finally:
            db.close()
        # Every OVERLOADED answer was either shed at admission (no row) or is an audited row
        # (render queue, or the plugin's max_in_flight at step 9).
        answered = codes.get("OVERLOADED", 0) + len(seen_retry)
        expect(rows >= ren and adm + rows == answered,
               "OVERLOADED: %d answered, %d shed at admission, %d audit rows, %d render sheds"
               % (answered, adm, rows, ren))
        ok503 = access_durations(d, 503)
        ok201 = access_durations(d, 201)
        tap.diag("server-side duration: 503 p50 %.2f ms p99 %.2f ms (n=%d); 201 p50 %.2f ms "
                 "p99 %.2f ms (n=%d)" % (percentile(ok503, 0.5), percentile(ok503, 0.99),
                                        len(ok503), percentile(ok201, 0.5),
                                        percentile(ok201, 0.99), len(ok201)))
        expect(ok503, "no 503 in the access log")
        expect(percentile(ok503, 0.5) <= percentile(ok201, 0.5),
               "503s are not answered faster than 201s")
    tap.check("a burst of 1,500 residence requests over 48 connections against max_pending 12 "
              "and render_queue 2: every answer a verified 201 or 503 OVERLOADED with "
              "Retry-After: 1; both queues shed; render sheds are audited rows, admission sheds "
              "are not; 503s answered faster than 201s", burst)
    harness.stop_point(tap, d)

    # -- 3. a slow backend does not slow the other plugin's types
    sim = harness.VendorSim(city.registry, ["--mode", "slow", "--latency-ms",
                                            str(VENDOR_LATENCY_MS)])
    sims.append(sim)
    d = city.start_daemon(config(city, sim, reg_in_flight=64, vendor_in_flight=4))

    def slow_vendor():
        stop = threading.Event()
        koseki = {"held": 0, "overloaded": 0, "other": []}

        def koseki_load(k):
            c = Client.for_daemon(d, timeout=30 * SLACK)
            people = city.issuable("koseki-full", 8)
            i = k
            try:
                while not stop.is_set():
                    r = people[i % len(people)]
                    i += 1
                    resp = c.issue(city.card(r), request_body(KOSEKI[i % 3]))
                    if resp.status == 201:
                        koseki["held"] += 1
                    elif resp.status == 503 and resp.json().get("code") == "OVERLOADED":
                        koseki["overloaded"] += 1
                        time.sleep(0.02)
                    else:
                        koseki["other"].append(resp.status)
                    if resp.closes():
                        c.close()
            finally:
                c.close()
        threads = [threading.Thread(target=koseki_load, args=(k,), daemon=True)
                   for k in range(8)]
        for th in threads:
            th.start()
        time.sleep(0.5)
        try:
            outs = {t: kiosk(d, city, t, count=150, connections=8) for t in ("residence",
                                                                             "seal")}
        finally:
            stop.set()
            for th in threads:
                th.join((VENDOR_LATENCY_MS / 1000 + 10) * SLACK)
        tap.diag("koseki meanwhile: %r" % koseki)
        bound = VENDOR_LATENCY_MS / 2 * SLACK
        for t, o in outs.items():
            lat = o.get("latency_ms") or {}
            tap.diag("%s: by_status %s by_code %s latency %s" % (t, o.get("by_status"),
                                                                 o.get("by_code"), lat))
            expect(o.get("completed") == 150 and not o.get("transport_errors")
                   and not o.get("mismatches") and not o.get("verify_failures"),
                   "%s: %r" % (t, {k: o.get(k) for k in ("completed", "transport_errors",
                                                          "mismatches", "verify_failures")}))
            expect(not o.get("unexpected_refusals"),
                   "%s: unexpected refusals %r" % (t, o.get("unexpected_refusals")))
            worst = max(float(v) for v in lat.values()) if lat else 0.0
            expect(worst < bound, "%s: latency up to %.0f ms (bound %.0f ms, the vendor takes "
                                  "%d ms)" % (t, worst, bound, VENDOR_LATENCY_MS))
        expect(koseki["overloaded"] > 0, "the vendor's max_in_flight was never full")
        expect(not koseki["other"], "koseki answers other than 201/503: %r" % koseki["other"])
    tap.check("the vendor backend answers after %d ms and koseki requests keep its "
              "max_in_flight (4) full: 150 residence and 150 seal requests through the "
              "registry are all issued or refused as residents.jsonl predicts, none OVERLOADED, "
              "each answered in under half the vendor's latency" % VENDOR_LATENCY_MS,
              slow_vendor)
    harness.stop_point(tap, d)

    # -- 4. bounded memory: more issuances at once than max_pending admits
    conns = FLOOD_CONNECTIONS
    # header_timeout (TLS handshake to end of headers) scaled like the other waits: under the
    # sanitizers 512 handshakes at once on a loaded machine outlast the default 10 s, and the
    # daemon rightly cuts them (request_timeout, "SSL connect error" at the client).
    d = city.start_daemon(config(city, reg_in_flight=64, max_pending=FLOOD_PENDING,
                           listeners={"store": {"limits": {
                               "max_connections": conns + 64,
                               "header_timeout": "%ds" % (10 * SLACK)}}}))

    def flood():
        warm = kiosk(d, city, "residence", count=200, connections=16)
        expect(warm.get("completed") == 200, "warm-up: %r" % warm.get("completed"))
        base = peak_rss_kib(d.proc.pid)
        t0 = time.monotonic()
        out = kiosk(d, city, "residence", count=2 * conns, connections=conns, timeout=120)
        took = time.monotonic() - t0
        peak = peak_rss_kib(d.proc.pid)
        adm = shed(d, "admission")
        tap.diag("flood: %d requests over %d connections in %.1f s: by_status %s by_code %s "
                 "latency %s; peak RSS %d KiB before, %d KiB after (+%d KiB); shed admission "
                 "%d render %d" % (2 * conns, conns, took, out.get("by_status"),
                                   out.get("by_code"), out.get("latency_ms"), base, peak,
                                   peak - base, adm, shed(d, "render")))
        expect(out.get("completed") == 2 * conns and not out.get("transport_errors"),
               "completed %r, transport errors %r %r" % (
                   out.get("completed"), out.get("transport_errors"),
                   out.get("transport_errors_by_reason")))
        expect(not out.get("mismatches") and not out.get("verify_failures"),
               "mismatches %r verify failures %r" % (out.get("mismatches"),
                                                     out.get("verify_failures")))
        unexpected = {k: v for k, v in (out.get("unexpected_refusals") or {}).items()
                      if k != "OVERLOADED"}
        expect(not unexpected, "refusals other than OVERLOADED: %r" % unexpected)
        expect(adm > 0, "nothing shed at admission: the flood never passed max_pending")
        # What the bounds allow: max_pending issuances of at most ~0.2 MiB each (body, record,
        # PDF, answer) and max_connections connections of ~0.15 MiB (TLS and HTTP buffers).
        limit = int((FLOOD_PENDING * 0.2 + (conns + 64) * 0.15) * 1024)
        if harness.SANITIZERS:
            # Redzones and shadow memory make each allocation some 3-4 times larger, and the
            # quarantine holds freed blocks up to its size before they are reused.
            limit = limit * 4 + harness.ASAN_QUARANTINE_MB * 1024
        expect(peak - base < limit, "peak RSS grew by %d KiB (limit %d KiB)"
               % (peak - base, limit))
        c = Client.for_daemon(d, timeout=15 * SLACK)
        try:
            r = city.issuable("residence")
            resp = c.issue(city.card(r), request_body("residence"))
        finally:
            c.close()
        expect(resp.status == 201, "after the flood: %d %r" % (resp.status, resp.body[:200]))
    tap.check("a flood of %d requests over %d connections at once (four times max_pending %d): "
              "only verified 201s and OVERLOADED, admission sheds, peak RSS within what "
              "max_pending and max_connections allow, a request afterwards is issued"
              % (2 * conns, conns, FLOOD_PENDING), flood)
    harness.stop_point(tap, d)


if __name__ == "__main__":
    harness.run(main)
