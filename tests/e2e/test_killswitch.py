#!/usr/bin/env python3
"""test_killswitch.py: the kill switch end to end (DESIGN §3 steps 7 and 13, §4
SERVICE_SUSPENDED, §6, §7), against real daemons with the demo city (scripts/demo-city), the
dev PKI with cards and two dev ministry keys (scripts/dev-pki --cards --ministry dev --ministry
second), sqlite-registry ("registry": residence, residence-record, seal, tax-income) and
fujitsu-like ("vendor": the koseki types) talking to the vendor simulator, a ministry feed
served over HTTPS on loopback by this script, and madoguchi-kiosk-sim for load.

What must hold:
  1. local: a suspension of one type of one plugin answers 503 SERVICE_SUSPENDED (source
     local, reason, since) for that type only; other types and plugins are served; a resume
     lifts it; an unknown plugin is 404 PLUGIN_NOT_FOUND; bad bodies are 400 and change
     nothing;
  2. a suspension with mode drain lets a request already in flight deliver its 201, one with
     mode immediate stops it at step 13 (503 SERVICE_SUSPENDED); new requests stop at step 7
     either way;
  3. ministry lists pushed through the admin API: applied only when newer (409
     SEQUENCE_NOT_NEWER otherwise), signed by enough distinct configured keys (401
     LIST_SIGNATURE_INVALID otherwise, threshold 1 and 2), well formed (400 LIST_MALFORMED
     naming the field otherwise); a local resume cannot lift them (409 SUSPENSION_HELD, source
     ministry); only a newer list lifts them; the plugin is named as its descriptor does
     (fujitsu-like, not the city's instance name), version ranges and municipality scopes are
     honoured; an in-flight request meets a list's mode (drain, immediate) as in point 2;
     a list stays in force when the ministry keys change;
  4. an expired list is accepted and enforced, also after a restart and when it expires
     while in force, and the appliance says it is degraded (/readyz 200 "degraded…",
     madoguchi_ministry_list_expired 1) until a newer list arrives;
  5. local, ministry and auto suspensions are in force for the very first requests after a
     clean restart and after kill -9 (also a change killed right after it was answered);
  6. the ministry feed (HTTPS, ETag): a newer list is in force within poll_interval + 1 s;
     polls carry If-None-Match and get 304; a feed answering 500, stalled, down, or serving
     garbage, a badly signed, an older or a replayed list changes nothing in force (and the
     daemon keeps answering while a poll hangs) while feed.failures grows;
  7. isolation: while the vendor plugin is suspended, a load on the registry types (kiosk-sim,
     16 connections) gets only 201 or the refusals residents.jsonl predicts, never
     SERVICE_SUSPENDED, while every koseki request is refused SERVICE_SUSPENDED;
  8. the daemon's log has exactly one suspension_set / suspension_lifted line per change (none
     for a request that changed nothing; also when a newer list changes an entry under the
     same id), and no reason text of a list or an admin call.

Environment: MDG_SRCDIR, MDG_BUILDDIR, MDG_SANITIZERS, MDG_PLUGINS, MDG_VENDOR_SIM,
MDG_KIOSK_SIM.  Loopback only; every wait is bounded (times scaled by SLACK under ASan).
"""

import base64
import collections
import datetime
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import issuance_client as ic  # noqa: E402
from harness import SANITIZERS, Daemon, expect  # noqa: E402
from issuance_client import TYPES, Client, request_body  # noqa: E402

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402

PLUGINS = os.environ.get("MDG_PLUGINS") or os.path.join(harness.BUILDDIR, "plugins", ".libs")
KIOSK = os.environ.get("MDG_KIOSK_SIM") or os.path.join(harness.BUILDDIR, "tools", "kiosk-sim",
                                                        "madoguchi-kiosk-sim")
SIGN = os.path.join(harness.SRCDIR, "scripts", "ministry-sign")
RESIDENTS = 600    # demo city size
CARDS = 160        # card certificates made by dev-pki
SLACK = 3.0 if SANITIZERS else 1.0  # timing allowance factor under ASan
KOSEKI = ("koseki-full", "koseki-individual", "koseki-attachment")
REGISTRY_TYPES = ("residence", "residence-record", "seal", "tax-income")
LOAD_PER_TYPE = 75  # x 4 registry types = 300 requests
LOAD_CONNECTIONS = 16
POLL_S = 1.0        # ministry.poll_interval of the feed daemon

# Distinctive reasons: none of them may ever appear in a log line (point 8).
MARK = "ksrsn-4e1b9c"
R_LOCAL = MARK + "-local-seal 印鑑登録証明書 一時停止"
R_DRAIN = MARK + "-local-drain"
R_IMMEDIATE = MARK + "-local-immediate"
R_MINISTRY = MARK + "-ministry"
R_PERSIST = MARK + "-local-persist"
R_CRASH = MARK + "-local-crash"


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


# ------------------------------------------------------------------------------ fixture

def City():
    """The demo city, the shared PKI (cards, two ministry keys) and the demo truth."""
    return ic.DemoCity(RESIDENTS, CARDS, ministry=("dev", "second"), prefix="mdg-killswitch-")


def routes(koseki="vendor", others="registry"):
    return {t: {"plugin": koseki if t in KOSEKI else others, "always_open": True}
            for t in TYPES}


def config(city, sim=None, ministry=None, access=True):
    plug = {"registry": {"file": "sqlite-registry.so", "timeout": "2s", "max_in_flight": 256,
                         "config": {"database": city.registry}}}
    if sim is not None:
        # A long plugin timeout: the slow-mode requests of point 2 must complete, not time out.
        plug["vendor"] = {"file": "fujitsu-like.so", "timeout": "%ds" % int(4 + 4 * SLACK),
                          "max_in_flight": 256, "config": {"endpoint": sim.endpoint}}
    cfg = {"plugin_dir": PLUGINS, "plugins": plug,
           "issuance": {"municipalities": ["141003"], "municipality_name": "横浜市中区",
                        "document_key": "pki/document.key",
                        "card_proof": {"ca": "pki/card-ca.pem", "max_skew": "5m"},
                        "deadline": "%ds" % int(6 + 6 * SLACK),
                        "certificates": routes("vendor" if sim else "registry")},
           "log": {"level": "info", "access": access}}
    if ministry is not None:
        cfg["ministry"] = ministry
    return cfg


# --------------------------------------------------------------------------- ministry lists

class Ministry:
    """The dev ministry keys (and a rogue one nobody configured); signs lists with
    scripts/ministry-sign, or builds envelopes by hand to make bad ones."""

    def __init__(self, city):
        self.city = city
        self.dir = tempfile.mkdtemp(prefix="mdg-ks-lists-")
        self.key_paths = {n: os.path.join(city.pki, "ministry", n + ".key")
                          for n in ("dev", "second")}
        self.keys = {}
        for n, p in self.key_paths.items():
            with open(p, "rb") as f:
                self.keys[n] = serialization.load_pem_private_key(f.read(), password=None)
        self.keys["rogue"] = ed25519.Ed25519PrivateKey.generate()
        self.n = 0

    def pub(self, name):
        return os.path.join(self.city.pki, "ministry", name + ".pub")

    def key_id(self, name):
        raw = self.keys[name].public_key().public_bytes(serialization.Encoding.Raw,
                                                         serialization.PublicFormat.Raw)
        return hashlib.sha256(raw).hexdigest()[:16]

    @staticmethod
    def payload(seq, entries, issued=None, expires=None, **extra):
        """The list JSON bytes; issued/expires: datetimes (default now - 1 h, now + 7 d)."""
        doc = {"type": "madoguchi-suspension-list", "sequence": seq,
               "issued_at": ic.utc_text(issued or now_utc() - datetime.timedelta(hours=1)),
               "expires_at": ic.utc_text(expires or now_utc() + datetime.timedelta(days=7)),
               "suspensions": entries}
        doc.update(extra)
        return json.dumps(doc, ensure_ascii=False).encode()

    def sign_tool(self, payload, *names):
        """The envelope made by scripts/ministry-sign (the documented way)."""
        self.n += 1
        path = os.path.join(self.dir, "list-%d.json" % self.n)
        with open(path, "wb") as f:
            f.write(payload)
        argv = [SIGN]
        for n in names or ("dev",):
            argv += ["--key", self.key_paths[n]]
        p = subprocess.run(argv + [path], capture_output=True, timeout=30)
        expect(p.returncode == 0, "ministry-sign: %s" % p.stderr.decode(errors="replace"))
        return p.stdout

    def sig(self, name, data, key_id=None):
        return {"key_id": key_id or self.key_id(name), "alg": "ed25519",
                "sig": base64.b64encode(self.keys[name].sign(data)).decode()}

    @staticmethod
    def envelope(payload, sigs, payload_text=None, **extra):
        doc = {"payload": payload_text if payload_text is not None
               else base64.b64encode(payload).decode(), "signatures": sigs}
        doc.update(extra)
        return json.dumps(doc).encode()

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# A ministry list names a plugin as its descriptor does (DESIGN §6, docs/kill-switch.md: the
# ministry cannot know what each city called its instances); this city's instances are
# "vendor" (fujitsu-like) and "registry" (sqlite-registry).
DESCRIPTOR = {"vendor": "fujitsu-like", "registry": "sqlite-registry"}


def entry(id_, plugin, reason=R_MINISTRY, **kw):
    """A list entry for the plugin run by instance `plugin` (its descriptor name)."""
    e = {"id": id_, "plugin": DESCRIPTOR.get(plugin, plugin), "reason": reason}
    e.update(kw)
    return e


# --------------------------------------------------------------------------- admin helpers

def admin(d, method, path, body=None, timeout=harness.IO_TIMEOUT):
    if body is None:
        data = b""
    elif isinstance(body, (bytes, bytearray)):
        data = bytes(body)
    else:
        data = json.dumps(body).encode()
    with d.admin(timeout=timeout) as h:
        return h.request(method, path, {"Connection": "close",
                                        "Content-Type": "application/json"}, data)


def push(d, signed):
    return admin(d, "POST", "/v1/ministry/suspension-list", signed)


def expect_status(resp, status, what):
    expect(resp.status == status, "%s: %d, want %d: %r" % (what, resp.status, status,
                                                         resp.body[:400]))


def suspensions(d):
    r = d.admin_get("/v1/suspensions")
    expect_status(r, 200, "GET /v1/suspensions")
    return r.json()


def plugin_view(d, name):
    r = d.admin_get("/v1/plugins")
    expect_status(r, 200, "GET /v1/plugins")
    for p in r.json()["plugins"]:
        if p["name"] == name:
            return p
    raise AssertionError("no plugin %r in GET /v1/plugins" % name)


def kill_switch_status(d):
    st = d.admin_get("/v1/status").json()
    expect("kill_switch" in st, "GET /v1/status has no kill_switch member: %r" % list(st))
    return st["kill_switch"]


def sequence(d):
    lst = suspensions(d).get("ministry_list")
    return lst["sequence"] if lst else 0


def metric(d, name, labels=None):
    return harness.metric_value(d.metrics_text(), name, labels)


def metric_sum(d, name, labels=None):
    return harness.metric_sum(d.metrics_text(), name, labels)


def wait_for(pred, timeout, step=0.05, what="condition"):
    """Polls pred() until it returns a true value (returned) or timeout seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("%s not reached within %.1f s" % (what, timeout))
        time.sleep(step)


# -------------------------------------------------------------------------- store helpers

class Store:
    """Issuance requests against one daemon, checked against the demo truth."""

    def __init__(self, d, city):
        self.d = d
        self.city = city
        self.client = Client.for_daemon(d, timeout=15 * SLACK)
        self.keys = None

    def close(self):
        self.client.close()

    def send(self, t, r=None, client=None):
        r = r or self.city.issuable(t)
        card = self.city.card(r)
        body, sent = request_body(t, raw=True)
        return (client or self.client).issue(card, body), sent, card

    def issued(self, t, r=None):
        """A 201 for type t that verifies."""
        if self.keys is None:
            self.keys = self.client.keys()
        resp, sent, card = self.send(t, r)
        expect(resp.status == 201, "%s: status %d, want 201: %r" % (t, resp.status,
                                                                   resp.body[:300]))
        problems, answer, _ = ic.verify_201(resp, sent, card, self.keys)
        expect(not problems, "%s: the 201 does not verify: %s" % (t, "; ".join(problems)))
        return answer

    def suspended(self, t, source, reason=None, r=None):
        resp, sent, _ = self.send(t, r)
        return suspended_answer(resp, sent, t, source, reason)


def suspended_answer(resp, sent, t, source, reason=None):
    """503 SERVICE_SUSPENDED (DESIGN §4) with suspension {source, reason, since}."""
    try:
        doc = harness.problem_ok(resp, 503, "SERVICE_SUSPENDED")
    except AssertionError as e:
        raise AssertionError("%s: %s" % (t, e))
    expect(doc.get("request_id") == sent["request_id"], "%s: request_id %r, sent %r"
           % (t, doc.get("request_id"), sent["request_id"]))
    expect("document" not in doc, "%s: a suspended answer carries a document" % t)
    s = doc.get("suspension")
    expect(isinstance(s, dict), "%s: no suspension member: %r" % (t, doc))
    expect(s.get("source") == source, "%s: suspension.source %r, want %r"
           % (t, s.get("source"), source))
    if reason is not None:
        expect(s.get("reason") == reason, "%s: suspension.reason %r, want %r"
               % (t, s.get("reason"), reason))
    expect(isinstance(s.get("since"), str) and re.match(r"^\d{4}-\d\d-\d\dT", s["since"]),
           "%s: suspension.since %r" % (t, s.get("since")))
    return doc




# ------------------------------------------------------------------------------ log checks

CHANGE_EVENTS = ("suspension_set", "suspension_lifted")


class LogBook:
    """What each change should have logged (point 8): after an action, the suspension_set /
    suspension_lifted lines it added to the daemon's current log must be exactly the expected
    ones, each (event, source, plugin)."""

    def __init__(self):
        self.results = []  # (label, ok, detail)

    @staticmethod
    def mark(d):
        return (d.log_path, len(d.logs()))

    def expect(self, d, mark, label, want):
        """want: [(event, source, plugin)]; waits up to 1 s (x SLACK) for them, then a short
        while for extra lines."""
        path, n = mark
        want = [(ev, src, DESCRIPTOR.get(pl, pl) if src == "ministry" else pl)
                for ev, src, pl in want]

        def got():
            if d.log_path != path:
                return None
            return [(e.get("event"), e.get("source"), e.get("plugin"))
                    for e in d.logs()[n:] if e.get("event") in CHANGE_EVENTS]
        deadline = time.monotonic() + 1.0 * SLACK
        g = got()
        while g is not None and len(g) < len(want) and time.monotonic() < deadline:
            time.sleep(0.02)
            g = got()
        time.sleep(0.05)
        g = got()
        if g is None:
            self.results.append((label, False, "the daemon restarted meanwhile"))
            return
        ok = collections.Counter(g) == collections.Counter(want)
        self.results.append((label, ok, "logged %r, want %r" % (g, want)))


LOGBOOK = LogBook()


# ============================================================================ scenarios

def main(tap):
    city = City()
    tap.diag("demo city of %d residents and %d cards in %.1f s" % (RESIDENTS, CARDS,
                                                                  city.seconds))
    ministry = Ministry(city)
    sims = []
    t0 = time.monotonic()
    try:
        for name, group in (("main daemon", group_main), ("threshold 2", group_threshold),
                            ("feed", group_feed)):
            t = time.monotonic()
            try:
                group(tap, city, ministry, sims)
            except Exception as e:  # a broken fixture: fail the group, go on with the next
                import traceback
                tap.ok(False, "%s: the scenario group ran to its end" % name,
                       "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))
            tap.diag("%s: %.1f s" % (name, time.monotonic() - t))
        log_points(tap)
    finally:
        for s in sims:
            s.cleanup()
        harness.sanitizer_point(tap, *list(Daemon._all))
        ministry.cleanup()
        city.cleanup()
        tap.diag("all groups: %.1f s" % (time.monotonic() - t0))


# ------------------------------------------------------------------ group: the main daemon

def group_main(tap, city, ministry, sims):
    sim = harness.VendorSim(city.registry)
    sims.append(sim)
    d = city.start_daemon(config(city, sim, {"keys": [ministry.pub("dev")], "threshold": 1}))
    store = Store(d, city)
    point = harness.Guard(tap, d, [store]).check
    seq = [100]  # the next list sequence for this daemon

    def next_seq():
        seq[0] += 1
        return seq[0]

    def push_ok(entries, what, **kw):
        s = next_seq()
        r = push(d, ministry.sign_tool(Ministry.payload(s, entries, **kw)))
        expect_status(r, 200, what)
        a = r.json()
        expect(a.get("applied") is True and a.get("sequence") == s,
               "%s: answer %r" % (what, a))
        return s

    # -- 1. local suspensions
    def local_seal():
        m = LOGBOOK.mark(d)
        r = admin(d, "POST", "/v1/plugins/registry/suspend",
                  {"reason": R_LOCAL, "certificates": ["seal"]})
        expect_status(r, 200, "suspend registry [seal]")
        LOGBOOK.expect(d, m, "local suspend registry [seal]",
                       [("suspension_set", "local", "registry")])
        store.suspended("seal", "local", R_LOCAL)
        for t in ("residence", "residence-record", "tax-income"):
            store.issued(t)
        for t in KOSEKI:
            store.issued(t)
        reg, ven = plugin_view(d, "registry"), plugin_view(d, "vendor")
        expect(reg["state"] == "suspended" and len(reg["suspensions"]) == 1
               and reg["suspensions"][0]["source"] == "local"
               and reg["suspensions"][0]["scope"]["certificates"] == ["seal"],
               "GET /v1/plugins registry %r" % reg)
        expect(ven["state"] == "serving" and ven["suspensions"] == [],
               "GET /v1/plugins vendor %r" % ven)
        got = metric(d, "madoguchi_plugin_suspended", {"plugin": "registry", "source": "local"})
        expect(got == 1, "madoguchi_plugin_suspended{registry,local} %r" % got)
        # The same suspension again changes nothing and logs nothing.
        m = LOGBOOK.mark(d)
        r = admin(d, "POST", "/v1/plugins/registry/suspend",
                  {"reason": R_LOCAL, "certificates": ["seal"]})
        expect_status(r, 200, "the same suspension again")
        LOGBOOK.expect(d, m, "the same local suspension again (no change)", [])
    point("local suspend of registry for [seal]: seal answers 503 SERVICE_SUSPENDED "
          "(source local, the reason, since); residence, residence-record, tax-income and the "
          "vendor's koseki types are still issued; GET /v1/plugins and "
          "madoguchi_plugin_suspended show it", local_seal)

    def local_resume():
        m = LOGBOOK.mark(d)
        r = admin(d, "POST", "/v1/plugins/registry/resume", {"certificates": ["seal"]})
        expect_status(r, 200, "resume registry [seal]")
        a = r.json()
        expect(a.get("state") == "serving" and a.get("lifted") == 1, "resume answer %r" % a)
        LOGBOOK.expect(d, m, "local resume registry [seal]",
                       [("suspension_lifted", "local", "registry")])
        store.issued("seal")
        expect(suspensions(d)["suspensions"] == [], "suspensions left: %r" % suspensions(d))
        got = metric(d, "madoguchi_plugin_suspended", {"plugin": "registry", "source": "local"})
        expect(got == 0, "madoguchi_plugin_suspended{registry,local} %r" % got)
        m = LOGBOOK.mark(d)
        r = admin(d, "POST", "/v1/plugins/registry/resume", {"certificates": ["seal"]})
        expect_status(r, 200, "a resume of nothing")
        expect(r.json().get("lifted") == 0, "a resume of nothing: %r" % r.json())
        LOGBOOK.expect(d, m, "a resume of nothing (no change)", [])
    point("local resume of registry [seal]: seal is issued again; a second resume lifts "
          "nothing", local_resume)

    def not_found():
        for path, body in (("/v1/plugins/no-such-plugin/resume", {}),
                           ("/v1/plugins/no-such-plugin/suspend", {"reason": "x"}),
                           ("/v1/plugins/fujitsu-like/suspend", {"reason": "x"})):
            harness.problem_ok(admin(d, "POST", path, body), 404, "PLUGIN_NOT_FOUND")
    point("resume or suspend of a plugin instance that is not loaded (also the descriptor "
          "name instead of the instance name): 404 PLUGIN_NOT_FOUND", not_found)

    def bad_bodies():
        m = LOGBOOK.mark(d)
        cases = [
            ("suspend", {"reason": "x", "colour": "red"}, "unknown field"),
            ("suspend", {"certificates": ["seal"]}, "missing reason"),
            ("suspend", {"reason": ""}, "empty reason"),
            ("suspend", {"reason": "a\nb"}, "reason with a control character"),
            ("suspend", {"reason": "x" * 300}, "reason over 255 bytes"),
            ("suspend", {"reason": 7}, "reason not a string"),
            ("suspend", {"reason": "x", "mode": "later"}, "bad mode"),
            ("suspend", {"reason": "x", "mode": 1}, "mode not a string"),
            ("suspend", {"reason": "x", "certificates": ["passport"]}, "unknown certificate"),
            ("suspend", {"reason": "x", "certificates": "seal"}, "certificates not an array"),
            ("suspend", {"reason": "x", "certificates": []}, "empty certificates"),
            ("suspend", b"{not json", "not JSON"),
            ("suspend", b"[]", "not an object"),
            ("resume", {"colour": "red"}, "resume: unknown field"),
            ("resume", {"certificates": ["passport"]}, "resume: unknown certificate"),
            ("resume", {"ack_integrity_fault": "yes"}, "resume: ack not a boolean"),
        ]
        bad = []
        for verb, body, label in cases:
            r = admin(d, "POST", "/v1/plugins/registry/%s" % verb, body)
            try:
                harness.problem_ok(r, 400)
            except AssertionError as e:
                bad.append("%s: %s" % (label, e))
        expect(not bad, "; ".join(bad))
        expect(suspensions(d)["suspensions"] == [], "a bad body changed something: %r"
               % suspensions(d))
        LOGBOOK.expect(d, m, "bad admin bodies (no change)", [])
        store.issued("seal")
    point("bad bodies (unknown field, reason missing/empty/with a control character/too "
          "long/not a string, bad mode, unknown or malformed certificates, not JSON) are 400 "
          "problem+json and change nothing", bad_bodies)

    # -- 2. drain vs immediate with a request in flight
    latency_ms = int(2000 * SLACK)

    def in_flight(mode, reason, suspend=None):
        r = city.issuable("koseki-full")
        card = city.card(r)
        result = {}
        sim.control("latency %d" % latency_ms)
        sim.control("mode slow")
        try:
            before = metric(d, "madoguchi_issuances_in_flight") or 0

            def send():
                c = Client.for_daemon(d, timeout=30 * SLACK)
                try:
                    body, sent = request_body("koseki-full", raw=True)
                    result["sent"] = sent
                    try:
                        result["resp"] = c.issue(card, body)
                    except Exception as e:  # noqa: BLE001  (reported below)
                        result["error"] = e
                    result["t"] = time.monotonic()
                finally:
                    c.close()
            th = threading.Thread(target=send, daemon=True)
            th.start()
            wait_for(lambda: (metric(d, "madoguchi_issuances_in_flight") or 0) > before,
                     5 * SLACK, what="the koseki request in flight")
            time.sleep(0.25 * SLACK)  # past step 7, waiting for the slow backend
            source = "local" if suspend is None else "ministry"
            m = LOGBOOK.mark(d)
            if suspend is None:
                rs = admin(d, "POST", "/v1/plugins/vendor/suspend", {"reason": reason,
                                                                     "mode": mode})
                expect_status(rs, 200, "suspend vendor (%s)" % mode)
            else:
                suspend()
            t_suspended = time.monotonic()
            LOGBOOK.expect(d, m, "%s suspend vendor (%s)" % (source, mode),
                           [("suspension_set", source, "vendor")])
            expect("t" not in result, "the in-flight request was answered before the "
                   "suspension (%s); raise the simulator latency" % mode)
            # A new request stops at step 7 (fast: it never reaches the slow backend).
            t0 = time.monotonic()
            store.suspended("koseki-individual", source, reason)
            expect(time.monotonic() - t0 < latency_ms / 1000.0,
                   "the new request waited for the backend")
            th.join(30 * SLACK)
            expect("t" in result, "the in-flight request got no answer")
            expect("error" not in result, "in-flight request: %r" % result.get("error"))
            expect(result["t"] >= t_suspended, "answered before the suspension")
            return result
        finally:
            sim.control("mode normal")

    def resume_vendor(label):
        m = LOGBOOK.mark(d)
        r = admin(d, "POST", "/v1/plugins/vendor/resume", {})
        expect_status(r, 200, "resume vendor")
        LOGBOOK.expect(d, m, label, [("suspension_lifted", "local", "vendor")])

    def drain():
        try:
            res = in_flight("drain", R_DRAIN)
            resp = res["resp"]
            expect(resp.status == 201, "drain: the in-flight request got %d %r"
                   % (resp.status, resp.body[:300]))
            if store.keys is None:
                store.keys = store.client.keys()
            problems, _, _ = ic.verify_201(resp, res["sent"],
                                           city.card(city.issuable("koseki-full")),
                                           store.keys)
            expect(not problems, "the drained 201 does not verify: %s" % problems)
            expect(plugin_view(d, "vendor")["suspensions"][0]["mode"] == "drain",
                   "GET /v1/plugins mode %r" % plugin_view(d, "vendor")["suspensions"])
        finally:
            resume_vendor("local resume vendor (after drain)")
        store.issued("koseki-full")
    point("mode drain: a koseki request in flight (slow backend, %d ms) when the vendor is "
          "suspended completes 201; a new one is refused at once (503, source local)"
          % latency_ms, drain)

    def immediate():
        try:
            res = in_flight("immediate", R_IMMEDIATE)
            suspended_answer(res["resp"], res["sent"], "koseki-full (in flight)", "local",
                             R_IMMEDIATE)
        finally:
            resume_vendor("local resume vendor (after immediate)")
        store.issued("koseki-full")
    point("mode immediate: a koseki request in flight when the vendor is suspended is "
          "stopped at step 13 with 503 SERVICE_SUSPENDED (source local); after a resume the "
          "vendor serves again", immediate)

    def ministry_in_flight(mode):
        reason = R_MINISTRY + "-" + mode
        # Signed before the request is sent: signing (a subprocess) on a busy machine could
        # otherwise outlast the slow backend.
        seq_n = next_seq()
        signed = ministry.sign_tool(Ministry.payload(
            seq_n, [entry("if-" + mode, "vendor", reason=reason, mode=mode)]))

        def suspend():
            r = push(d, signed)
            expect_status(r, 200, "a list suspending vendor (%s)" % mode)
            expect(r.json().get("applied") is True and r.json().get("sequence") == seq_n,
                   "answer %r" % r.json())
        try:
            res = in_flight(mode, reason, suspend)
            if mode == "drain":
                expect(res["resp"].status == 201, "drain: the in-flight request got %d %r"
                       % (res["resp"].status, res["resp"].body[:300]))
            else:
                suspended_answer(res["resp"], res["sent"], "koseki-full (in flight)",
                                 "ministry", reason)
        finally:
            push_ok([], "an empty list")
        store.issued("koseki-full")

    point("a ministry list with mode drain lets the koseki request in flight complete 201",
          lambda: ministry_in_flight("drain"))
    point("a ministry list with mode immediate (the default) stops the koseki request in "
          "flight at step 13: 503 SERVICE_SUSPENDED (source ministry)",
          lambda: ministry_in_flight("immediate"))

    # -- 3. ministry lists pushed through the admin API
    state = {}

    def ministry_push():
        m = LOGBOOK.mark(d)
        s = push_ok([entry("v-all", "vendor")], "a list suspending vendor")
        LOGBOOK.expect(d, m, "ministry list suspending vendor",
                       [("suspension_set", "ministry", "vendor")])
        state["seq"] = s
        state["signed"] = None
        for t in KOSEKI:
            store.suspended(t, "ministry", R_MINISTRY)
        for t in ("residence", "seal", "tax-income"):
            store.issued(t)
        sus = suspensions(d)
        expect(sus["ministry_list"] and sus["ministry_list"]["sequence"] == s,
               "ministry_list %r" % sus.get("ministry_list"))
        mine = [x for x in sus["suspensions"] if x["source"] == "ministry"]
        expect(len(mine) == 1 and mine[0]["plugin"] == "fujitsu-like"
               and mine[0].get("id") == "v-all",
               "GET /v1/suspensions %r" % sus["suspensions"])
        expect(plugin_view(d, "vendor")["state"] == "suspended", "vendor not suspended")
        expect(plugin_view(d, "registry")["state"] == "serving", "registry not serving")
        got = metric(d, "madoguchi_ministry_list_sequence")
        expect(got == s, "madoguchi_ministry_list_sequence %r, want %d" % (got, s))
        got = metric(d, "madoguchi_plugin_suspended", {"plugin": "vendor", "source": "ministry"})
        expect(got == 1, "madoguchi_plugin_suspended{vendor,ministry} %r" % got)
        got = metric(d, "madoguchi_ministry_lists_total", {"origin": "admin",
                                                           "result": "applied"})
        expect(got and got >= 1, "madoguchi_ministry_lists_total{admin,applied} %r" % got)
        for src in ("local", "ministry"):
            got = metric(d, "madoguchi_suspension_enforce_seconds_count", {"source": src})
            expect(got and got >= 1, "madoguchi_suspension_enforce_seconds_count{%s} %r"
                   % (src, got))
    point("a pushed ministry list suspending vendor: the koseki types answer 503 (source "
          "ministry, the list's reason), the registry types 201; GET /v1/suspensions, "
          "/v1/plugins and the metrics show it", ministry_push)

    def held():
        m = LOGBOOK.mark(d)
        r = admin(d, "POST", "/v1/plugins/vendor/resume", {})
        doc = harness.problem_ok(r, 409, "SUSPENSION_HELD")
        expect((doc.get("suspension") or {}).get("source") == "ministry",
               "the holding source %r" % doc.get("suspension"))
        LOGBOOK.expect(d, m, "local resume refused by a ministry suspension (no change)", [])
        store.suspended("koseki-full", "ministry")
    point("a local resume of vendor: 409 SUSPENSION_HELD naming source ministry; still "
          "suspended", held)

    def not_newer():
        s = state["seq"]
        m = LOGBOOK.mark(d)
        same = ministry.sign_tool(Ministry.payload(s, [entry("v-all", "vendor")]))
        harness.problem_ok(push(d, same), 409, "SEQUENCE_NOT_NEWER")
        older = ministry.sign_tool(Ministry.payload(s - 1, []))
        doc = harness.problem_ok(push(d, older), 409, "SEQUENCE_NOT_NEWER")
        expect(doc.get("stored_sequence") == s, "stored_sequence %r" % doc.get("stored_sequence"))
        zero = ministry.sign_tool(Ministry.payload(0, []))
        harness.problem_ok(push(d, zero), 409, "SEQUENCE_NOT_NEWER")
        LOGBOOK.expect(d, m, "lists not newer (no change)", [])
        expect(sequence(d) == s, "the sequence in force changed to %r" % sequence(d))
        store.suspended("koseki-full", "ministry")
        got = metric(d, "madoguchi_ministry_lists_total", {"origin": "admin",
                                                           "result": "not_newer"})
        expect(got and got >= 3, "madoguchi_ministry_lists_total{admin,not_newer} %r" % got)
    point("the same list again, an older (empty) list and sequence 0: 409 "
          "SEQUENCE_NOT_NEWER; nothing changes", not_newer)

    def malformed():
        base = state["seq"] + 1000  # a sequence that must not stick when refused
        m = LOGBOOK.mark(d)
        good = [entry("x", "registry")]
        cases = [  # (label, payload bytes, the field path expected in "field")
            ("unknown field in an entry",
             Ministry.payload(base, [entry("x", "registry", colour="red")]), "suspensions[0]"),
            ("bad versions", Ministry.payload(base, [entry("x", "registry", versions="~1.0")]),
             "suspensions[0].versions"),
            ("bad mode", Ministry.payload(base, [entry("x", "registry", mode="later")]),
             "suspensions[0].mode"),
            ("missing plugin", Ministry.payload(base, [{"id": "x", "reason": R_MINISTRY}]),
             "suspensions[0].plugin"),
            ("unknown certificate",
             Ministry.payload(base, [entry("x", "registry", certificates=["passport"])]),
             "suspensions[0].certificates"),
            ("bad municipality",
             Ministry.payload(base, [entry("x", "registry", municipalities=["14100"])]),
             "suspensions[0].municipalities"),
            ("reason with a control character (its value never echoed)",
             Ministry.payload(base, [entry("x", "registry", reason=MARK + "-bad\u0001")]),
             "suspensions[0].reason"),
            ("duplicate ids", Ministry.payload(base, [entry("x", "registry"),
                                                      entry("x", "vendor")]),
             "suspensions[1].id"),
            ("negative sequence", Ministry.payload(-1, good), "sequence"),
            ("fractional sequence", Ministry.payload(base, good).replace(
                b'"sequence": %d' % base, b'"sequence": %d.5' % base), "sequence"),
            ("wrong type", Ministry.payload(base, good, type="other-list"), "type"),
            ("expires_at before issued_at",
             Ministry.payload(base, good, issued=now_utc(),
                              expires=now_utc() - datetime.timedelta(hours=1)), "expires_at"),
            ("unknown top-level field", Ministry.payload(base, good, extra=1), "extra"),
        ]
        bad = []
        for label, payload, path in cases:
            r = push(d, ministry.sign_tool(payload))
            try:
                doc = harness.problem_ok(r, 400, "LIST_MALFORMED")
                field = doc.get("field")
                expect(isinstance(field, str) and field, "no field member: %r" % doc)
                expect(path in field or field in path, "field %r, want %r" % (field, path))
                expect(MARK not in r.text(), "the answer echoes a value of the list")
            except AssertionError as e:
                bad.append("%s: %s" % (label, e))
        payload = Ministry.payload(base, good)
        env_cases = [
            ("not JSON", b"{not json", None),
            ("payload not base64", Ministry.envelope(payload, [ministry.sig("dev", payload)],
                                                     payload_text="%%%not base64%%%"),
             "payload"),
            ("alg not ed25519", Ministry.envelope(payload, [dict(ministry.sig("dev", payload),
                                                                 alg="rsa")]),
             "signatures[0].alg"),
            ("sig not base64", Ministry.envelope(payload, [dict(ministry.sig("dev", payload),
                                                                sig="***")]),
             "signatures[0].sig"),
            ("unknown envelope field", Ministry.envelope(payload, [ministry.sig("dev", payload)],
                                                         note="x"), "note"),
            ("no signatures member", json.dumps({"payload": base64.b64encode(payload).decode()})
             .encode(), "signatures"),
        ]
        for label, body, path in env_cases:
            r = push(d, body)
            try:
                doc = harness.problem_ok(r, 400, "LIST_MALFORMED")
                if path is not None:
                    field = doc.get("field")
                    expect(isinstance(field, str) and (path in field or field in path),
                           "field %r, want %r" % (field, path))
            except AssertionError as e:
                bad.append("%s: %s" % (label, e))
        expect(not bad, "; ".join(bad))
        LOGBOOK.expect(d, m, "malformed lists (no change)", [])
        expect(sequence(d) == state["seq"], "sequence in force %r" % sequence(d))
        store.suspended("koseki-full", "ministry")
        store.issued("residence")
    point("malformed lists (unknown field, bad versions/mode/certificate/municipality, "
          "missing plugin, a reason with a control character, duplicate ids, bad sequence, "
          "wrong type, expiry before issue; envelopes not JSON, not base64, another alg): "
          "400 LIST_MALFORMED naming the field, never echoing a value; nothing changes",
          malformed)

    def badly_signed():
        s = state["seq"] + 1
        m = LOGBOOK.mark(d)
        payload = Ministry.payload(s, [])
        other = Ministry.payload(s, [entry("z", "registry")])
        cases = [
            ("signed by an unconfigured key under the configured key id",
             Ministry.envelope(payload, [ministry.sig("second", payload,
                                                       ministry.key_id("dev"))])),
            ("signed by an unconfigured key (unknown key id)",
             Ministry.envelope(payload, [ministry.sig("second", payload)])),
            ("signed by a rogue key (unknown key id)",
             ministry.envelope(payload, [ministry.sig("rogue", payload)])),
            ("the configured key's signature over other bytes",
             Ministry.envelope(payload, [ministry.sig("dev", other)])),
            ("a configured key id with a well-formed but wrong signature",
             Ministry.envelope(payload, [{"key_id": ministry.key_id("dev"), "alg": "ed25519",
                                          "sig": base64.b64encode(b"\0" * 64).decode()}])),
            ("no signature at all", Ministry.envelope(payload, [])),
            ("a bad signature over a malformed payload (401 before the payload is read)",
             Ministry.envelope(b'{"type": 1}', [ministry.sig("rogue", b'{"type": 1}')])),
        ]
        bad = []
        for label, body in cases:
            try:
                harness.problem_ok(push(d, body), 401, "LIST_SIGNATURE_INVALID")
            except AssertionError as e:
                bad.append("%s: %s" % (label, e))
        expect(not bad, "; ".join(bad))
        LOGBOOK.expect(d, m, "badly signed lists (no change)", [])
        expect(sequence(d) == state["seq"], "sequence in force %r" % sequence(d))
        store.suspended("koseki-full", "ministry")
        got = metric(d, "madoguchi_ministry_lists_total", {"origin": "admin",
                                                           "result": "signature_invalid"})
        expect(got and got >= len(cases), "lists_total{admin,signature_invalid} %r" % got)
    point("badly signed lists (wrong key under the configured key id, unknown key ids, a "
          "signature over other bytes, a wrong signature, none): 401 LIST_SIGNATURE_INVALID; "
          "nothing changes", badly_signed)

    def newer_lifts():
        m = LOGBOOK.mark(d)
        # An extra signature by an unknown key does not spoil a list the configured key signed.
        s = next_seq()
        payload = Ministry.payload(s, [])
        r = push(d, Ministry.envelope(payload, [ministry.sig("rogue", payload),
                                                ministry.sig("dev", payload)]))
        expect_status(r, 200, "a newer empty list (dev + an unknown key)")
        state["seq"] = s
        LOGBOOK.expect(d, m, "a newer list without the entry",
                       [("suspension_lifted", "ministry", "vendor")])
        for t in KOSEKI:
            store.issued(t)
        expect(plugin_view(d, "vendor")["state"] == "serving", "vendor not serving")
        expect(sequence(d) == s, "sequence %r" % sequence(d))
    point("a newer list without the entry lifts it: the koseki types are issued again "
          "(a signature by an unknown key beside the configured one is ignored)", newer_lifts)

    def versions():
        push_ok([{"id": "v-inst", "plugin": "vendor", "reason": R_MINISTRY}],
                "a list naming the instance, not the plugin")
        store.issued("koseki-full")
        push_ok([entry("v-99", "vendor", versions=">=99")], "a list for vendor >=99")
        for t in KOSEKI:
            store.issued(t)
        v = plugin_view(d, "vendor")
        expect(v["state"] == "serving" and v["suspensions"] == [],
               "GET /v1/plugins vendor %r" % v)
        push_ok([entry("v-1", "vendor", versions=">=1.0.0, <99")], "a list for vendor <99")
        store.suspended("koseki-full", "ministry")
        expect(plugin_view(d, "vendor")["state"] == "suspended", "vendor not suspended")
        push_ok([entry("v-rc", "vendor", versions="=1")], "a list for vendor =1")
        store.suspended("koseki-individual", "ministry")  # 1.0.0 == 1
    point("plugin and version scope: a list naming the city's instance name (\"vendor\") "
          "instead of the plugin (fujitsu-like) does not suspend it; one for fujitsu-like "
          ">=99 does not (1.0.0); '>=1.0.0, <99' and '=1' do", versions)

    def municipalities():
        push_ok([entry("m-other", "vendor", municipalities=["131016"])],
                "a list for another municipality")
        for t in KOSEKI:
            store.issued(t)
        push_ok([entry("m-this", "vendor", municipalities=["131016", "141003"],
                       certificates=["koseki-full"])], "a list for this municipality")
        store.suspended("koseki-full", "ministry")
        store.issued("koseki-individual")
        # A local resume of a type the ministry does not hold is no conflict; of all is.
        r = admin(d, "POST", "/v1/plugins/vendor/resume", {"certificates": ["koseki-individual"]})
        expect_status(r, 200, "resume vendor [koseki-individual]")
        doc = harness.problem_ok(admin(d, "POST", "/v1/plugins/vendor/resume", {}), 409,
                                 "SUSPENSION_HELD")
        expect((doc.get("suspension") or {}).get("source") == "ministry",
               "holder %r" % doc.get("suspension"))
    point("municipality scope: a list for 131016 only does not suspend this appliance "
          "(141003); one naming 141003 for koseki-full suspends that type only (a local "
          "resume of koseki-individual is 200, of every type 409)", municipalities)

    # -- 4. an expired list
    def expired():
        s = push_ok([entry("e-1", "vendor", certificates=["koseki-full"])],
                    "an expired list", issued=now_utc() - datetime.timedelta(days=2),
                    expires=now_utc() - datetime.timedelta(days=1))
        store.suspended("koseki-full", "ministry")
        store.issued("koseki-attachment")
        r = d.admin_get("/readyz")
        expect(r.status == 200 and r.text().startswith("degraded"),
               "admin /readyz: %d %r" % (r.status, r.body[:200]))
        with d.metrics() as h:
            r = h.request("GET", "/readyz", headers={"Connection": "close"})
        expect(r.status == 200 and r.text().startswith("degraded"),
               "metrics listener /readyz: %d %r" % (r.status, r.body[:200]))
        got = metric(d, "madoguchi_ministry_list_expired")
        expect(got == 1, "madoguchi_ministry_list_expired %r" % got)
        ml = kill_switch_status(d).get("ministry_list") or {}
        expect(ml.get("sequence") == s and ml.get("expired") is True,
               "GET /v1/status kill_switch.ministry_list %r" % ml)
        # Never fail-open: after a restart the expired list is still in force, still degraded.
        store.close()
        rc = d.stop()
        d.start()
        expect(rc == 0, "exit status %r on SIGTERM" % rc)
        store.suspended("koseki-full", "ministry")
        r = d.admin_get("/readyz")
        expect(r.status == 200 and r.text().startswith("degraded"),
               "/readyz after a restart: %d %r" % (r.status, r.body[:200]))
        got = metric(d, "madoguchi_ministry_list_expired")
        expect(got == 1, "madoguchi_ministry_list_expired after a restart %r" % got)
        # A newer list that has not expired: ready again.
        push_ok([entry("e-2", "vendor", certificates=["koseki-full"])], "a fresh list")
        r = d.admin_get("/readyz")
        expect(r.status == 200 and not r.text().startswith("degraded"),
               "/readyz after a fresh list: %d %r" % (r.status, r.body[:200]))
        got = metric(d, "madoguchi_ministry_list_expired")
        expect(got == 0, "madoguchi_ministry_list_expired after a fresh list %r" % got)
        store.suspended("koseki-full", "ministry")
    point("an expired list is accepted and enforced (503), /readyz says degraded (200, "
          "body \"degraded…\") on both listeners, madoguchi_ministry_list_expired 1, status "
          "expired true, all of it again after a restart; a newer fresh list makes it ready "
          "again", expired)

    def expiring():
        # A list that is fresh when it arrives and expires while in force.
        expires = now_utc().replace(microsecond=0) + datetime.timedelta(seconds=3)
        push_ok([entry("x-1", "vendor", certificates=["koseki-attachment"])],
                "a list expiring in 3 s", issued=expires - datetime.timedelta(hours=1),
                expires=expires)
        r = d.admin_get("/readyz")
        expect(r.status == 200 and not r.text().startswith("degraded"),
               "/readyz before the expiry: %d %r" % (r.status, r.body[:200]))
        time.sleep(max(0.0, (expires - now_utc()).total_seconds()))
        wait_for(lambda: d.admin_get("/readyz").text().startswith("degraded"), 1.5 * SLACK,
                 what="/readyz degraded after expires_at")
        wait_for(lambda: metric(d, "madoguchi_ministry_list_expired") == 1, 2.0 * SLACK,
                 what="madoguchi_ministry_list_expired 1 after expires_at")
        store.suspended("koseki-attachment", "ministry")
        store.issued("koseki-full")
    point("a list that expires while in force: /readyz turns degraded and "
          "madoguchi_ministry_list_expired 1 within about a second of expires_at; still "
          "enforced", expiring)

    def scope_change_logged():
        # The same entry id, another scope: what is suspended changed, so the log must say so.
        problems = []
        push_ok([entry("e-2", "vendor", certificates=["koseki-full"])], "entry e-2")
        store.issued("koseki-individual")
        path, n = LOGBOOK.mark(d)
        push_ok([entry("e-2", "vendor", certificates=["*"])], "the entry widened to every type")
        store.suspended("koseki-individual", "ministry")
        lines = [e for e in d.logs()[n:] if e.get("event") in CHANGE_EVENTS]
        if not lines:
            problems.append("no suspension_set/suspension_lifted line for a list that widened "
                            "entry e-2 (vendor) from [koseki-full] to [*]: koseki-individual "
                            "and koseki-attachment are now suspended")
        path, n = LOGBOOK.mark(d)
        push_ok([entry("e-2", "registry", certificates=["seal"])],
                "the entry moved to another plugin")
        store.issued("koseki-full")
        store.suspended("seal", "ministry")
        lines = [(e.get("event"), e.get("plugin")) for e in d.logs()[n:]
                 if e.get("event") in CHANGE_EVENTS]
        if sorted(lines) != [("suspension_lifted", "fujitsu-like"),
                             ("suspension_set", "sqlite-registry")]:
            problems.append("a list that moved entry e-2 from vendor [*] to registry [seal] "
                            "(vendor now serving, registry seal refused) logged %r" % lines)
        expect(not problems, "; ".join(problems))
    point("a newer list that changes an entry under the same id (koseki-full -> every type; "
          "then vendor -> registry) logs the change", scope_change_logged)

    # -- 7. isolation under load
    def isolation():
        push_ok([entry("load", "vendor")], "a list suspending vendor for the load")
        if not os.access(KIOSK, os.X_OK):
            raise AssertionError("madoguchi-kiosk-sim is not built (%s)" % KIOSK)
        stop = threading.Event()
        koseki = collections.Counter()
        koseki_bad = []

        def koseki_load():
            c = Client.for_daemon(d, timeout=15 * SLACK)
            people = city.issuable("koseki-full", 20)
            i = 0
            try:
                while not stop.is_set():
                    r = people[i % len(people)]
                    t = KOSEKI[i % 3]
                    i += 1
                    body, sent = request_body(t, raw=True)
                    try:
                        resp = c.issue(city.card(r), body)
                        suspended_answer(resp, sent, t, "ministry")
                        koseki["503"] += 1
                    except Exception as e:  # noqa: BLE001  (reported below)
                        koseki_bad.append(str(e)[:200])
                        c.close()
                    time.sleep(0.005)
            finally:
                c.close()
        th = threading.Thread(target=koseki_load, daemon=True)
        th.start()
        outs = {}
        try:
            for t in REGISTRY_TYPES:
                argv = [KIOSK, "--url", "https://127.0.0.1:%d" % d.store_port, "--ca",
                        d.store_ca, "--cert", d.center_cert, "--key", d.center_key,
                        "--cards", city.cards_dir, "--residents", city.residents_path,
                        "--certificate", t, "--count", str(LOAD_PER_TYPE),
                        "--connections", str(LOAD_CONNECTIONS), "--json",
                        "--timeout", str(int(30 * SLACK))]
                p = subprocess.run(argv, capture_output=True, text=True,
                                   timeout=120 * SLACK)
                try:
                    outs[t] = json.loads(p.stdout)
                except ValueError:
                    raise AssertionError("kiosk-sim (%s) exit %d, no JSON: %s %s"
                                         % (t, p.returncode, p.stdout[-300:],
                                            p.stderr[-600:]))
                outs[t]["exit"] = p.returncode
        finally:
            stop.set()
            th.join(30 * SLACK)
        bad = []
        total = collections.Counter()
        for t, o in outs.items():
            total.update(o.get("by_status") or {})
            tap.diag("kiosk-sim %s: completed %s by_status %s by_code %s unexpected %s "
                     "latency %s" % (t, o.get("completed"), o.get("by_status"),
                                     o.get("by_code"), o.get("unexpected_refusals"),
                                     o.get("latency_ms")))
            if o["exit"] != 0:
                bad.append("%s: exit %d" % (t, o["exit"]))
            if o.get("completed") != LOAD_PER_TYPE or o.get("transport_errors"):
                bad.append("%s: completed %r of %d, transport errors %r"
                           % (t, o.get("completed"), LOAD_PER_TYPE, o.get("transport_errors")))
            if o.get("mismatches") or o.get("verify_failures"):
                bad.append("%s: mismatches %r verify_failures %r"
                           % (t, o.get("mismatches"), o.get("verify_failures")))
            if o.get("unexpected_refusals"):
                bad.append("%s: unexpected refusals %r" % (t, o.get("unexpected_refusals")))
            if "SERVICE_SUSPENDED" in (o.get("by_code") or {}):
                bad.append("%s: SERVICE_SUSPENDED %r" % (t, o["by_code"]))
        tap.diag("koseki requests during the load: %r, bad %d" % (dict(koseki),
                                                                  len(koseki_bad)))
        expect(total.get("201", 0) >= LOAD_PER_TYPE, "too few 201: %r" % dict(total))
        expect(koseki["503"] >= 10, "only %d koseki requests during the load" % koseki["503"])
        expect(not koseki_bad, "koseki answers: %s" % "; ".join(koseki_bad[:3]))
        expect(not bad, "; ".join(bad))
    point("isolation: vendor suspended by the ministry; %d registry-type requests over %d "
          "connections (kiosk-sim) are all 201 or a refusal residents.jsonl predicts, never "
          "SERVICE_SUSPENDED, no transport error; koseki requests meanwhile are all 503 "
          "(source ministry)" % (LOAD_PER_TYPE * len(REGISTRY_TYPES), LOAD_CONNECTIONS),
          isolation)

    # -- 5. persistence
    persist = {}

    def set_all():
        m = LOGBOOK.mark(d)
        # The ministry holds registry [tax-income] (and lifts the vendor entry).
        s = push_ok([entry("p-tax", "registry", certificates=["tax-income"])],
                    "the list kept over restarts")
        persist["seq"] = s
        for t in KOSEKI:
            store.issued(t)
        # auto: the vendor backend swaps records under concurrent requests.
        people = city.issuable("koseki-full", 24)
        faults = 0
        for attempt in range(3):
            sim.control("mode swap")
            try:
                res = ic.send_together(d, [(city.card(r), request_body("koseki-full"))
                                           for r in people], timeout=15 * SLACK)
            finally:
                sim.control("mode normal")
            codes = collections.Counter(
                (resp.json().get("code") if not isinstance(resp, Exception) and
                 resp.status != 201 else ("ISSUED" if not isinstance(resp, Exception)
                                          else "transport")) for resp in res)
            tap.diag("swap mode, %d koseki requests at once: %r" % (len(people), dict(codes)))
            faults += codes.get("INTEGRITY_FAULT", 0)
            if faults:
                break
        expect(faults >= 1, "no INTEGRITY_FAULT in swap mode")
        d.wait_event("suspension_persisted", timeout=5 * SLACK,
                     pred=lambda e: e.get("plugin") == "vendor")
        # local: registry [seal]
        r = admin(d, "POST", "/v1/plugins/registry/suspend",
                  {"reason": R_PERSIST, "certificates": ["seal"], "mode": "drain"})
        expect_status(r, 200, "suspend registry [seal]")
        LOGBOOK.expect(d, m, "ministry list p-tax, auto vendor, local registry [seal]",
                       [("suspension_set", "ministry", "registry"),
                        ("suspension_lifted", "ministry", "vendor"),
                        ("suspension_set", "auto", "vendor"),
                        ("suspension_set", "local", "registry")])
        persist["before"] = suspensions(d)
        srcs = sorted(x["source"] for x in persist["before"]["suspensions"])
        expect(srcs == ["auto", "local", "ministry"], "sources in force %r" % srcs)
    point("set one suspension of each source: ministry (registry tax-income), auto (vendor, "
          "after an INTEGRITY_FAULT in swap mode), local (registry seal, drain)", set_all)

    def first_requests(label):
        """The first store traffic after the start: three requests at once, then the rest."""
        jobs = []
        for t in ("seal", "tax-income", "koseki-full"):
            body, sent = request_body(t, raw=True)
            jobs.append((t, city.card(city.issuable(t)), body, sent))
        res = [None] * len(jobs)

        def one(i):
            t, card, body, sent = jobs[i]
            c = Client.for_daemon(d, timeout=15 * SLACK)
            try:
                res[i] = c.issue(card, body)
            except Exception as e:  # noqa: BLE001  (reported below)
                res[i] = e
            finally:
                c.close()
        ths = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(jobs))]
        for th in ths:
            th.start()
        for th in ths:
            th.join(30 * SLACK)
        want = {"seal": ("local", R_PERSIST), "tax-income": ("ministry", R_MINISTRY),
                "koseki-full": ("auto", None)}
        bad = []
        for (t, card, body, sent), resp in zip(jobs, res):
            try:
                expect(not isinstance(resp, Exception) and resp is not None,
                       "%s: %r" % (t, resp))
                suspended_answer(resp, sent, t, *want[t])
            except AssertionError as e:
                bad.append(str(e))
        expect(not bad, "%s: %s" % (label, "; ".join(bad)))

    def same_as_before(extra=()):
        after = suspensions(d)
        key = lambda x: (x["source"], x["plugin"], json.dumps(x["scope"], sort_keys=True))
        want = sorted(persist["before"]["suspensions"] + list(extra), key=key)
        got = sorted(after["suspensions"], key=key)
        expect(got == want, "GET /v1/suspensions after the restart:\n%r\nbefore:\n%r"
               % (got, want))
        expect((after.get("ministry_list") or {}).get("sequence") == persist["seq"],
               "ministry_list %r" % after.get("ministry_list"))

    def clean_restart():
        expect("before" in persist, "nothing was set")
        store.close()
        rc = d.stop()
        d.start()
        first_requests("after a clean restart")
        same_as_before()
        store.issued("residence")
        expect(metric(d, "madoguchi_plugin_suspended", {"plugin": "vendor", "source": "auto"})
               == 1, "madoguchi_plugin_suspended{vendor,auto} not 1 after the restart")
        expect(metric(d, "madoguchi_ministry_list_sequence") == persist["seq"],
               "madoguchi_ministry_list_sequence after the restart")
        expect(rc == 0, "exit status %r on SIGTERM" % rc)
    point("after a clean restart the very first requests are refused by each source (seal: "
          "local, tax-income: ministry, koseki-full: auto); GET /v1/suspensions is as before; "
          "residence is issued", clean_restart)

    def kill9():
        expect("before" in persist, "nothing was set")
        # One more change, killed right after its answer: an API that said yes must hold.
        r = admin(d, "POST", "/v1/plugins/registry/suspend",
                  {"reason": R_CRASH, "certificates": ["residence-record"]})
        d.proc.send_signal(signal.SIGKILL)
        expect_status(r, 200, "suspend registry [residence-record]")
        crash = [x for x in suspensions_from(r) if x["scope"]["certificates"] ==
                 ["residence-record"]]
        store.close()
        d.proc.wait(timeout=10)
        d._log_file.close()
        d.start()
        first_requests("after kill -9")
        store.suspended("residence-record", "local", R_CRASH)
        extra = [dict(x, plugin="registry") for x in crash]
        same_as_before(extra)
        store.issued("residence")
    point("after kill -9 (right after a suspend was answered) and a restart, every "
          "suspension is in force for the first requests, the last one included; GET "
          "/v1/suspensions is as before plus that one", kill9)

    def ack():
        m = LOGBOOK.mark(d)
        r = admin(d, "POST", "/v1/plugins/vendor/resume", {})
        doc = harness.problem_ok(r, 409, "SUSPENSION_HELD")
        expect((doc.get("suspension") or {}).get("source") == "auto", "holder %r"
               % doc.get("suspension"))
        r = admin(d, "POST", "/v1/plugins/vendor/resume", {"ack_integrity_fault": True})
        expect_status(r, 200, "resume vendor with ack_integrity_fault")
        LOGBOOK.expect(d, m, "acknowledged integrity fault",
                       [("suspension_lifted", "auto", "vendor")])
        for t in KOSEKI:
            store.issued(t)
    point("the auto suspension: a plain resume is 409 SUSPENSION_HELD (source auto); with "
          "ack_integrity_fault it is lifted and the vendor serves again", ack)

    store.close()
    harness.stop_point(tap, d, "main daemon exits 0 on SIGTERM")


def suspensions_from(resp):
    try:
        return resp.json().get("suspensions") or []
    except ValueError:
        return []


# ------------------------------------------------------------ group: threshold 2, two keys

def group_threshold(tap, city, ministry, sims):
    d = city.start_daemon(config(city, None, {"keys": [ministry.pub("dev"),
                                                        ministry.pub("second")],
                                               "threshold": 2}))
    store = Store(d, city)
    point = harness.Guard(tap, d, [store]).check

    def threshold():
        payload = Ministry.payload(7, [entry("t-seal", "registry", certificates=["seal"])])
        one = [("dev only", [ministry.sig("dev", payload)]),
               ("second only", [ministry.sig("second", payload)]),
               ("dev twice (distinct keys count once)", [ministry.sig("dev", payload),
                                                         ministry.sig("dev", payload)]),
               ("dev and a rogue key", [ministry.sig("dev", payload),
                                        ministry.sig("rogue", payload)]),
               ("dev, and second over other bytes",
                [ministry.sig("dev", payload), ministry.sig("second", payload + b" ")])]
        bad = []
        for label, sigs in one:
            try:
                harness.problem_ok(push(d, Ministry.envelope(payload, sigs)), 401,
                                   "LIST_SIGNATURE_INVALID")
            except AssertionError as e:
                bad.append("%s: %s" % (label, e))
        r = push(d, ministry.sign_tool(payload, "dev"))
        try:
            harness.problem_ok(r, 401, "LIST_SIGNATURE_INVALID")
        except AssertionError as e:
            bad.append("ministry-sign with dev only: %s" % e)
        expect(not bad, "; ".join(bad))
        expect(sequence(d) == 0, "a list under the threshold was applied")
        store.issued("seal")
        r = push(d, ministry.sign_tool(payload, "dev", "second"))
        expect_status(r, 200, "signed by both (ministry-sign --key dev --key second)")
        store.suspended("seal", "ministry", R_MINISTRY)
        store.issued("residence")
        payload2 = Ministry.payload(8, [])
        r = push(d, Ministry.envelope(payload2, [ministry.sig("second", payload2),
                                                 ministry.sig("rogue", payload2),
                                                 ministry.sig("dev", payload2)]))
        expect_status(r, 200, "signed by both and a rogue key (hand-made envelope)")
        store.issued("seal")
    point("threshold 2 with two configured keys: a list signed by one key (or one key twice, "
          "or one plus an unknown key, or one plus a bad signature) is 401 "
          "LIST_SIGNATURE_INVALID; signed by both it is applied (200)", threshold)

    def rotated():
        payload = Ministry.payload(9, [entry("t-tax", "registry", certificates=["tax-income"])])
        expect_status(push(d, ministry.sign_tool(payload, "dev", "second")), 200,
                      "a list signed by both")
        store.close()
        d.config["ministry"] = {"keys": [ministry.pub("second")], "threshold": 1}
        d.write_config()
        rc = d.stop()
        d.start()
        expect(rc == 0, "exit status %r on SIGTERM" % rc)
        # The stored list was verified when it arrived: it stays in force under the new keys.
        store.suspended("tax-income", "ministry")
        expect(sequence(d) == 9, "sequence after the key change %r" % sequence(d))
        payload = Ministry.payload(10, [])
        harness.problem_ok(push(d, ministry.sign_tool(payload, "dev")), 401,
                           "LIST_SIGNATURE_INVALID")
        store.suspended("tax-income", "ministry")
        expect_status(push(d, ministry.sign_tool(payload, "second")), 200,
                      "a list signed by the key still configured")
        store.issued("tax-income")
    point("key rotation: a list in force stays in force after a restart with other ministry "
          "keys; a list by the removed key is then 401, by the remaining key 200", rotated)
    store.close()
    harness.stop_point(tap, d, "threshold daemon exits 0 on SIGTERM")


# ----------------------------------------------------------------------- group: the feed

class FeedServer:
    """The ministry's feed on 127.0.0.1 over HTTPS (dev-pki's server.pem, SANs 127.0.0.1):
    GET /list answers the current signed list with an ETag and 304 for a matching
    If-None-Match; mode "500" answers 500, "garbage" a body that is no list.  Every request
    is recorded (time, If-None-Match, status)."""

    def __init__(self, pki):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(os.path.join(pki, "server.pem"), os.path.join(pki, "server.key"))
        self.lock = threading.Lock()
        self.requests = []
        self.mode = "ok"
        self.body = b""
        self.etag = None
        self.port = 0
        self.httpd = None
        self.thread = None

    def serve(self, body, etag=None):
        with self.lock:
            self.mode = "ok"
            self.body = body
            self.etag = etag or '"%s"' % hashlib.sha256(body).hexdigest()[:20]

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode

    def log(self):
        with self.lock:
            return list(self.requests)

    def start(self):
        feed = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                inm = self.headers.get("If-None-Match")
                with feed.lock:
                    mode, body, etag = feed.mode, feed.body, feed.etag
                if self.path != "/list":
                    status, body, headers = 404, b"not found", {}
                elif mode == "500":
                    status, body, headers = 500, b"internal error", {}
                elif mode == "stall":  # recorded on arrival; never answered
                    with feed.lock:
                        feed.requests.append({"t": time.monotonic(), "inm": inm,
                                              "status": None, "etag": None})
                    time.sleep(3.5)
                    self.close_connection = True
                    return
                elif mode == "garbage":
                    status, body, headers = 200, b"<html>this is not a list</html>", \
                        {"ETag": '"garbage"'}
                elif inm is not None and inm == etag:
                    status, body, headers = 304, b"", {"ETag": etag}
                else:
                    status, headers = 200, {"ETag": etag}
                with feed.lock:
                    feed.requests.append({"t": time.monotonic(), "inm": inm, "status": status,
                                          "etag": headers.get("ETag")})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "close")
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *a):
                pass

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

            def get_request(s):
                conn, addr = s.socket.accept()
                conn.settimeout(5)
                return feed.ctx.wrap_socket(conn, server_side=True,
                                            do_handshake_on_connect=False), addr

            def handle_error(s, request, client_address):
                pass  # a client that went away mid-handshake

        self.httpd = Server(("127.0.0.1", self.port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(10)
            self.httpd = None


def group_feed(tap, city, ministry, sims):
    feed = FeedServer(city.pki)
    lists = {}
    for s, entries in ((1, [entry("f-seal", "registry", certificates=["seal"])]),
                       (2, [entry("f-tax", "registry", certificates=["tax-income"])]),
                       (3, [])):
        lists[s] = ministry.sign_tool(Ministry.payload(s, entries))
    feed.serve(lists[1])
    feed.start()
    d = None
    try:
        d = city.start_daemon(config(city, None, {
            "keys": [ministry.pub("dev")], "threshold": 1,
            "feed_url": "https://127.0.0.1:%d/list" % feed.port,
            "feed_ca": "pki/store-ca.pem", "poll_interval": "%ds" % int(POLL_S),
            "feed_timeout": "2s"}))
        store = Store(d, city)
        point = harness.Guard(tap, d, [store]).check
        feed_points(tap, point, d, store, feed, lists, ministry)
        store.close()
    finally:
        feed.stop()
        if d is not None:
            harness.stop_point(tap, d, "feed daemon exits 0 on SIGTERM")


def feed_points(tap, point, d, store, feed, lists, ministry):
    state = {}
    ministry_ref = [ministry]

    def status_feed():
        f = kill_switch_status(d).get("feed")
        expect(isinstance(f, dict), "GET /v1/status kill_switch.feed %r" % f)
        return f

    def first():
        wait_for(lambda: sequence(d) == 1, (POLL_S + 2) * SLACK, what="list 1 in force")
        store.suspended("seal", "ministry", R_MINISTRY)
        store.issued("tax-income")
        f = status_feed()
        expect(f.get("failures") == 0 and f.get("etag") == feed.etag,
               "kill_switch.feed %r (served ETag %s)" % (f, feed.etag))
    point("feed: the list served at start is polled at once and enforced (seal 503, source "
          "ministry); kill_switch.feed shows its ETag", first)

    def newer():
        m = LOGBOOK.mark(d)
        t0 = time.monotonic()
        feed.serve(lists[2])
        wait_for(lambda: sequence(d) == 2, (POLL_S + 1) * SLACK + 0.5, step=0.02,
                 what="list 2 in force")
        took = time.monotonic() - t0
        tap.diag("feed: a newer list in force %.2f s after it was served (poll_interval %.0f s)"
                 % (took, POLL_S))
        expect(took <= (POLL_S + 1) * SLACK, "in force after %.2f s" % took)
        LOGBOOK.expect(d, m, "feed list 2 (seal lifted, tax-income set)",
                       [("suspension_lifted", "ministry", "registry"),
                        ("suspension_set", "ministry", "registry")])
        store.suspended("tax-income", "ministry")
        store.issued("seal")
        state["applied_at"] = time.monotonic()
    point("feed: a newer list is in force within poll_interval + 1 s; the lifted type is "
          "issued again, the new one refused", newer)

    def conditional():
        t_applied = state.get("applied_at", time.monotonic())
        time.sleep(2.5 * POLL_S)
        after = [q for q in feed.log() if q["t"] > t_applied]
        expect(len(after) >= 2, "only %d polls in %.1f s after the list was applied"
               % (len(after), 2.5 * POLL_S))
        bad = [q for q in after if q["inm"] != feed.etag or q["status"] != 304]
        expect(not bad, "polls after the apply without the ETag or not 304: %r (ETag %s)"
               % (bad[:3], feed.etag))
        got = metric(d, "madoguchi_ministry_feed_polls_total", {"result": "not_modified"})
        expect(got and got >= 2, "madoguchi_ministry_feed_polls_total{not_modified} %r" % got)
    point("feed: after the list is applied every poll carries If-None-Match with its ETag "
          "and gets 304", conditional)

    def in_force_unchanged(label):
        sus = suspensions(d)
        expect((sus.get("ministry_list") or {}).get("sequence") == 2,
               "%s: sequence %r" % (label, sus.get("ministry_list")))
        mine = [(x["plugin"], x["scope"]["certificates"]) for x in sus["suspensions"]
                if x["source"] == "ministry"]
        expect(mine == [("sqlite-registry", ["tax-income"])], "%s: ministry suspensions %r"
               % (label, mine))

    def watch(seconds, label):
        """Samples what is in force for `seconds` (real time: the poll interval does not
        stretch under ASan): it must not change."""
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            in_force_unchanged(label)
            n += 1
            time.sleep(0.25)
        store.suspended("tax-income", "ministry")
        store.issued("seal")
        return n

    def outage_500():
        m = LOGBOOK.mark(d)
        f0 = status_feed().get("failures", 0)
        e0 = metric_sum(d, "madoguchi_ministry_feed_polls_total", {"result": "http_error"})
        feed.set_mode("500")
        watch(4.5 * POLL_S, "feed answering 500")
        f1 = status_feed()
        e1 = metric_sum(d, "madoguchi_ministry_feed_polls_total", {"result": "http_error"})
        tap.diag("feed 500: failures %r -> %r, polls{http_error} %r -> %r"
                 % (f0, f1.get("failures"), e0, e1))
        expect(f1.get("failures", 0) >= f0 + 2, "kill_switch.feed.failures %r -> %r"
               % (f0, f1.get("failures")))
        expect(e1 >= e0 + 2, "polls_total{http_error} %r -> %r" % (e0, e1))
        state["failures"] = f1.get("failures", 0)
        LOGBOOK.expect(d, m, "feed answering 500 (no change)", [])
    point("feed answering 500 for several poll intervals: the list and its suspension stay "
          "in force, kill_switch.feed.failures grows", outage_500)

    def stalled():
        m = LOGBOOK.mark(d)
        f0 = status_feed().get("failures", 0)
        n0 = len(feed.log())
        feed.set_mode("stall")
        # Backed off after the 500s: the next poll comes within 4 poll intervals.
        wait_for(lambda: len(feed.log()) > n0, (4 * POLL_S + 2) * SLACK, step=0.02,
                 what="a poll of the stalled feed")
        t_end = time.monotonic() + 2.2  # feed_timeout 2 s: the poll hangs meanwhile
        worst = 0.0
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            in_force_unchanged("feed stalled")
            store.suspended("tax-income", "ministry")
            worst = max(worst, time.monotonic() - t0)
        wait_for(lambda: status_feed().get("failures", 0) > f0, 2 * SLACK,
                 what="the stalled poll counted as a failure")
        tap.diag("feed stalled: worst admin + issuance round trip %.3f s; last_result %s"
                 % (worst, status_feed().get("last_result")))
        expect(worst < 0.5 * SLACK, "the daemon answered in %.2f s while a poll hung" % worst)
        feed.set_mode("500")
        LOGBOOK.expect(d, m, "feed stalled (no change)", [])
    point("feed stalled (accepts, never answers): the daemon keeps answering at once while "
          "the poll hangs, the poll times out (feed_timeout) as a failure, nothing changes",
          stalled)

    def outage_down():
        m = LOGBOOK.mark(d)
        feed.stop()
        f0 = status_feed().get("failures", 0)
        watch(6 * POLL_S, "feed down")
        f1 = status_feed().get("failures", 0)
        tap.diag("feed down: failures %r -> %r (%s)" % (f0, f1,
                                                        status_feed().get("last_result")))
        expect(f1 > f0, "kill_switch.feed.failures %r -> %r with the feed down" % (f0, f1))
        LOGBOOK.expect(d, m, "feed down (no change)", [])
    point("feed down (connection refused): nothing changes in force, failures keep growing",
          outage_down)

    def garbage():
        m = LOGBOOK.mark(d)
        r0 = metric_sum(d, "madoguchi_ministry_lists_total", {"origin": "feed"})
        feed.set_mode("garbage")
        n0 = len(feed.log())
        feed.start()  # the same port again
        # After the outage the poller backs off up to 4 poll intervals.
        wait_for(lambda: len(feed.log()) > n0, (4 * POLL_S + 2) * SLACK, what="a poll")
        watch(1.5 * POLL_S, "feed serving garbage")
        r1 = metric_sum(d, "madoguchi_ministry_lists_total", {"origin": "feed"})
        expect(r1 > r0, "the garbage was not counted (lists_total{feed} %r -> %r)" % (r0, r1))
        LOGBOOK.expect(d, m, "feed serving garbage (no change)", [])
    point("feed back but serving garbage: refused, nothing changes in force", garbage)

    def badly_signed():
        m = LOGBOOK.mark(d)
        r0 = metric_sum(d, "madoguchi_ministry_lists_total", {"origin": "feed",
                                                              "result": "signature_invalid"})
        payload = Ministry.payload(50, [])
        feed.serve(Ministry.envelope(payload, [ministry_ref[0].sig("rogue", payload)]))
        n0 = len(feed.log())
        wait_for(lambda: len(feed.log()) > n0, (2 * POLL_S + 1) * SLACK, what="a poll")
        watch(1.5 * POLL_S, "feed serving a newer list signed by an unknown key")
        r1 = metric_sum(d, "madoguchi_ministry_lists_total", {"origin": "feed",
                                                              "result": "signature_invalid"})
        expect(r1 > r0, "lists_total{feed,signature_invalid} %r -> %r" % (r0, r1))
        LOGBOOK.expect(d, m, "feed serving a badly signed list (no change)", [])
    point("feed serving a newer list signed by an unknown key: refused, nothing changes",
          badly_signed)

    def older_replayed():
        m = LOGBOOK.mark(d)
        u0 = metric_sum(d, "madoguchi_ministry_feed_polls_total", {"result": "unchanged"})
        feed.serve(lists[1])  # older
        n0 = len(feed.log())
        wait_for(lambda: len([q for q in feed.log()[n0:] if q["status"] == 200]) >= 1,
                 (2 * POLL_S + 1) * SLACK, what="the older list fetched")
        watch(1.5 * POLL_S, "feed serving an older list")
        feed.serve(lists[2], etag='"replayed-2"')  # the list in force, under another ETag
        n1 = len(feed.log())
        wait_for(lambda: len([q for q in feed.log()[n1:] if q["status"] == 200]) >= 1,
                 (2 * POLL_S + 1) * SLACK, what="the replayed list fetched")
        watch(1.5 * POLL_S, "feed serving the list in force again")
        u1 = metric_sum(d, "madoguchi_ministry_feed_polls_total", {"result": "unchanged"})
        expect(u1 >= u0 + 2, "polls_total{unchanged} %r -> %r" % (u0, u1))
        later = [q for q in feed.log()[n1:] if q["status"] == 200]
        expect(len(later) == 1, "the replayed list was fetched %d times (no If-None-Match "
               "after it was judged?): %r" % (len(later), feed.log()[n1:]))
        LOGBOOK.expect(d, m, "older and replayed lists from the feed (no change)", [])
    point("feed serving an older list, then the list in force again under a new ETag: "
          "both ignored (counted unchanged), nothing changes; each is fetched once, then 304",
          older_replayed)

    def recovers():
        m = LOGBOOK.mark(d)
        t0 = time.monotonic()
        feed.serve(lists[3])
        wait_for(lambda: sequence(d) == 3, (POLL_S + 1) * SLACK + 0.5, step=0.02,
                 what="list 3 in force")
        tap.diag("feed: list 3 in force %.2f s after it was served" % (time.monotonic() - t0))
        store.issued("tax-income")
        store.issued("seal")
        expect(status_feed().get("failures") == 0, "failures %r" % status_feed())
        LOGBOOK.expect(d, m, "feed list 3 (empty)",
                       [("suspension_lifted", "ministry", "registry")])
    point("feed: a newer (empty) list after the outage lifts the suspension within "
          "poll_interval + 1 s", recovers)


# ------------------------------------------------------------------------- point 8: logs

def log_points(tap):
    bad = [(label, detail) for label, ok, detail in LOGBOOK.results if not ok]
    tap.ok(LOGBOOK.results and not bad,
           "logs: exactly one suspension_set / suspension_lifted line per change, none for a "
           "request that changed nothing (%d actions checked)" % len(LOGBOOK.results),
           "\n".join("%s: %s" % b for b in bad) or "no action was checked")

    leaks = []
    lines = 0
    for d in Daemon._all:
        for line in d.log_text(all_runs=True).splitlines():
            lines += 1
            if MARK in line:
                leaks.append(line[:300])
    tap.ok(lines > 0 and not leaks,
           "logs: no reason text of an admin call or a ministry list in any of %d log lines "
           "(reasons marked %r)" % (lines, MARK), "\n".join(leaks[:10]))


if __name__ == "__main__":
    harness.run(main)
