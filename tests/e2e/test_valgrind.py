#!/usr/bin/env python3
"""test_valgrind.py: madoguchid under valgrind (memcheck) for a short load has no memory error
and leaks nothing (issue 7, "the daemon under valgrind for a short load").

The daemon runs under `valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect
--error-exitcode=99` with the demo city (scripts/demo-city, scripts/dev-pki --cards),
sqlite-registry for four types and fujitsu-like (with the vendor simulator) for the three
koseki types, and meets a short version of everything a day brings:
  - real signed issuances of every type over a few keep-alive connections, answered as the
    demo truth says (201s verified: echoes, card serial, document hash, binding);
  - refusals: no card signature, another municipality, malformed JSON, an unknown type, a
    card with no linkage, a request_id reused with another body, a body over the limit, a
    type suspended by the operator;
  - handshakes that fail: no client certificate, TLS 1.1, bytes that are not TLS;
  - the admin API (status, plugins, suspensions, suspend and resume, keys), the metrics
    listener, and a configuration reload (SIGHUP);
then SIGTERM.  What must hold: the daemon exits 0 (valgrind's exit code is 99 on any error),
valgrind's log reports 0 errors, and no block definitely or indirectly lost.  Blocks still
reachable at exit, or possibly lost, are not counted: libraries keep one-time allocations.
No suppression file is used: with Debian 12's libraries this load reports no error and
nothing definitely or indirectly lost (madoguchid joins its thread pool before exit and frees
the renderer's caches).  Should another library version need one, add tests/valgrind.supp with
a comment per entry saying why it is not madoguchi's.

Skipped in the ASan build (MDG_SANITIZERS=yes): valgrind cannot run an ASan binary.  About a
minute; MDG_VALGRIND_LOAD sets the number of issuances (default 150).
"""

import os
import re
import shutil
import signal
import socket
import ssl
import sys
import threading
import time
import warnings

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import issuance_client as ic  # noqa: E402
from harness import SANITIZERS, Daemon, VendorSim, expect  # noqa: E402
from issuance_client import TYPES, Client, request_body  # noqa: E402

PLUGINS = os.environ.get("MDG_PLUGINS") or os.path.join(harness.BUILDDIR, "plugins", ".libs")
RESIDENTS = 300
CARDS = 40
LOAD = int(os.environ.get("MDG_VALGRIND_LOAD") or 150)
CONNECTIONS = 4
TIMEOUT = 60.0  # per request: valgrind runs the daemon 20-50 times slower
KOSEKI = ("koseki-full", "koseki-individual", "koseki-attachment")


def valgrind_command(log_path):
    """valgrind's command line; a relative log_path is in the daemon's directory (its cwd)."""
    return ["valgrind", "--error-exitcode=99", "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect", "--num-callers=30",
            "--log-file=" + log_path]


def config(city, sim):
    plugins = {"registry": {"file": "sqlite-registry.so", "timeout": "20s", "max_in_flight": 64,
                            "config": {"database": city.registry}},
               "vendor": {"file": "fujitsu-like.so", "timeout": "20s", "max_in_flight": 64,
                          "config": {"endpoint": sim.endpoint}}}
    certificates = {t: {"plugin": "vendor" if t in KOSEKI else "registry", "always_open": True}
                    for t in TYPES}
    return {"plugin_dir": PLUGINS, "plugins": plugins,
            "issuance": {"municipalities": ["141003"], "municipality_name": "横浜市中区",
                         "document_key": "pki/document.key",
                         "card_proof": {"ca": "pki/card-ca.pem", "max_skew": "5m"},
                         "deadline": "30s", "certificates": certificates},
            "listeners": {"store": {"limits": {"max_body_bytes": "16KiB"}}},
            "log": {"level": "info", "access": True},
            "shutdown": {"drain_timeout": "30s"}}


def import_linkage(d, city):
    with open(city.linkage, "rb") as f:
        body = f.read()
    with d.admin(timeout=120) as h:
        r = h.request("POST", "/v1/linkage", {"Content-Type": "text/csv",
                                               "Connection": "close"}, body)
    expect(r.status == 200, "POST /v1/linkage: %d %r" % (r.status, r.body[:300]))


def admin(d, method, path, body=b""):
    with d.admin(timeout=TIMEOUT) as h:
        headers = {"Connection": "close"}
        if body:
            headers["Content-Type"] = "application/json"
        return h.request(method, path, headers, body)


# ----------------------------------------------------------------------------- the load

def issue_load(d, city, keys):
    """LOAD issuances, request n of type n mod 7 from card n mod CARDS, over CONNECTIONS
    connections at once.  Returns a list of problems (empty when every answer is the one the
    demo truth expects)."""
    jobs = []
    for n in range(LOAD):
        r = city.carded[n % len(city.carded)]
        t = TYPES[(n + n // len(city.carded)) % len(TYPES)]
        jobs.append((r, t))
    problems = []
    answered = [0]
    lock = threading.Lock()
    nxt = [0]

    def worker():
        c = Client.for_daemon(d, timeout=TIMEOUT)
        try:
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= len(jobs):
                    return
                resident, t = jobs[i]
                card = city.card(resident)
                body, sent = request_body(t, raw=True)
                try:
                    resp = c.issue(card, body)
                except Exception as e:  # noqa: BLE001  (reported below)
                    with lock:
                        problems.append("request %d: %s: %s" % (i, type(e).__name__, e))
                    c.close()
                    continue
                why = None
                if resident["issuable"][t]:
                    if resp.status != 201:
                        why = "%s for %s: %d %r" % (t, resident["card_serial"], resp.status,
                                                    resp.body[:200])
                    else:
                        bad, _, _ = ic.verify_201(resp, sent, card, keys)
                        if bad:
                            why = "%s: 201 does not verify: %s" % (t, "; ".join(bad))
                elif resp.status not in (404, 422):
                    why = "%s not issuable for %s, answered %d %r" % (
                        t, resident["card_serial"], resp.status, resp.body[:200])
                with lock:
                    answered[0] += 1
                    if why:
                        problems.append("request %d: %s" % (i, why))
        finally:
            c.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 4)
    if answered[0] != len(jobs):
        problems.append("%d of %d requests answered" % (answered[0], len(jobs)))
    return problems


def refusals(d, city):
    """One request per refusal, each with the answer it must get; returns the problems."""
    problems = []
    card = city.card(city.issuable("residence"))
    unlinked = ic.make_card(os.path.join(city.pki, "card-ca.pem"),
                            os.path.join(city.pki, "card-ca.key"), "7E57000000000001")
    seal_card = city.card(city.issuable("seal"))
    with Client.for_daemon(d, timeout=TIMEOUT) as c:
        def want(resp, status, code, what):
            got = None
            if resp.status == status:
                try:
                    got = resp.json().get("code")
                except ValueError:
                    got = "(not JSON)"
            if resp.status != status or (code is not None and got != code):
                problems.append("%s: %d %r, want %d %s" % (what, resp.status, resp.body[:200],
                                                           status, code))

        want(c.post(request_body()), 401, "CARD_PROOF_INVALID", "no card signature")
        want(c.issue(card, municipality="999999"), 400, "MUNICIPALITY_NOT_SERVED",
             "another municipality")
        bad = b'{"request_id": "x", "certificate": '
        want(c.post(bad, card.headers(bad)), 400, "INVALID_REQUEST", "malformed JSON")
        want(c.issue(card, certificate="passport"), 400, "UNSUPPORTED_CERTIFICATE",
             "an unknown type")
        want(c.issue(unlinked), 404, "NO_RECORD", "a card with no linkage")
        body, sent = request_body(raw=True)
        first = c.issue(card, body)
        want(first, 201, None, "a fresh request")
        again = c.issue(card, body)
        if again.status != 201 or again.body != first.body:
            problems.append("the same request again is not the stored 201: %d" % again.status)
        other = request_body("residence-record", request_id=sent["request_id"])
        want(c.issue(card, other), 409, "REQUEST_ID_CONFLICT", "request_id with another body")
        big = request_body(padding="x" * 20000)
        resp = c.post(big, card.headers(big))
        want(resp, 413, "BODY_TOO_LARGE", "a body over max_body_bytes")
        c.close()

        r = admin(d, "POST", "/v1/plugins/registry/suspend",
                  b'{"reason": "valgrind run", "certificates": ["seal"]}')
        if r.status != 200:
            problems.append("suspend: %d %r" % (r.status, r.body[:200]))
        want(c.issue(seal_card, certificate="seal"), 503, "SERVICE_SUSPENDED",
             "a suspended type")
        r = admin(d, "POST", "/v1/plugins/registry/resume", b'{"certificates": ["seal"]}')
        if r.status != 200:
            problems.append("resume: %d %r" % (r.status, r.body[:200]))
        want(c.issue(seal_card, certificate="seal"), 201, None, "seal after the resume")
    return problems


def bad_handshakes(d):
    """Handshakes that must fail; returns the problems."""
    problems = []

    def refused(ctx, what):
        try:
            with d.store(ctx, timeout=TIMEOUT) as h:
                h.request("GET", "/healthz")
        except (ssl.SSLError, harness.Closed, ConnectionResetError, BrokenPipeError):
            return
        problems.append("%s: answered" % what)

    refused(d.client_context(client_cert=False, max_version=ssl.TLSVersion.TLSv1_2),
            "TLS 1.2 without a client certificate")
    refused(d.client_context(client_cert=False), "TLS 1.3 without a client certificate")
    ctx = d.client_context(max_version=ssl.TLSVersion.TLSv1_1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1: the point here
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    refused(ctx, "TLS 1.1")
    s = socket.create_connection(("127.0.0.1", d.store_port), timeout=TIMEOUT)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        if not harness.peer_closed_quickly(s, TIMEOUT):
            problems.append("plain HTTP on the TLS port: not closed")
    finally:
        s.close()
    return problems


def admin_and_metrics(d):
    problems = []
    for path in ("/healthz", "/readyz", "/v1/status", "/v1/plugins", "/v1/suspensions",
                 "/v1/keys", "/metrics"):
        r = admin(d, "GET", path)
        if r.status != 200:
            problems.append("admin GET %s: %d" % (path, r.status))
    for path in ("/metrics", "/healthz", "/readyz", "/nowhere"):
        with d.metrics(timeout=TIMEOUT) as h:
            r = h.request("GET", path, headers={"Connection": "close"})
        if r.status != (404 if path == "/nowhere" else 200):
            problems.append("metrics GET %s: %d" % (path, r.status))
    n = len(d.events("reloaded"))
    d.signal(signal.SIGHUP)
    try:
        d.wait_event("reloaded", count=n + 1, timeout=TIMEOUT)
    except AssertionError as e:
        problems.append("SIGHUP: %s" % e)
    return problems


# ------------------------------------------------------------------------- valgrind's log

def valgrind_summary(text):
    """(errors, definitely lost bytes, indirectly lost bytes) from a valgrind log; None for
    what the log does not say (valgrind did not finish)."""
    m = re.findall(r"ERROR SUMMARY: ([\d,]+) errors", text)
    errors = int(m[-1].replace(",", "")) if m else None
    if "All heap blocks were freed" in text:
        return errors, 0, 0
    lost = []
    for kind in ("definitely", "indirectly"):
        m = re.findall(r"%s lost: ([\d,]+) bytes" % kind, text)
        lost.append(int(m[-1].replace(",", "")) if m else None)
    return errors, lost[0], lost[1]


def valgrind_reports(text, limit=80):
    """The first lines of valgrind's error and leak records, for the diagnostics."""
    out = []
    for line in text.splitlines():
        body = re.sub(r"^==\d+== ?", "", line)
        if body.startswith(("HEAP SUMMARY", "LEAK SUMMARY", "ERROR SUMMARY", "For lists")):
            break
        out.append(line)
    start = next((i for i, l in enumerate(out) if re.search(r"==\d+== \S", l) and
                  "Memcheck" not in l and "Copyright" not in l and "Using Valgrind" not in l
                  and "Command:" not in l and "Parent PID" not in l), 0)
    return "\n".join(out[start:start + limit])


# ------------------------------------------------------------------------------- the test

def main(tap):
    if SANITIZERS:
        tap.skip("madoguchid under valgrind", "ASan build: valgrind cannot run an ASan binary")
        return
    have = shutil.which("valgrind") is not None
    tap.ok(have, "valgrind is installed", "install the Debian package valgrind")
    if not have:
        return

    t0 = time.monotonic()
    city = ic.DemoCity(RESIDENTS, CARDS, prefix="mdg-valgrind-")
    sim = None
    try:
        sim = VendorSim(city.registry)
        d = Daemon(config(city, sim), pki_dir=city.pki,
                   wrapper=valgrind_command("valgrind.log"))
        log_path = d.path("valgrind.log")
        t1 = time.monotonic()
        d.start(wait=False)
        d.wait_ready(timeout=120)
        import_linkage(d, city)
        tap.diag("demo city %.0f s, daemon ready under valgrind %.0f s"
                 % (t1 - t0, time.monotonic() - t1))
        keys = Client.for_daemon(d, timeout=TIMEOUT).keys()

        def check(desc, fn):
            t = time.monotonic()
            problems = fn()
            tap.ok(not problems, desc, "\n".join(problems[:20]))
            tap.diag("  %.1f s" % (time.monotonic() - t))

        check("%d issuances of every type over %d connections are answered as the demo truth "
              "says" % (LOAD, CONNECTIONS), lambda: issue_load(d, city, keys))
        check("each refusal is answered with its code", lambda: refusals(d, city))
        check("bad handshakes are refused", lambda: bad_handshakes(d))
        check("the admin API and metrics answer, SIGHUP reloads",
              lambda: admin_and_metrics(d))

        rc = d.stop(timeout=120)
        tap.ok(d.running_at_stop and rc == 0,
               "the daemon exits 0 on SIGTERM under valgrind (99: valgrind found an error)",
               "running before SIGTERM: %r, exit code %r" % (d.running_at_stop, rc))
        with open(log_path, errors="replace") as f:
            text = f.read()
        errors, definite, indirect = valgrind_summary(text)
        tap.ok(errors == 0, "valgrind reports no error", "ERROR SUMMARY: %r errors\n%s"
               % (errors, valgrind_reports(text)))
        tap.ok(definite == 0 and indirect == 0, "valgrind finds no block definitely or "
               "indirectly lost", "definitely lost %r bytes, indirectly lost %r bytes\n%s"
               % (definite, indirect, valgrind_reports(text)))
        tap.diag("total %.0f s" % (time.monotonic() - t0))
    finally:
        if sim is not None:
            sim.cleanup()
        city.cleanup()


if __name__ == "__main__":
    harness.run(main)
