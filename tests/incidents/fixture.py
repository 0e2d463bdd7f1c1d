"""fixture.py: what the incident replays (tests/incidents/test_*.py) share.

One demo city (scripts/demo-city) with a dev PKI of cards and one dev ministry key, daemons
configured with the vendor plugin (fujitsu-like, talking to madoguchi-vendor-sim, whose fault
mode the scenarios switch) and the city's own registry plugin (sqlite-registry), and the
checks every scenario makes: a 201 is for the card that asked (verify_201: request_id,
card_serial, document hash, binding signature) and its PDF names that card's resident and no
other requester; a refusal is a problem document without any document.

The e2e machinery (tests/e2e/harness.py, tests/e2e/issuance_client.py) is imported from
MDG_SRCDIR, so the scripts run from any directory and from `make check` and distcheck.
Everything is on loopback with timeouts.
"""

import collections
import datetime
import json
import os
import sqlite3
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
SRCDIR = os.environ.get("MDG_SRCDIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SRCDIR, "tests", "e2e"))
import harness  # noqa: E402
import issuance_client as ic  # noqa: E402
from harness import SANITIZERS, Daemon, expect  # noqa: E402,F401
from issuance_client import TYPES, Client, request_body  # noqa: E402,F401

PLUGINS = harness.PLUGINS
SIGN = os.path.join(SRCDIR, "scripts", "ministry-sign")
RESIDENTS = 500   # demo city size
CARDS = 120       # card certificates made by dev-pki (the first CARDS linkage rows)
SLACK = 3.0 if SANITIZERS else 1.0  # timing allowance factor under ASan
KOSEKI = ("koseki-full", "koseki-individual", "koseki-attachment")


def City():
    return ic.DemoCity(RESIDENTS, CARDS, ministry=("dev",), prefix="mdg-incident-")


def routes(default="vendor", **per_type):
    """issuance.certificates: every type open at all hours, routed to `default`; per_type
    (underscores for dashes) names another instance for a type."""
    out = {t: {"plugin": default, "always_open": True} for t in TYPES}
    for k, v in per_type.items():
        out[k.replace("_", "-")] = {"plugin": v, "always_open": True}
    return out


def config(city, sim=None, certificates=None, issuance=None, plugins=None, ministry=None,
           plugin_dir=None, timeout="2s"):
    plug = {"registry": {"file": "sqlite-registry.so", "timeout": timeout, "max_in_flight": 256,
                         "config": {"database": city.registry}}}
    if sim is not None:
        plug["vendor"] = {"file": "fujitsu-like.so", "timeout": timeout, "max_in_flight": 256,
                          "config": {"endpoint": sim.endpoint}}
    harness.merge(plug, plugins or {})
    iss = {"municipalities": ["141003"], "municipality_name": "横浜市中区",
           "document_key": "pki/document.key",
           "card_proof": {"ca": "pki/card-ca.pem", "max_skew": "5m"},
           "deadline": "%ds" % int(5 * SLACK),
           "certificates": certificates or routes("vendor" if sim else "registry")}
    harness.merge(iss, issuance or {})
    cfg = {"plugin_dir": plugin_dir or PLUGINS, "plugins": plug, "issuance": iss,
           "log": {"level": "info", "access": True}}
    if ministry is not None:
        cfg["ministry"] = ministry
    return cfg


# ------------------------------------------------------------------------------- checks

def problem(resp, status, code, request_id=None):
    """A problem answer of DESIGN §4 carrying no document; returns the problem document."""
    doc = harness.problem_ok(resp, status, code)
    if request_id is not None:
        expect(doc["request_id"] == request_id, "request_id %r, sent %r"
               % (doc["request_id"], request_id))
    expect("document" not in doc and "data" not in doc, "a problem carries a document")
    return doc


def own_201(keys, r, card, sent, resp, others=()):
    """resp is a 201 for the card that sent `sent`: verify_201 holds, the PDF names r and
    none of the residents in others.  Returns (answer, pdf)."""
    expect(resp.status == 201, "status %d, want 201: %r" % (resp.status, resp.body[:300]))
    problems, answer, pdf = ic.verify_201(resp, sent, card, keys)
    expect(not problems, "the 201 does not verify: %s" % "; ".join(problems))
    text = ic.squash(ic.pdf_text(pdf))
    expect(ic.squash(r["name"]) in text, "the PDF does not name the requester")
    named = [o["card_serial"] for o in others
             if o["card_serial"] != r["card_serial"] and ic.squash(o["name"]) in text]
    expect(not named, "the PDF names %d other requester(s)" % len(named))
    return answer, pdf


def distinct_people(city, t, n, exclude=()):
    """n carded residents for whom t is issuable, no two of one household or register (so no
    one's document may legitimately name another of them)."""
    seen, out = set(), []
    ex = {x["card_serial"] for x in exclude}
    for r in city.carded:
        key = (r["household_id"], r.get("register_id"))
        if r["issuable"][t] and r["card_serial"] not in ex and \
                r["household_id"] not in seen and r.get("register_id") not in seen:
            seen.update(k for k in key if k)
            out.append(r)
        if len(out) == n:
            return out
    raise AssertionError("only %d unrelated residents with %s issuable" % (len(out), t))


def outcome(resp):
    if isinstance(resp, Exception):
        return "transport: %s" % type(resp).__name__
    if resp.status == 201:
        return "ISSUED"
    try:
        return resp.json().get("code")
    except ValueError:
        return "status %d" % resp.status


def audit_rows(d):
    """The daemon's audit rows (read-only, safe while it runs), as dicts."""
    db = sqlite3.connect("file:%s?mode=ro" % d.path("data/audit.sqlite"), uri=True, timeout=10)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM audit_rows ORDER BY seq")]
    finally:
        db.close()


def rows_by_request(d):
    out = collections.defaultdict(list)
    for row in audit_rows(d):
        out[row["request_id"]].append(row)
    return out


def admin(d, method, path, body=None):
    data = b"" if body is None else (body if isinstance(body, bytes) else
                                     json.dumps(body).encode())
    with d.admin() as h:
        return h.request(method, path, {"Connection": "close",
                                        "Content-Type": "application/json"}, data)


def plugin_view(d, name):
    r = d.admin_get("/v1/plugins")
    expect(r.status == 200, "GET /v1/plugins: %d" % r.status)
    for p in r.json()["plugins"]:
        if p["name"] == name:
            return p
    raise AssertionError("no plugin %r in GET /v1/plugins" % name)


def signed_list(city, sequence, entries, tmpdir):
    """A ministry suspension list signed with the dev key by scripts/ministry-sign."""
    now = datetime.datetime.now(datetime.timezone.utc)
    doc = {"type": "madoguchi-suspension-list", "sequence": sequence,
           "issued_at": ic.utc_text(now - datetime.timedelta(minutes=5)),
           "expires_at": ic.utc_text(now + datetime.timedelta(days=7)),
           "suspensions": entries}
    path = os.path.join(tmpdir, "list-%d.json" % sequence)
    with open(path, "wb") as f:
        f.write(json.dumps(doc, ensure_ascii=False).encode())
    p = subprocess.run([SIGN, "--key", os.path.join(city.pki, "ministry", "dev.key"), path],
                       capture_output=True, timeout=30)
    expect(p.returncode == 0, "ministry-sign: %s" % p.stderr.decode(errors="replace"))
    return p.stdout


def push_list(d, signed):
    r = admin(d, "POST", "/v1/ministry/suspension-list", signed)
    expect(r.status == 200, "POST /v1/ministry/suspension-list: %d %r" % (r.status,
                                                                        r.body[:300]))
    return r.json()


def ministry_config(city):
    return {"keys": [os.path.join(city.pki, "ministry", "dev.pub")], "threshold": 1}


def wait_for(pred, timeout, step=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("%s not reached within %.1f s" % (what, timeout))
        time.sleep(step)
