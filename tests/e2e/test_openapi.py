#!/usr/bin/env python3
"""test_openapi.py: docs/openapi.yaml against the real daemon.

What must hold:
  1. docs/openapi.yaml passes the pinned OpenAPI linter (Redocly CLI, recommended ruleset,
     tests/openapi/redocly.yaml) without errors or warnings;
  2. for every documented (path, method, status) the daemon's real answer, provoked on a
     demo city, has that status, a documented Content-Type and a body (and headers) that
     validate against the response's schema (JSON Schema 2020-12, $refs resolved; Ajv in
     tests/openapi/validate.mjs, one node process for all answers): one test point per
     (operation, status), failing as well when the provocation missed its status or code;
  3. coverage: every documented (operation, status) was exercised, unless the document marks
     it x-not-testable with a reason.

Daemons: one main daemon on the demo city (sqlite-registry, fujitsu-like on the vendor
simulator in stale then swap mode, two instances of the test plugin mock: one that never
answers, one whose fetch fails), its data_dir on a small tmpfs when one can be mounted (a
full disk gives AUDIT_UNAVAILABLE); and one daemon without an issuance section (the 404s of
the admin API, and /readyz while draining).

Needs tests/openapi/node_modules (scripts/install-deps runs npm ci there).
Environment: MDG_SRCDIR, MDG_BUILDDIR, MDG_SANITIZERS, MDG_PLUGINS, MDG_TEST_PLUGINS,
MDG_VENDOR_SIM; MDG_OPENAPI_ANSWERS=FILE keeps the recorded answers there (then
`node tests/openapi/validate.mjs docs/openapi.yaml FILE` checks an edited document against
them without a daemon).
"""

import base64
import collections
import datetime
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import issuance_client as ic  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402
from harness import Daemon, expect  # noqa: E402
from issuance_client import Client, request_body  # noqa: E402

SPEC = os.path.join(harness.SRCDIR, "docs", "openapi.yaml")
OPENAPI_DIR = os.path.join(harness.SRCDIR, "tests", "openapi")
REDOCLY = os.path.join(OPENAPI_DIR, "node_modules", "@redocly", "cli", "bin", "cli.js")
VALIDATE = os.path.join(OPENAPI_DIR, "validate.mjs")
RESIDENTS = 300
SLACK = 3.0 if harness.SANITIZERS else 1.0
MUNICIPALITY = "141003"
ISSUANCES = "/v1/issuances"


# ------------------------------------------------------------------------------ answers

class Answers:
    """Every answer provoked, with the (status, code) it was meant to be."""

    def __init__(self):
        self.items = []
        self.failed_steps = []  # (label, error) of provocations that raised
        self.lock = threading.Lock()

    def add(self, label, path, method, resp, want, request=None, headers_want=()):
        """want: (status, code or None), or a list of such alternatives."""
        rec = {"id": None, "label": label, "path": path, "method": method.lower(),
               "status": resp.status, "content_type": resp.header("content-type", ""),
               "headers": dict(resp.headers), "body": resp.body.decode("utf-8", "replace"),
               "want": want if isinstance(want, list) else [want],
               "headers_want": list(headers_want)}
        if request is not None:
            rec["request"] = {"content_type": request[0],
                              "body": request[1].decode("utf-8", "replace")}
        with self.lock:
            rec["id"] = len(self.items)
            self.items.append(rec)
        return resp

    def step(self, label, fn, *args):
        """Runs one provocation; an exception is recorded (and reported as a failed point)."""
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 (reported as a failing test point)
            self.failed_steps.append((label, "%s: %s\n%s" % (type(e).__name__, e,
                                                             traceback.format_exc(limit=4))))
            return None


def code_of(rec):
    try:
        doc = json.loads(rec["body"])
    except ValueError:
        return None
    return doc.get("code") if isinstance(doc, dict) else None


# ------------------------------------------------------------------------------ clients

def admin(d, method, path, body=None, content_type="application/json"):
    """One request on the admin socket; body: bytes, a JSON-able value or None."""
    data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Connection": "close"}
    if body is not None:
        headers["Content-Type"] = content_type
    with d.admin(timeout=30 * SLACK) as h:
        return h.request(method, path, headers, data)


def plain(port, method, path, timeout=harness.IO_TIMEOUT):
    with harness.Http(socket.create_connection(("127.0.0.1", port), timeout=timeout)) as h:
        return h.request(method, path, {"Connection": "close"})


def raw_store(d, data, timeout=10 * SLACK):
    """Sends raw bytes on a new store connection; the answer (the server may close early)."""
    h = harness.Http(d.connect_store(timeout=timeout))
    try:
        try:
            h.send(data)
        except OSError:
            pass
        return h.read_response()
    finally:
        h.close()


def tokyo_days(n=2):
    now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=9)
    return [(now + datetime.timedelta(days=i)).strftime("%m-%d") for i in range(n)]


def utc_in(seconds):
    return ic.utc_text(datetime.datetime.now(datetime.timezone.utc)
                       + datetime.timedelta(seconds=seconds))


class Ministry:
    """Signs suspension lists with the dev ministry key (and a rogue one nobody trusts)."""

    def __init__(self, pki):
        with open(os.path.join(pki, "ministry", "dev.key"), "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), password=None)
        self.rogue = ed25519.Ed25519PrivateKey.generate()

    @staticmethod
    def key_id(key):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
        return hashlib.sha256(raw).hexdigest()[:16]

    def signed(self, seq, entries, issued_in=-3600, expires_in=7 * 86400, rogue=False):
        payload = json.dumps({"type": "madoguchi-suspension-list", "sequence": seq,
                              "issued_at": utc_in(issued_in), "expires_at": utc_in(expires_in),
                              "suspensions": entries}).encode()
        key = self.rogue if rogue else self.key
        return json.dumps({"payload": base64.b64encode(payload).decode(),
                           "signatures": [{"key_id": self.key_id(key), "alg": "ed25519",
                                           "sig": base64.b64encode(key.sign(payload)).decode()}]
                           }).encode()


# ------------------------------------------------------------------------------ fixture

class Tmpfs:
    """A 16 MiB tmpfs for the main daemon's data_dir (so a full disk can be provoked), or a
    plain directory when mounting is not possible (then AUDIT_UNAVAILABLE is skipped)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mdg-openapi-data-")
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0750", "tmpfs",
                            self.dir], capture_output=True, text=True, timeout=30)
        self.mounted = p.returncode == 0
        self.why = p.stderr.strip()
        self.filler = os.path.join(self.dir, "filler")

    def fill(self):
        harness.fill_disk(self.filler)

    def free(self):
        if os.path.exists(self.filler):
            os.unlink(self.filler)

    def cleanup(self):
        if self.mounted:
            for _ in range(20):
                if subprocess.run(["umount", self.dir], capture_output=True).returncode == 0:
                    break
                time.sleep(0.2)
        shutil.rmtree(self.dir, ignore_errors=True)


def main_config(city, sim, plugdir, data_dir):
    closed = tokyo_days(2)  # today and tomorrow in Tokyo: closed even across midnight
    plugins = {
        "registry": {"file": "sqlite-registry.so", "timeout": "2s", "max_in_flight": 64,
                     "config": {"database": city.registry}},
        "vendor": {"file": "fujitsu-like.so", "timeout": "%ds" % int(2 * SLACK),
                   "max_in_flight": 64, "config": {"endpoint": sim.endpoint}},
        # Never completes: one fetch at a time, each ends at the timeout (504); a second
        # request meanwhile is refused at admission (503 OVERLOADED).
        "mock-slow": {"file": "mock.so", "timeout": "%dms" % int(400 + 200 * SLACK),
                      "max_in_flight": 1, "config": {"mode": "never"}},
        # Its fetch fails to start: 502 BACKEND_ERROR.
        "mock-broken": {"file": "mock.so", "timeout": "2s", "config": {"mode": "error"}},
    }
    always = {"always_open": True}
    certs = {
        "residence": dict(plugin="mock-slow", **always),
        "seal": dict(plugin="mock-broken", **always),
        "residence-record": dict(plugin="registry", **always),
        "tax-income": {"plugin": "registry", "closed": closed},
        "koseki-individual": dict(plugin="registry", **always),
        "koseki-full": dict(plugin="vendor", **always),
        "koseki-attachment": dict(plugin="vendor", **always),
    }
    return {
        "data_dir": data_dir,
        "plugin_dir": plugdir,
        "plugins": plugins,
        "listeners": {"store": {"limits": {"body_timeout": "1s"}}},
        "issuance": {"municipalities": [MUNICIPALITY], "municipality_name": "横浜市中区",
                     "document_key": "pki/document.key",
                     "card_proof": {"ca": "pki/card-ca.pem", "max_skew": "5m"},
                     "deadline": "%ds" % int(10 * SLACK), "certificates": certs},
        "ministry": {"keys": ["pki/ministry/dev.pub"], "threshold": 1},
        "log": {"level": "info", "access": False},
    }


class Cards:
    """Card certificates made on demand for linked residents (scripts/dev-pki makes them one
    process per card, far slower), signed by the demo city's card CA."""

    def __init__(self, city):
        self.ca = os.path.join(city.pki, "card-ca.pem")
        self.ca_key = os.path.join(city.pki, "card-ca.key")
        self.cache = {}

    def __call__(self, serial):
        if isinstance(serial, dict):
            serial = serial["card_serial"]
        if serial not in self.cache:
            self.cache[serial] = ic.make_card(self.ca, self.ca_key, serial)
        return self.cache[serial]


# ------------------------------------------------------------------------- the main daemon

def run_main(tap, A, city, d, sim, fs):
    cards = Cards(city)
    linked = [r for r in city.truth if r["card_serial"]]

    def pick(pred):
        for r in linked:
            if pred(r):
                return r
        raise AssertionError("no linked resident of the demo city matches")

    ok_rr = pick(lambda r: r["issuable"]["residence-record"])
    not_issuable = pick(lambda r: r["refusal"]["residence-record"] == "RECORD_NOT_ISSUABLE")
    stale = pick(lambda r: r["stale"] is not None and r["stale"]["kind"] == "address"
                 and r["issuable"]["koseki-full"])
    attach = [r for r in linked if r["issuable"]["koseki-attachment"]][:2]
    expect(len(attach) == 2, "two residents with a koseki-attachment record")
    someone = ok_rr
    ministry = Ministry(city.pki)
    client = Client.for_daemon(d, timeout=15 * SLACK)

    def post(label, card, body, want, extra_headers=None, c=None):
        h = {"Content-Type": "application/json"}
        if card is not None:
            h.update(card.headers(body))
        h.update(extra_headers or {})
        resp = (c or client).post(body, h)
        return A.add(label, ISSUANCES, "post", resp, want,
                     request=("application/json", body) if resp.status == 201 else None)

    def adm(label, method, path, tmpl, want, body=None, ctype="application/json",
            record_request=True):
        resp = admin(d, method, path, body, ctype)
        req = None
        if record_request and body is not None and 200 <= resp.status < 300:
            req = (ctype, body if isinstance(body, bytes) else json.dumps(body).encode())
        return A.add(label, tmpl, method, resp, want, request=req)

    # -- the 408 runs in the background (body_timeout 1s) while the rest goes on.
    slow = {}

    def body_timeout():
        head = ("POST /v1/issuances HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                "application/json\r\nContent-Length: 40\r\n\r\n{\"request_id\"").encode()
        slow["resp"] = raw_store(d, head)
    t408 = threading.Thread(target=body_timeout)
    t408.start()

    # -- linkage first: the demo city's table.
    with open(city.linkage, "rb") as f:
        csv = f.read()
    A.step("POST /v1/linkage 200", adm, "the demo city's linkage CSV", "POST", "/v1/linkage",
           "/v1/linkage", (200, None), csv, "text/csv")
    A.step("POST /v1/linkage 400", adm, "a CSV line with a serial that is not hex", "POST",
           "/v1/linkage", "/v1/linkage", (400, "LINKAGE_INVALID"),
           b"card_serial,resident_code\nNOT-HEX,000000001\n", "text/csv")

    # -- probes and keys
    def probes():
        A.add("store listener", "/healthz", "get", client.request("GET", "/healthz"), (200, None))
        A.add("store listener", "/v1/keys", "get", client.request("GET", "/v1/keys"), (200, None))
        A.add("admin socket", "/v1/keys", "get", admin(d, "GET", "/v1/keys"), (200, None))
        A.add("admin socket", "/healthz", "get", admin(d, "GET", "/healthz"), (200, None))
        A.add("metrics listener", "/healthz", "get", plain(d.metrics_port, "GET", "/healthz"),
              (200, None))
        A.add("admin socket", "/readyz", "get", admin(d, "GET", "/readyz"), (200, None))
        A.add("metrics listener", "/readyz", "get", plain(d.metrics_port, "GET", "/readyz"),
              (200, None))
        A.add("admin socket", "/metrics", "get", admin(d, "GET", "/metrics"), (200, None))
        A.add("metrics listener", "/metrics", "get", plain(d.metrics_port, "GET", "/metrics"),
              (200, None))
        A.add("before any suspension", "/v1/status", "get", admin(d, "GET", "/v1/status"),
              (200, None))
        A.add("before any suspension", "/v1/plugins", "get", admin(d, "GET", "/v1/plugins"),
              (200, None))
        A.add("before any suspension", "/v1/suspensions", "get",
              admin(d, "GET", "/v1/suspensions"), (200, None))
    A.step("probes", probes)

    # -- POST /v1/issuances: each problem of DESIGN §4
    first = {}

    def issued():
        body = request_body("residence-record")
        first["body"] = body
        post("an issuable resident", cards(ok_rr), body, (201, None))
        # The identical request again: the stored 201 (a reprint).
        post("the identical request again (replay)", cards(ok_rr), body, (201, None))
    A.step("201", issued)

    def conflict():
        doc = json.loads(first["body"])
        body = request_body("residence-record", request_id=doc["request_id"], copies=2)
        post("the request_id again with another body", cards(ok_rr), body,
             (409, "REQUEST_ID_CONFLICT"))
    A.step("409", conflict)

    def bad_requests():
        post("an unknown field", cards(someone), request_body(color="red"),
             (400, "INVALID_REQUEST"))
        post("malformed JSON", cards(someone), b'{"request_id": ', (400, "INVALID_REQUEST"))
        post("an unknown certificate type", cards(someone), request_body("passport"),
             (400, "UNSUPPORTED_CERTIFICATE"))
        post("a municipality not served", cards(someone), request_body(municipality="131016"),
             (400, "MUNICIPALITY_NOT_SERVED"))
    A.step("400", bad_requests)

    A.step("401", post, "no card headers", None, request_body("residence-record"),
           (401, "CARD_PROOF_INVALID"))
    A.step("403", post, "a closed day of tax-income", cards(someone),
           request_body("tax-income"), (403, "OUTSIDE_SERVICE_HOURS"))
    A.step("404", post, "a valid card that is not linked", cards("7E57000000000A"),
           request_body("residence-record"), (404, "NO_RECORD"))
    A.step("422", post, "a resident whose residence-record is not issuable",
           cards(not_issuable), request_body("residence-record"),
           (422, "RECORD_NOT_ISSUABLE"))

    def too_large():
        head = ("POST /v1/issuances HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                "application/json\r\nContent-Length: %d\r\n\r\n" % (70 * 1024)).encode()
        A.add("a declared body of 70 KiB (limit 64 KiB)", ISSUANCES, "post", raw_store(d, head),
              (413, "BODY_TOO_LARGE"))
    A.step("413", too_large)

    def headers_too_large():
        head = ("POST /v1/issuances HTTP/1.1\r\nHost: localhost\r\nX-Padding: %s\r\n"
                "Content-Length: 2\r\n\r\n{}" % ("p" * (17 * 1024))).encode()
        A.add("17 KiB of headers (limit 16 KiB)", ISSUANCES, "post", raw_store(d, head),
              (431, "HEADERS_TOO_LARGE"))
    A.step("431", headers_too_large)

    A.step("502", post, "a plugin whose fetch fails (mock, mode error)", cards(someone),
           request_body("seal"), (502, "BACKEND_ERROR"))

    def timeout_and_overload():
        # One fetch at a time on mock-slow, which never answers: the first request holds the
        # slot until its timeout (504); a second one meanwhile is refused at admission (503).
        for attempt in range(3):
            res = {}
            c1 = Client.for_daemon(d, timeout=15 * SLACK)

            def first_req():
                body = request_body("residence")
                h = {"Content-Type": "application/json"}
                h.update(cards(someone).headers(body))
                res["first"] = c1.post(body, h)
            t = threading.Thread(target=first_req)
            t.start()
            time.sleep(0.15 * SLACK)
            body = request_body("residence")
            h = {"Content-Type": "application/json"}
            h.update(cards(someone).headers(body))
            second = client.post(body, h)
            t.join()
            c1.close()
            if second.status == 503 or attempt == 2:
                A.add("a second request while the plugin's only slot is taken", ISSUANCES,
                      "post", second, (503, "OVERLOADED"), headers_want=["retry-after"])
                A.add("a plugin that never answers (mock, mode never)", ISSUANCES, "post",
                      res["first"], (504, "BACKEND_TIMEOUT"))
                return
            time.sleep(0.5 + 0.2 * SLACK)  # the slot is free again after the timeout
    A.step("504 and 503 OVERLOADED", timeout_and_overload)

    A.step("503 DATA_NOT_CURRENT", post, "the vendor serves an older version (stale mode)",
           cards(stale), request_body("koseki-full"), (503, "DATA_NOT_CURRENT"))

    def integrity_fault():
        # Two requests held together by the simulator in swap mode: each is answered with the
        # other's record.  Both connections are open and both bodies signed before a barrier,
        # so the two arrive within the hold time; a round where they did not (two 201s) is
        # tried again.
        sim.control("mode swap")
        try:
            for attempt in range(3):
                conns = [Client.for_daemon(d, timeout=15 * SLACK) for _ in range(2)]
                res = [None, None]
                try:
                    jobs = []
                    for c, r in zip(conns, attach):
                        c.request("GET", "/healthz")  # the TLS handshake, before the barrier
                        body = request_body("koseki-attachment")
                        h = {"Content-Type": "application/json"}
                        h.update(cards(r).headers(body))
                        jobs.append((c, body, h))
                    barrier = threading.Barrier(2)

                    def one(i):
                        c, body, h = jobs[i]
                        barrier.wait(timeout=10)
                        res[i] = c.post(body, h)
                    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                finally:
                    for c in conns:
                        c.close()
                expect(all(r is not None for r in res), "a request of the pair got no answer")
                if any(r.status == 500 for r in res) or attempt == 2:
                    break
        finally:
            sim.control("mode normal")
        for r in res:
            A.add("the vendor answers each of two requests with the other's record (swap)",
                  ISSUANCES, "post", r, [(500, "INTEGRITY_FAULT"), (503, "SERVICE_SUSPENDED")])
    A.step("500 INTEGRITY_FAULT", integrity_fault)

    A.step("503 SERVICE_SUSPENDED auto", post, "the plugin suspended after the integrity fault",
           cards(stale), request_body("koseki-full"), (503, "SERVICE_SUSPENDED"))

    # -- the kill switch
    A.step("suspend 200", adm, "a local suspension of one type, mode drain", "POST",
           "/v1/plugins/registry/suspend", "/v1/plugins/{name}/suspend", (200, None),
           {"reason": "openapi test: maintenance of the registry",
            "certificates": ["koseki-individual"], "mode": "drain"})
    A.step("503 SERVICE_SUSPENDED local", post, "a type suspended by the city",
           cards(someone), request_body("koseki-individual"), (503, "SERVICE_SUSPENDED"))
    A.step("ministry 200", adm, "a list signed by the configured ministry key", "POST",
           "/v1/ministry/suspension-list", "/v1/ministry/suspension-list", (200, None),
           ministry.signed(1, [{"id": "oa-1", "plugin": "mock", "certificates": ["seal"],
                                "versions": ">=0.1.0,<9.0.0", "municipalities": [MUNICIPALITY],
                                "reason": "openapi test: ministry suspension"}]))
    A.step("503 SERVICE_SUSPENDED ministry", post, "a type suspended by the ministry",
           cards(someone), request_body("seal"), (503, "SERVICE_SUSPENDED"))

    def views():
        A.add("with auto, local and ministry suspensions", "/v1/status", "get",
              admin(d, "GET", "/v1/status"), (200, None))
        A.add("with auto, local and ministry suspensions", "/v1/plugins", "get",
              admin(d, "GET", "/v1/plugins"), (200, None))
        A.add("with auto, local and ministry suspensions", "/v1/suspensions", "get",
              admin(d, "GET", "/v1/suspensions"), (200, None))
    A.step("views", views)

    R = "/v1/plugins/{name}/resume"
    S = "/v1/plugins/{name}/suspend"
    M = "/v1/ministry/suspension-list"
    A.step("ministry 409", adm, "the same list again", "POST", M, M,
           (409, "SEQUENCE_NOT_NEWER"),
           ministry.signed(1, [{"id": "oa-1", "plugin": "mock", "reason": "again"}]))
    A.step("ministry 400", adm, "an envelope whose payload is not a string", "POST", M, M,
           (400, "LIST_MALFORMED"), {"payload": 5, "signatures": []})
    A.step("ministry 401", adm, "a list signed by a key nobody configured", "POST", M, M,
           (401, "LIST_SIGNATURE_INVALID"), ministry.signed(2, [], rogue=True))
    A.step("resume 409 auto", adm, "the integrity-fault suspension, not acknowledged", "POST",
           "/v1/plugins/vendor/resume", R, (409, "SUSPENSION_HELD"), {})
    A.step("resume 409 ministry", adm, "a type the ministry suspends", "POST",
           "/v1/plugins/mock-broken/resume", R, (409, "SUSPENSION_HELD"),
           {"certificates": ["seal"]})
    A.step("resume 200 ack", adm, "the integrity fault acknowledged", "POST",
           "/v1/plugins/vendor/resume", R, (200, None), {"ack_integrity_fault": True})
    A.step("resume 200", adm, "the city's suspension of one type", "POST",
           "/v1/plugins/registry/resume", R, (200, None), {"certificates": ["koseki-individual"]})
    A.step("suspend 400", adm, "no reason", "POST", "/v1/plugins/registry/suspend", S,
           (400, "INVALID_REQUEST"), {"mode": "immediate"})
    A.step("suspend 404", adm, "a plugin instance that is not loaded", "POST",
           "/v1/plugins/nosuch/suspend", S, (404, "PLUGIN_NOT_FOUND"), {"reason": "x"})
    A.step("resume 400", adm, "ack_integrity_fault not a boolean", "POST",
           "/v1/plugins/registry/resume", R, (400, "INVALID_REQUEST"),
           {"ack_integrity_fault": "yes"})
    A.step("resume 404", adm, "a plugin instance that is not loaded", "POST",
           "/v1/plugins/nosuch/resume", R, (404, "PLUGIN_NOT_FOUND"), {})

    # -- audit, reload
    A.step("audit 200", adm, "the first rows", "GET", "/v1/audit?after=0&limit=5", "/v1/audit",
           (200, None))
    A.step("verify 200", adm, "the chain", "GET", "/v1/audit/verify", "/v1/audit/verify",
           (200, None))
    A.step("reload 200", adm, "the same config", "POST", "/v1/reload", "/v1/reload", (200, None))

    def reload_bad():
        with open(d.config_path) as f:
            good = f.read()
        d.write_config(good + "no_such_key: 1\n")
        try:
            A.add("an unknown key in the file", "/v1/reload", "post",
                  admin(d, "POST", "/v1/reload"), (400, "CONFIG_INVALID"))
        finally:
            d.write_config(good)
    A.step("reload 400", reload_bad)

    # -- an expired list: enforced, the appliance degraded
    A.step("ministry 200 expired", adm, "a list already expired", "POST", M, M, (200, None),
           ministry.signed(3, [], issued_in=-2 * 86400, expires_in=-86400))
    A.step("readyz degraded", lambda: A.add(
        "the ministry list in force has expired", "/readyz", "get",
        plain(d.metrics_port, "GET", "/readyz"), (200, None)))
    A.step("status degraded", lambda: A.add(
        "degraded (an expired list in force)", "/v1/status", "get",
        admin(d, "GET", "/v1/status"), (200, None)))

    # -- stores that cannot be written or read: a directory where the file should be
    data = d.config["data_dir"]

    def blocked(name, fn):
        path = os.path.join(data, name)
        away = path + ".openapi-away"
        os.rename(path, away)
        os.mkdir(path)
        try:
            fn()
        finally:
            os.rmdir(path)
            os.rename(away, path)

    def gate_blocked():
        A.add("gate.sqlite cannot be opened", S, "post",
              admin(d, "POST", "/v1/plugins/registry/suspend", {"reason": "x"}),
              (500, "SUSPENSION_NOT_PERSISTED"))
        A.add("gate.sqlite cannot be opened", R, "post",
              admin(d, "POST", "/v1/plugins/registry/resume", {}),
              (500, "SUSPENSION_NOT_PERSISTED"))
        A.add("gate.sqlite cannot be opened", M, "post",
              admin(d, "POST", M, ministry.signed(4, [])), (500, "SUSPENSION_NOT_PERSISTED"))
    A.step("500 gate", blocked, "gate.sqlite", gate_blocked)
    A.step("500 linkage", blocked, "linkage.sqlite", lambda: A.add(
        "linkage.sqlite cannot be opened", "/v1/linkage", "post",
        admin(d, "POST", "/v1/linkage", b"card_serial,resident_code\n", "text/csv"),
        (500, "LINKAGE_NOT_STORED")))

    def audit_moved():
        path = os.path.join(data, "audit.sqlite")
        os.rename(path, path + ".openapi-away")
        try:
            A.add("audit.sqlite missing", "/v1/audit", "get", admin(d, "GET", "/v1/audit"),
                  (500, "AUDIT_UNREADABLE"))
            A.add("audit.sqlite missing", "/v1/audit/verify", "get",
                  admin(d, "GET", "/v1/audit/verify"), (500, "AUDIT_UNREADABLE"))
        finally:
            os.rename(path + ".openapi-away", path)
    A.step("500 audit", audit_moved)

    t408.join(timeout=15 * SLACK)
    if "resp" in slow:
        A.add("a body that stops after 12 of 40 bytes (body_timeout 1s)", ISSUANCES, "post",
              slow["resp"], (408, "REQUEST_TIMEOUT"))
    else:
        A.failed_steps.append(("408", "no answer to the incomplete body"))

    # -- last: a full data_dir, the audit cannot commit
    if fs.mounted:
        def audit_full():
            fs.fill()
            try:
                post("data_dir full: the audit row cannot be committed", cards(ok_rr),
                     request_body("residence-record"), (503, "AUDIT_UNAVAILABLE"))
            finally:
                fs.free()
        A.step("503 AUDIT_UNAVAILABLE", audit_full)
    else:
        tap.skip("503 AUDIT_UNAVAILABLE on a full data_dir",
                 "cannot mount a tmpfs: %s" % fs.why)
    client.close()


# ------------------------------------------------------------ the daemon without issuance

def run_bare(tap, A, t):
    """The admin API of an appliance without an issuance section: 404 NOT_FOUND; then
    /readyz while it drains."""
    def requests():
        A.add("no issuance section", ISSUANCES, "post",
              raw_store(t, harness.Http.build("POST", ISSUANCES,
                                              {"Content-Type": "application/json",
                                               "Connection": "close"}, b"{}")),
              (404, "NOT_FOUND"))
        with Client.for_daemon(t) as c:
            A.add("no issuance section: no keys", "/v1/keys", "get",
                  c.request("GET", "/v1/keys"), (200, None))
        A.add("no issuance section, no plugins", "/v1/status", "get",
              admin(t, "GET", "/v1/status"), (200, None))
        A.add("no plugins", "/v1/plugins", "get", admin(t, "GET", "/v1/plugins"), (200, None))
        for method, path, tmpl, body in (
                ("GET", "/v1/suspensions", "/v1/suspensions", None),
                ("POST", "/v1/plugins/registry/suspend", "/v1/plugins/{name}/suspend",
                 {"reason": "x"}),
                ("POST", "/v1/plugins/registry/resume", "/v1/plugins/{name}/resume", {}),
                ("POST", "/v1/ministry/suspension-list", "/v1/ministry/suspension-list",
                 {"payload": "", "signatures": []}),
                ("POST", "/v1/linkage", "/v1/linkage", b"card_serial,resident_code\n"),
                ("GET", "/v1/audit", "/v1/audit", None),
                ("GET", "/v1/audit/verify", "/v1/audit/verify", None)):
            A.add("no issuance section", tmpl, method,
                  admin(t, method, path, body,
                        "text/csv" if isinstance(body, bytes) else "application/json"),
                  (404, "NOT_FOUND"))
    A.step("no issuance section", requests)

    def draining():
        # A request whose headers are not complete when the drain starts is kept and
        # answered (with Connection: close); idle connections are closed.
        h = harness.Http(socket.create_connection(("127.0.0.1", t.metrics_port),
                                                  timeout=10 * SLACK))
        try:
            h.send(b"GET /readyz HTTP/1.1\r\n")
            time.sleep(0.1)
            t.signal(signal.SIGTERM)
            t.wait_event("draining", timeout=10 * SLACK)
            h.send(b"Host: localhost\r\n\r\n")
            A.add("during the drain after SIGTERM", "/readyz", "get", h.read_response(),
                  (503, None))
        finally:
            h.close()
    A.step("readyz 503", draining)


# ------------------------------------------------------------------------------ checks

def lint_start():
    env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true",
               NO_COLOR="1")
    return subprocess.Popen(["node", REDOCLY, "lint", "--config", "redocly.yaml",
                             "--format", "json", os.path.relpath(SPEC, OPENAPI_DIR)],
                            cwd=OPENAPI_DIR, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def lint_point(tap, proc):
    what = ("docs/openapi.yaml passes the pinned linter (Redocly CLI, recommended ruleset) "
            "without errors or warnings")
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return tap.ok(False, what, "timed out after 120 s")
    try:
        report = json.loads(out)
        totals = report["totals"]
    except (ValueError, KeyError, TypeError):
        return tap.ok(False, what, "exit %d, no JSON report: %s %s"
                      % (proc.returncode, out[-2000:], err[-2000:]))
    problems = ["%s %s: %s at %s" % (p.get("severity"), p.get("ruleId"), p.get("message"),
                                     [loc.get("pointer") for loc in p.get("location", [])])
                for p in report.get("problems", [])]
    tap.ok(proc.returncode == 0 and totals.get("errors") == 0 and totals.get("warnings") == 0,
           what, "exit %d, totals %r\n%s" % (proc.returncode, totals, "\n".join(problems[:20])))
    tap.diag("redocly %s: %r" % (report.get("version"), totals))


def validate_start():
    """validate.mjs, started early: it compiles the document's schemas while the daemons run,
    then waits for the answers on its standard input."""
    return subprocess.Popen(["node", VALIDATE, SPEC, "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=OPENAPI_DIR)


def validate(proc, A):
    answers = json.dumps([{k: v for k, v in rec.items()
                           if k not in ("label", "want", "headers_want")} for rec in A.items])
    if os.environ.get("MDG_OPENAPI_ANSWERS"):  # kept, to check an edited document later
        with open(os.environ["MDG_OPENAPI_ANSWERS"], "w") as f:
            f.write(answers)
    try:
        out, err = proc.communicate(answers.encode(), timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("validate.mjs did not finish within 120 s")
    expect(proc.returncode in (0, 1) and out.strip(),
           "validate.mjs failed (%d): %s" % (proc.returncode, err.decode()[-2000:]))
    return json.loads(out)


def report(tap, A, out):
    errors = {r["id"]: r["errors"] for r in out["results"]}
    documented = [(o["path"], o["method"], o["status"]) for o in out["operations"]]
    not_testable = {(o["path"], o["method"], o["status"]): o["not_testable"]
                    for o in out["operations"] if o["not_testable"] is not None}
    groups = collections.OrderedDict((k, []) for k in documented)
    undocumented = collections.OrderedDict()
    for rec in A.items:
        key = (rec["path"], rec["method"], str(rec["status"]))
        (groups if key in groups else undocumented).setdefault(key, []).append(rec)

    def problems_of(rec):
        out = list(errors.get(rec["id"], ["not validated"]))
        code = code_of(rec)
        if not any(rec["status"] == s and (c is None or c == code) for s, c in rec["want"]):
            out.append("provoked %r: got %d %s" % (rec["want"], rec["status"], code or ""))
        for h in rec["headers_want"]:
            if h not in rec["headers"]:
                out.append("header %s missing" % h)
        return out

    for key, recs in list(groups.items()) + list(undocumented.items()):
        if not recs:
            continue
        path, method, status = key
        bad = []
        for rec in recs:
            for e in problems_of(rec):
                bad.append("%s (%s): %s" % (rec["label"], code_of(rec) or rec["status"], e))
        codes = sorted({code_of(r) or "-" for r in recs})
        tap.ok(not bad and key in groups,
               "%s %s %s (%s; %d answer%s): status, Content-Type and body match "
               "docs/openapi.yaml" % (method.upper(), path, status, ", ".join(codes), len(recs),
                                     "" if len(recs) == 1 else "s"),
               "\n".join((["this status is not documented for the operation"]
                          if key not in groups else []) + bad[:12]))
    for label, err in A.failed_steps:
        tap.ok(False, "provoking %s" % label, err)

    missing = [k for k, recs in groups.items() if not recs and k not in not_testable]
    tap.ok(not missing,
           "coverage: every documented (operation, status) was provoked and checked (%d of "
           "%d; %d marked x-not-testable)" % (sum(1 for r in groups.values() if r),
                                              len(groups), len(not_testable)),
           "not exercised: " + ", ".join("%s %s %s" % (m.upper(), p, s) for p, m, s in missing))
    for k, why in not_testable.items():
        tap.diag("x-not-testable %s %s %s: %s" % (k[1].upper(), k[0], k[2], why))
    exercised = collections.Counter(code_of(r) for r in A.items
                                    if r["path"] == ISSUANCES and code_of(r))
    tap.diag("POST /v1/issuances problem codes provoked: %s" % ", ".join(
        "%s x%d" % kv for kv in sorted(exercised.items())))


# -------------------------------------------------------------------------------- main

def main(tap):
    t0 = time.monotonic()
    if not os.path.exists(REDOCLY):
        tap.ok(False, "tests/openapi/node_modules is installed",
               "%s is missing: run scripts/install-deps (npm ci in tests/openapi)" % REDOCLY)
        return
    A = Answers()
    city = ic.DemoCity(RESIDENTS, 1, ministry=("dev",), prefix="mdg-openapi-")
    t_city = time.monotonic() - t0
    # The linter and the validator's schema compilation run while the daemons answer (the
    # daemons mostly wait on timeouts; the city's scripts above want the CPU).
    lint = lint_start()
    validator = validate_start()
    fs = Tmpfs()
    os.makedirs(os.path.join(fs.dir, "data"), exist_ok=True)
    sim = plugdir = None
    daemons = []
    try:
        bare = Daemon({"log": {"level": "info", "access": False}}, pki_dir=city.pki)
        bare.start(wait=False)
        daemons.append(bare)
        sim = harness.VendorSim(city.registry, ["--mode", "stale", "--hold-ms",
                                                str(int(300 + 100 * SLACK))])
        plugdir = harness.plugin_dir_with("sqlite-registry.so", "fujitsu-like.so", "mock.so")
        d = Daemon(main_config(city, sim, plugdir, os.path.join(fs.dir, "data")),
                   pki_dir=city.pki)
        d.start()
        daemons.append(d)
        t_start = time.monotonic() - t0
        run_main(tap, A, city, d, sim, fs)
        t_main = time.monotonic() - t0
        bare.wait_ready()
        run_bare(tap, A, bare)
        harness.stop_point(tap, d, "the main daemon exits 0 on SIGTERM")
        code = bare.wait_exit(timeout=15 * SLACK)
        tap.ok(code == 0, "the daemon without issuance exits 0 after its drain",
               "exit code %r" % code)
        t_run = time.monotonic() - t0
        lint_point(tap, lint)
        try:
            out = validate(validator, A)
        except AssertionError as e:
            tap.ok(False, "tests/openapi/validate.mjs checks the answers", str(e))
        else:
            report(tap, A, out)
        harness.sanitizer_point(tap, *daemons)
        tap.diag("%d answers; city %.1f s, daemons up %.1f s, main daemon done %.1f s, all "
                 "requests %.1f s, total %.1f s" % (len(A.items), t_city, t_start, t_main,
                                                   t_run, time.monotonic() - t0))
    finally:
        for proc in (lint, validator):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        for dm in daemons:
            dm.cleanup()
        if sim is not None:
            sim.cleanup()
        if plugdir is not None:
            shutil.rmtree(plugdir, ignore_errors=True)
        fs.cleanup()
        city.cleanup()


if __name__ == "__main__":
    harness.run(main)
