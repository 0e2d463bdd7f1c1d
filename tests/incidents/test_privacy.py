#!/usr/bin/env python3
"""test_privacy.py: no personal data where it must never be (DESIGN §8, §10; issue 7).

A full scenario against a real daemon and the vendor simulator: issuances of all seven types
(one with household, My Number and domicile shown), a refusal of every kind the store can
provoke (no linkage, no record, not issuable, stale data, bad card proof, invalid request,
unknown type, municipality, request id conflict, backend error, backend timeout, an integrity
fault through crossed vendor answers, suspended), kill switch changes (local suspend and
resume, a ministry list, an acknowledged integrity fault), a linkage import with
madoguchictl, a restart and an idempotent replay after it.  Then it scans

  - every log line of every daemon run and the vendor simulator's stderr,
  - every text and blob column of every table of data_dir/audit.sqlite and data_dir/gate.sqlite
    (the ministry list blob also base64-decoded), and the stored responses (their bytes in the
    response spool, data_dir/responses), whose JSON members other than document.data (the
    certificate itself) are scanned,

for the demo data's personal data, taken from the registry the test created (not from what
the appliance says): full names (kanji and kana, each spacing), addresses, card serials (both
cases), resident codes and My Numbers.  None may be found.

The stored response is the 201 exactly as delivered (a kiosk reprint must get the same bytes),
so it carries subject.card_serial (DESIGN §4) and the certificate, which names the resident:
both are reported as diagnostics (what the design keeps), not counted as leaks; every other
stored byte must be clean.  The scanner is proved on planted values (a copy of a log with one
line of each kind added, a copy of the gate database with a name in a reason).
"""

import base64
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture as fx  # noqa: E402
from fixture import SLACK, expect, harness, ic, request_body  # noqa: E402
from issuance_client import DROP, TYPES  # noqa: E402

RESIDENTS = 300
CARDS = 60


# ----------------------------------------------------------------------------- the needles

class Needles:
    """The personal data of the demo city, read from its registry and linkage files."""

    def __init__(self, city):
        self.texts = {}   # squashed text -> kind (names, kana, addresses)
        self.digits = {}  # resident codes, My Numbers -> kind
        self.hex = {}     # card serials, upper case -> kind
        db = sqlite3.connect("file:%s?mode=ro" % city.registry, uri=True)
        try:
            for fam, giv, kfam, kgiv, code, mn, prev in db.execute(
                    "SELECT family_name, given_name, family_kana, given_kana, resident_code, "
                    "my_number, previous_address FROM residents"):
                self.texts[fam + giv] = "name"
                self.texts[kfam + kgiv] = "kana name"
                self.digits[code] = "resident code"
                self.digits[mn] = "My Number"
                if prev:
                    self._address(prev)
            for fam, giv in db.execute("SELECT family_name, given_name FROM register_persons"):
                self.texts[fam + giv] = "name"
            for (addr,) in db.execute("SELECT address FROM households"):
                self._address(addr)
        finally:
            db.close()
        with open(city.linkage) as f:
            for line in f.read().splitlines()[1:]:
                serial, code = line.split(",")
                self.hex[serial.upper()] = "card serial"
                self.digits[code] = "resident code"
        for r in city.truth:
            self.texts[ic.squash(r["name"])] = "name"
            self._address(r["address"])
            if r["card_serial"]:
                self.hex[r["card_serial"].upper()] = "card serial"
        self.texts = {k: v for k, v in self.texts.items() if len(k) >= 3}

    def _address(self, addr):
        a = ic.squash(addr)
        self.texts[a] = "address"
        # The street part alone (a log might leave out the prefecture and city).
        m = re.search(r"区(.+)$", a)
        if m and len(m.group(1)) >= 6:
            self.texts[m.group(1)] = "address"

    def find(self, text):
        """[(kind, where)] of every needle in text (names and addresses as substrings of the
        text without white space; numbers and serials as whole tokens, serials in any case)."""
        found = []
        sq = ic.squash(text)
        for needle, kind in self.texts.items():
            i = sq.find(needle)
            if i >= 0:
                found.append((kind, sq[max(0, i - 30):i + len(needle) + 10]))
        for tok in set(re.findall(r"[0-9]+", text)):
            if tok in self.digits:
                found.append((self.digits[tok], tok))
        for tok in set(re.findall(r"[0-9A-Fa-f]+", text)):
            if tok.upper() in self.hex:
                found.append(("card serial", tok))
        return found


# ----------------------------------------------------------------------------- the scanners

def db_texts(path, skip=()):
    """[(where, text)] of every text and blob value of every table of an SQLite file (a
    blob also as UTF-8, and the base64 members of a JSON blob decoded); (table, column) pairs
    in skip are left out."""
    out = []
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            cols = [r[1] for r in db.execute("PRAGMA table_info(%s)" % t)]
            for row in db.execute("SELECT * FROM %s" % t):
                for col, v in zip(cols, row):
                    if (t, col) in skip or v is None or isinstance(v, (int, float)):
                        continue
                    text = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                    out.append(("%s.%s" % (t, col), text))
                    out += [("%s.%s (decoded)" % (t, col), x) for x in decoded_members(text)]
    finally:
        db.close()
    return out


def decoded_members(text):
    """The base64 "payload" member of a signed list envelope, decoded (what it signs)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return []
    if isinstance(doc, dict) and isinstance(doc.get("payload"), str):
        try:
            return [base64.b64decode(doc["payload"]).decode("utf-8", "replace")]
        except ValueError:
            return []
    return []


def stored_responses(path):
    """[(request_id, response dict)] of the audit database's stored responses: their bytes are
    in the response spool beside it (data_dir/responses/NNNNNNNNNN.spool, at the row's offset
    and length), or in the row itself for a row written before the spool."""
    spool = os.path.join(os.path.dirname(path), "responses")
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        out = []
        for rid, resp, segment, offset, length in db.execute(
                "SELECT request_id, response, segment, offset, length FROM stored_responses"):
            if segment is not None:
                with open(os.path.join(spool, "%010d.spool" % segment), "rb") as f:
                    f.seek(offset)
                    resp = f.read(length)
            out.append((rid, json.loads(bytes(resp) if not isinstance(resp, str) else resp)))
        return out
    finally:
        db.close()


def copy_db(src, dst):
    a = sqlite3.connect("file:%s?mode=ro" % src, uri=True)
    b = sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------------------ scenario

def run_scenario(city, d, sim):
    c = ic.Client.for_daemon(d, timeout=10 * SLACK)
    keys = c.keys()
    outcomes = set()

    def send(t, r=None, card=None, body=None, **kw):
        r = r or city.issuable(t)
        card = card or city.card(r)
        if body is None:
            body = request_body(t, **kw)
        resp = c.issue(card, body)
        outcomes.add(fx.outcome(resp))
        return resp, json.loads(body), r, card

    # Issuances of every type; one showing household, My Number and domicile.
    first = {}
    for t in TYPES:
        resp, sent, r, card = send(t)
        fx.own_201(keys, r, card, sent, resp)
        first.setdefault("resp", resp)
        first.setdefault("body", json.dumps(sent, ensure_ascii=False,
                                            separators=(",", ":")).encode())
        first.setdefault("card", card)
    full = {"household": True, "show_my_number": True, "show_domicile": True}
    resp, sent, r, card = send("residence", options=full)
    fx.own_201(keys, r, card, sent, resp)

    # Refusals.
    send("seal", r=city.pick(lambda x: x["refusal"]["seal"] == "NO_RECORD"))
    stranger = ic.make_card(os.path.join(city.pki, "card-ca.pem"),
                            os.path.join(city.pki, "card-ca.key"), "7E57AB1E0C0FFEE1")
    send("residence", card=stranger)
    send("residence", r=city.pick(lambda x: x["status"] == "moved-out"))
    body = request_body("residence")
    r0 = city.issuable("residence")
    resp = c.post(body, {"Madoguchi-Card-Certificate": city.card(r0).cert_b64,
                         "Madoguchi-Card-Signature": city.card(r0).sign(b"another body")})
    outcomes.add(fx.outcome(resp))
    send("residence", body=request_body("residence", note="x"))
    send("residence", body=request_body("passport"))
    send("residence", body=request_body("residence", municipality="131016"))
    send("residence", body=request_body("residence", requested_at=DROP))
    send("residence", card=first["card"], body=request_body(
        "residence", request_id=json.loads(first["body"])["request_id"], copies=2))
    stale = [x for x in city.carded if x["stale"] and x["issuable"]["koseki-full"]]
    sim.control("mode stale")
    for x in stale[:2]:
        send("koseki-full", r=x)
    sim.control("mode garbage")
    send("koseki-full")
    sim.control("mode normal")
    time.sleep(0.2)
    sim.control("mode slow")
    sim.control("latency %d" % int(2500 * SLACK))
    for _ in range(3):  # the first may still meet the connection the garbage reset
        if fx.outcome(send("koseki-individual")[0]) == "BACKEND_TIMEOUT":
            break
    sim.control("mode normal")

    # Kill switch: local suspend and resume, a ministry list.
    r = fx.admin(d, "POST", "/v1/plugins/registry/suspend",
                 {"reason": "maintenance window", "certificates": ["seal"]})
    expect(r.status == 200, "suspend: %d" % r.status)
    send("seal")
    r = fx.admin(d, "POST", "/v1/plugins/registry/resume", {"certificates": ["seal"]})
    expect(r.status == 200, "resume: %d" % r.status)
    tmp = tempfile.mkdtemp(prefix="mdg-privacy-lists-")
    try:
        fx.push_list(d, fx.signed_list(city, 5, [
            {"id": "p-1", "plugin": "sqlite-registry", "certificates": ["tax-income"],
             "reason": "drill"}], tmp))
        send("tax-income")
        fx.push_list(d, fx.signed_list(city, 6, [], tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # An integrity fault: the vendor crosses its answers; then acknowledged.
    people = fx.distinct_people(city, "koseki-attachment", 8)
    jobs = [(city.card(x), request_body("koseki-attachment")) for x in people]
    sim.control("mode swap")
    res = ic.send_together(d, jobs, timeout=10 * SLACK)
    sim.control("mode normal")
    outcomes.update(fx.outcome(x) for x in res)
    for x, resp in zip(people, res):
        if fx.outcome(resp) == "ISSUED":
            fx.own_201(keys, x, city.card(x), json.loads(jobs[people.index(x)][1]), resp)
    send("koseki-full")  # suspended (auto)
    r = fx.admin(d, "POST", "/v1/plugins/vendor/resume", {"ack_integrity_fault": True})
    expect(r.status == 200, "ack: %d %r" % (r.status, r.body[:200]))

    # A linkage import with madoguchictl, a restart, a replay after it.
    p = d.run_ctl("--socket", d.admin_sock, "linkage", "import", city.linkage, timeout=60)
    expect(p.returncode == 0, "linkage import: %s" % p.stderr)
    c.close()
    rc = d.stop()
    expect(rc == 0, "exit %r" % rc)
    d.start()
    resp = c.issue(first["card"], first["body"])
    expect(resp.status == 201 and resp.body == first["resp"].body, "replay %d" % resp.status)
    resp, sent, r, card = send("koseki-full")
    fx.own_201(keys, r, card, sent, resp)
    c.close()
    return outcomes


def main(tap):
    city = ic.DemoCity(RESIDENTS, CARDS, ministry=("dev",), prefix="mdg-privacy-")
    work = tempfile.mkdtemp(prefix="mdg-privacy-")
    sim_err = os.path.join(work, "vendor-sim.stderr")
    sim = harness.VendorSim(city.registry, ["--fault-rate", "1000"], stderr_path=sim_err)
    try:
        needles = Needles(city)
        tap.diag("needles: %d texts, %d numbers, %d serials" % (len(needles.texts),
                                                               len(needles.digits),
                                                               len(needles.hex)))
        certs = fx.routes("registry", koseki_full="vendor", koseki_individual="vendor",
                          koseki_attachment="vendor")
        cfg = fx.config(city, sim, certificates=certs, ministry=fx.ministry_config(city),
                        timeout="%ds" % int(1 * SLACK))
        cfg["log"] = {"level": "debug", "access": True}
        d = city.start_daemon(cfg)
        state = {}

        def scenario():
            state["outcomes"] = run_scenario(city, d, sim)
            want = {"ISSUED", "NO_RECORD", "RECORD_NOT_ISSUABLE", "CARD_PROOF_INVALID",
                    "INVALID_REQUEST", "UNSUPPORTED_CERTIFICATE", "MUNICIPALITY_NOT_SERVED",
                    "REQUEST_ID_CONFLICT", "DATA_NOT_CURRENT", "BACKEND_ERROR",
                    "BACKEND_TIMEOUT", "INTEGRITY_FAULT", "SERVICE_SUSPENDED"}
            missing = want - state["outcomes"]
            expect(not missing, "outcomes not provoked: %r (got %r)"
                   % (sorted(missing), sorted(state["outcomes"])))
        tap.check("the full scenario ran: issuances of all seven types and a refusal of each "
                  "kind, kill switch changes, linkage import, restart, replay", scenario)
        d.stop()
        sim.stop()

        def report(found):
            return "; ".join("%s in %s: %r" % (k, where, ctx) for where, k, ctx in found[:8])

        logs = [("daemon log", d.log_text(all_runs=True))]
        with open(sim_err, encoding="utf-8", errors="replace") as f:
            logs.append(("vendor-sim stderr", f.read()))

        def logs_clean():
            expect(logs[0][1].count("\n") > 50, "only %d daemon log lines"
                   % logs[0][1].count("\n"))
            expect(logs[1][1].strip(), "the vendor simulator wrote nothing to stderr")
            found = [(w, k, ctx) for w, text in logs for k, ctx in needles.find(text)]
            expect(not found, report(found))
        tap.check("no name, address, card serial, resident code or My Number in any log line "
                  "(%d daemon runs, debug level, access log) or the vendor simulator's stderr"
                  % len(d._logs_seen), logs_clean)

        audit_db, gate_db = d.path("data/audit.sqlite"), d.path("data/gate.sqlite")

        def databases_clean():
            found = []
            for path in (audit_db, gate_db):
                texts = db_texts(path, skip={("stored_responses", "response")})
                expect(texts, "no text in %s" % path)
                for where, text in texts:
                    found += [(where, k, ctx) for k, ctx in needles.find(text)]
            expect(not found, report(found))
        tap.check("no personal data in any text or blob column of any table of audit.sqlite "
                  "(rows, checkpoints, stored responses' other columns) and gate.sqlite "
                  "(suspensions, the ministry list and its decoded payload)", databases_clean)

        def stored_clean():
            stored = stored_responses(audit_db)
            expect(stored, "no stored response")
            found, serials, named = [], 0, 0
            for rid, doc in stored:
                data = doc.get("document", {}).pop("data", "")
                subject = doc.get("subject", {})
                if subject.pop("card_serial", None):
                    serials += 1
                found += [("stored_responses %s" % rid, k, ctx)
                          for k, ctx in needles.find(json.dumps(doc, ensure_ascii=False))]
                found += [("stored_responses %s document.data as text" % rid, k, ctx)
                          for k, ctx in needles.find(data)]
                if needles.find(ic.pdf_text(base64.b64decode(data))):
                    named += 1
            tap.diag("stored responses: %d; each keeps subject.card_serial (DESIGN §4, a "
                     "byte-identical replay) in %d; the stored PDF names its resident in %d "
                     "(the certificate itself)" % (len(stored), serials, named))
            expect(not found, report(found))
        tap.check("the stored 201 answers carry no personal data outside the certificate and "
                  "subject.card_serial (their base64 document text included)", stored_clean)

        def scanner_works():
            r = city.carded[0]
            row = [x for x in city.truth if x["card_serial"] == r["card_serial"]][0]
            db = sqlite3.connect("file:%s?mode=ro" % city.registry, uri=True)
            mn = db.execute("SELECT my_number FROM residents WHERE resident_code = ?",
                            (row["resident_code"],)).fetchone()[0]
            db.close()
            plants = {"name": '{"event":"x","who":"%s"}' % row["name"],
                      "card serial": '{"event":"x","card":"%s"}' % r["card_serial"].lower(),
                      "resident code": '{"event":"x","code":"%s"}' % row["resident_code"],
                      "My Number": '{"event":"x","mn":%s}' % mn,
                      "address": '{"event":"x","a":"%s"}' % row["address"]}
            missed = []
            for kind, line in plants.items():
                copy = logs[0][1] + line + "\n"
                if kind not in [k for k, _ in needles.find(copy)]:
                    missed.append(kind)
            g = os.path.join(work, "gate-copy.sqlite")
            copy_db(gate_db, g)
            db = sqlite3.connect(g)
            db.execute("INSERT INTO suspensions VALUES ('local', 'registry', 'seal', ?, 0, "
                       "'immediate')", ("for %s" % row["name"],))
            db.commit()
            db.close()
            if not any(needles.find(t) for _, t in db_texts(g)):
                missed.append("name in a copy of gate.sqlite")
            expect(not missed, "the scanner misses planted %r" % missed)
        tap.check("the scanner finds a planted name, card serial (lower case), resident code, "
                  "My Number and address in a copy of the log, and a name in a copy of "
                  "gate.sqlite", scanner_works)
    finally:
        sim.cleanup()
        harness.sanitizer_point(tap, *list(harness.Daemon._all))
        city.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    harness.run(main)
