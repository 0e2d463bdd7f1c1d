#!/usr/bin/env python3
"""test_incidents.py: the incident replay (issue 7).  One scenario per incident of DESIGN §1,
each against real madoguchid processes and the vendor simulator's fault modes, asserting what
the table promises.  Each scenario starts its own simulator and daemon(s) on one shared demo
city (tests/incidents/fixture.py), so a scenario reads on its own: its docstring quotes the
incident and the promise, its test points are named "In: ...".

Environment: MDG_SRCDIR, MDG_BUILDDIR, MDG_SANITIZERS, MDG_PLUGINS, MDG_TEST_PLUGINS,
MDG_VENDOR_SIM; MDG_INCIDENTS=I1,I6 runs only those scenarios.  Loopback only; bounded
request counts and timeouts (SLACK under ASan).
"""

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture as fx  # noqa: E402
from fixture import SLACK, expect, harness, ic, request_body  # noqa: E402

CTL = harness.CTL


def scenario_i1(tap, city, sims):
    """I1: "10 wrong certificates in one city in 9 minutes: under load a print job timed out;
    only part of the job was released and the process picked up the next print-image file."
    Promise: a document is addressed by its request, never by position in a queue; a timeout
    cancels the whole issuance; late results are dropped by ticket.

    A slow backend (300..1500 ms) and a 1 s issuance deadline: a burst of 24 requests of
    unrelated residents at once, then, while the late answers of the timed-out ones are still
    coming back, a second burst of 12 others against a now fast backend."""
    deadline_ms = int(1000 * SLACK)
    sim = harness.VendorSim(city.registry, ["--mode", "slow", "--latency-ms",
                                            "%d..%d" % (300 * SLACK, 1500 * SLACK)])
    sims.append(sim)
    d = city.start_daemon(fx.config(city, sim, issuance={"deadline": "%dms" % deadline_ms},
                                        timeout="%ds" % int(5 * SLACK)))
    keys = ic.Client.for_daemon(d).keys()
    people = fx.distinct_people(city, "residence", 36)
    wave1, wave2 = people[:24], people[24:]
    before = harness.metric_sum(d.metrics_text(), "madoguchi_plugin_late_completions_total")

    def burst(rs):
        sents, jobs = [], []
        for r in rs:
            body, sent = request_body("residence", raw=True)
            sents.append(sent)
            jobs.append((city.card(r), body))
        t0 = time.monotonic()
        res = ic.send_together(d, jobs, timeout=10 * SLACK)
        return sents, res, time.monotonic() - t0

    s1, r1, took1 = burst(wave1)
    sim.control("latency 10..50")
    s2, r2, _ = burst(wave2)
    codes1 = collections.Counter(fx.outcome(r) for r in r1)
    codes2 = collections.Counter(fx.outcome(r) for r in r2)
    tap.diag("I1 wave 1 (slow backend, %d ms deadline): %r in %.2f s; wave 2: %r"
             % (deadline_ms, dict(codes1), took1, dict(codes2)))

    issued, timed_out = {}, set()

    def own_documents():
        bad = []
        for rs, sents, res in ((wave1, s1, r1), (wave2, s2, r2)):
            for r, sent, resp in zip(rs, sents, res):
                if fx.outcome(resp) == "ISSUED":
                    try:
                        answer, _ = fx.own_201(keys, r, city.card(r), sent, resp, people)
                        issued[sent["request_id"]] = answer["document"]["sha256"]
                    except AssertionError as e:
                        bad.append("%s: %s" % (r["card_serial"][:4], e))
                elif fx.outcome(resp) == "BACKEND_TIMEOUT":
                    fx.problem(resp, 504, "BACKEND_TIMEOUT", sent["request_id"])
                    timed_out.add(sent["request_id"])
        expect(not bad, "; ".join(bad[:4]))
        expect(set(codes1) <= {"ISSUED", "BACKEND_TIMEOUT"}, "wave 1: %r" % dict(codes1))
        expect(codes1["BACKEND_TIMEOUT"] >= 1, "no request timed out: %r" % dict(codes1))
        expect(codes2 == {"ISSUED": len(wave2)}, "wave 2: %r" % dict(codes2))
    tap.check("I1: under a slow backend with a short deadline every answer is its own: each "
              "201 (both bursts) verifies for its card and its PDF names its resident and no "
              "other requester; the others are 504 BACKEND_TIMEOUT", own_documents)

    def late_dropped():
        after = fx.wait_for(lambda: (lambda v: v if v > before else None)(
            harness.metric_sum(d.metrics_text(), "madoguchi_plugin_late_completions_total")),
            5 * SLACK, what="a late completion counted")
        tap.diag("late completions dropped: %d" % (after - before))
    tap.check("I1: the timed-out fetches' late answers are dropped by ticket (counted)",
              late_dropped)

    def whole_issuance_cancelled():
        rows = fx.rows_by_request(d)
        bad = []
        for rid in timed_out:
            got = rows.get(rid, [])
            if len(got) != 1 or got[0]["outcome"] != "BACKEND_TIMEOUT" or \
                    got[0]["issuance_id"] is not None or got[0]["document_sha256"] is not None:
                bad.append("timed out %s: %r" % (rid, got))
        for rid, sha in issued.items():
            got = rows.get(rid, [])
            if len(got) != 1 or got[0]["outcome"] != "ISSUED" or got[0]["document_sha256"] != sha:
                bad.append("issued %s: %r" % (rid, got))
        expect(not bad, "; ".join(bad[:3]))
    tap.check("I1: a timed-out request has exactly one audit row, BACKEND_TIMEOUT, without "
              "issuance id or document; each 201 exactly one ISSUED row with its document",
              whole_issuance_cancelled)
    harness.stop_point(tap, d, "I1: the daemon exits 0 on SIGTERM")


def scenario_i2(tap, city, sims):
    """I2: "a family-register certificate went to another person: two requests at two stores
    within 1 s; the later overwrote the earlier (shared state in an interface program)."
    Promise: no shared mutable per-request state; the returned record must carry the
    requested resident's identity or nothing is delivered.

    20 unrelated residents ask at the same instant (a barrier): each gets only their own
    document.  Then the vendor crosses its answers (swap mode): nothing crossed is delivered,
    the fault suspends that plugin (source auto) and only that plugin."""
    sim = harness.VendorSim(city.registry)
    sims.append(sim)
    d = city.start_daemon(fx.config(city, sim, certificates=fx.routes(
        "vendor", tax_income="registry", residence_record="registry")))
    keys = ic.Client.for_daemon(d).keys()
    people = fx.distinct_people(city, "koseki-full", 20)

    def burst(t):
        sents, jobs = [], []
        for r in people:
            body, sent = request_body(t, raw=True)
            sents.append(sent)
            jobs.append((city.card(r), body))
        return sents, ic.send_together(d, jobs, timeout=15 * SLACK)

    def same_instant():
        sents, res = burst("koseki-full")
        bad = []
        for r, sent, resp in zip(people, sents, res):
            try:
                fx.own_201(keys, r, city.card(r), sent, resp, people)
            except AssertionError as e:
                bad.append("%s: %s" % (r["card_serial"][:4], e))
        expect(not bad, "; ".join(bad[:4]))
    tap.check("I2: 20 koseki-full requests of 20 residents of different registers at the same "
              "instant: each 201 verifies for its card and names only its own resident",
              same_instant)

    state = {}

    def crossed():
        sim.control("mode swap")
        try:
            sents, res = burst("koseki-full")
        finally:
            sim.control("mode normal")
        codes = collections.Counter(fx.outcome(r) for r in res)
        state["sents"] = sents
        tap.diag("I2 swap mode, 20 at once: %r" % dict(codes))
        bad = []
        for r, sent, resp in zip(people, sents, res):
            if fx.outcome(resp) == "ISSUED":
                try:
                    fx.own_201(keys, r, city.card(r), sent, resp, people)
                except AssertionError as e:
                    bad.append("%s: %s" % (r["card_serial"][:4], e))
            elif fx.outcome(resp) in ("INTEGRITY_FAULT", "SERVICE_SUSPENDED"):
                fx.problem(resp, resp.status, fx.outcome(resp), sent["request_id"])
        expect(not bad, "a 201 with another person's data: %s" % "; ".join(bad[:4]))
        expect(codes["INTEGRITY_FAULT"] >= 1, "no INTEGRITY_FAULT: %r" % dict(codes))
        expect(set(codes) <= {"ISSUED", "INTEGRITY_FAULT", "SERVICE_SUSPENDED"},
               "unexpected outcomes %r" % dict(codes))
    tap.check("I2: the vendor answers each request with another resident's record (swap "
              "mode): no 201 carries another person's data, at least one 500 INTEGRITY_FAULT",
              crossed)

    def only_that_plugin():
        v = fx.plugin_view(d, "vendor")
        expect(v["state"] == "suspended" and [s["source"] for s in v["suspensions"]] == ["auto"],
               "vendor %r" % v)
        r = people[0]
        body, sent = request_body("residence", raw=True)
        fx.problem(ic.Client.for_daemon(d).issue(city.card(r), body), 503,
                   "SERVICE_SUSPENDED", sent["request_id"])
        for t in ("tax-income", "residence-record"):
            q = city.issuable(t)
            body, sent = request_body(t, raw=True)
            fx.own_201(keys, q, city.card(q), sent, ic.Client.for_daemon(d).issue(
                city.card(q), body))
        rows = fx.rows_by_request(d)
        faults = [row for s in state.get("sents", []) for row in rows.get(s["request_id"], [])
                  if row["outcome"] == "INTEGRITY_FAULT"]
        expect(faults and all(f["issuance_id"] is None and f["document_sha256"] is None
                              for f in faults), "INTEGRITY_FAULT rows %r" % faults)
    tap.check("I2: after the fault the vendor plugin is suspended (source auto) for every type "
              "while the registry's types are still issued; the fault rows carry no document",
              only_that_plugin)
    harness.stop_point(tap, d, "I2: the daemon exits 0 on SIGTERM")


def scenario_i3(tap, city, sims):
    """I3: "certificates of residents whose record had changed were printed: concurrent
    on-demand sync between the store system and the resident system."
    Promise: record versions are fenced: data older than a known change is refused.

    The vendor serves the state before a status change (moved out or died; the old record
    says active): refused DATA_NOT_CURRENT, never issued.  A backend that announces a change
    (host->notify_change, the test plugin in mode notify: version 7 announced, version 3
    served) raises the resident's high-water mark: its record is refused DATA_NOT_CURRENT."""
    sim = harness.VendorSim(city.registry)
    sims.append(sim)
    d = city.start_daemon(fx.config(city, sim))
    changed = [r for r in city.carded if r["stale"] and r["stale"]["kind"] == "status"][:4]

    def stale_status():
        expect(changed, "no carded resident with a status change in the demo city")
        c = ic.Client.for_daemon(d)
        sim.control("mode stale")
        try:
            for r in changed:
                body, sent = request_body("residence", raw=True)
                fx.problem(c.issue(city.card(r), body), 503, "DATA_NOT_CURRENT",
                           sent["request_id"])
        finally:
            sim.control("mode normal")
        for r in changed:
            body, sent = request_body("residence", raw=True)
            fx.problem(c.issue(city.card(r), body), 422, "RECORD_NOT_ISSUABLE",
                       sent["request_id"])
    tap.check("I3: %d residents whose status changed (moved out / died), the vendor serving "
              "the older 'active' version: 503 DATA_NOT_CURRENT; the current record: 422"
              % len(changed), stale_status)
    harness.stop_point(tap, d, "I3: the daemon exits 0 on SIGTERM")

    try:
        pdir = harness.plugin_dir_with("mock.so", "sqlite-registry.so")
    except FileNotFoundError as e:
        tap.skip("I3: a change notification raises the high-water mark", "no test plugin: %s" % e)
        return
    try:
        cfg = fx.config(city, None, plugin_dir=pdir, certificates=fx.routes(
            "registry", residence="notifier"), plugins={
                "notifier": {"file": "mock.so", "timeout": "2s", "max_in_flight": 16,
                             "config": {"mode": "notify"}}})
        d2 = city.start_daemon(cfg)

        def fenced():
            r = city.issuable("residence")
            body, sent = request_body("residence", raw=True)
            doc = fx.problem(ic.Client.for_daemon(d2).issue(city.card(r), body), 503,
                             "DATA_NOT_CURRENT", sent["request_id"])
            expect("version" in doc.get("detail", ""), "detail %r" % doc.get("detail"))
            n = harness.metric_sum(d2.metrics_text(),
                                   "madoguchi_plugin_change_notifications_total")
            expect(n >= 1, "change notifications counted: %r" % n)
            rows = fx.rows_by_request(d2).get(sent["request_id"], [])
            expect(len(rows) == 1 and rows[0]["outcome"] == "DATA_NOT_CURRENT"
                   and rows[0]["document_sha256"] is None, "audit rows %r" % rows)
        tap.check("I3: a backend announces version 7 of a resident and then serves version 3: "
                  "503 DATA_NOT_CURRENT (the version fence), audited without a document",
                  fenced)
        harness.stop_point(tap, d2, "I3: the fence daemon exits 0 on SIGTERM")
    finally:
        shutil.rmtree(pdir, ignore_errors=True)


def scenario_i4(tap, city, sims):
    """I4: "seal certificates issued after the seal registration was abolished (11 cases,
    back to 2020): broken data link between the resident system and the issuing server."
    Promise: the record's status is checked for every type; abolished / deleted / moved-out /
    deceased are not issuable.

    Through the vendor backend: an abolished seal, a moved-out and a deceased resident (every
    type), a registered seal of a resident no longer active: 422 RECORD_NOT_ISSUABLE, audited
    without a document.  The broken link itself: the vendor serving the seal as it was before
    the abolition is refused too (DATA_NOT_CURRENT)."""
    sim = harness.VendorSim(city.registry)
    sims.append(sim)
    d = city.start_daemon(fx.config(city, sim))
    c = ic.Client.for_daemon(d)
    sent_ids = []

    def not_issuable():
        cases = [("abolished seal", "seal", city.pick(
            lambda x: x["status"] == "active" and x["seal_status"] == "abolished"))]
        for st in ("moved-out", "deceased"):
            r = city.pick(lambda x, st=st: x["status"] == st)
            cases += [("%s resident" % st, t, r) for t in fx.TYPES
                      if r["refusal"][t] == "RECORD_NOT_ISSUABLE"]
        cases.append(("registered seal of a resident no longer active", "seal", city.pick(
            lambda x: x["status"] != "active" and x["seal_status"] == "registered")))
        bad = []
        for label, t, r in cases:
            expect(r["refusal"][t] == "RECORD_NOT_ISSUABLE", "truth for %s: %r"
                   % (label, r["refusal"][t]))
            body, sent = request_body(t, raw=True)
            sent_ids.append(sent["request_id"])
            try:
                fx.problem(c.issue(city.card(r), body), 422, "RECORD_NOT_ISSUABLE",
                           sent["request_id"])
            except AssertionError as e:
                bad.append("%s (%s): %s" % (label, t, e))
        tap.diag("I4: %d refusals checked" % len(cases))
        expect(len(cases) >= 8 and not bad, "; ".join(bad))
        rows = fx.rows_by_request(d)
        wrong = [rid for rid in sent_ids if [x["outcome"] for x in rows.get(rid, [])]
                 != ["RECORD_NOT_ISSUABLE"] or rows[rid][0]["document_sha256"] is not None]
        expect(not wrong, "audit rows of %d refusals are not one RECORD_NOT_ISSUABLE row "
               "without document" % len(wrong))
    tap.check("I4: an abolished seal, a moved-out and a deceased resident (each type the "
              "truth refuses), a registered seal of a resident no longer active: 422 "
              "RECORD_NOT_ISSUABLE, each audited without a document", not_issuable)

    abolished = [r for r in city.carded if r["stale"] and r["stale"]["kind"] == "seal"][:3]
    if not abolished:
        tap.skip("I4: a seal served as it was before its abolition is refused",
                 "no carded resident with an abolished seal history in this city")
    else:
        def stale_seal():
            sim.control("mode stale")
            try:
                for r in abolished:
                    body, sent = request_body("seal", raw=True)
                    fx.problem(c.issue(city.card(r), body), 503, "DATA_NOT_CURRENT",
                               sent["request_id"])
            finally:
                sim.control("mode normal")
        tap.check("I4: the vendor serving %d seals as registered from before their abolition "
                  "(stale mode): 503 DATA_NOT_CURRENT, no certificate" % len(abolished),
                  stale_seal)
    c.close()
    harness.stop_point(tap, d, "I4: the daemon exits 0 on SIGTERM")


def scenario_i5(tap, city, sims):
    """I5: "old address printed after a move: the change reached the issuing system late
    (operator setting)."
    Promise: each backend reports as_of; data older than the configured bound is refused.

    Residents who moved within the city: the vendor serving the address before the move
    (stale mode, honest as_of hours old) is refused DATA_NOT_CURRENT; once it serves the
    current record the document prints the new address."""
    sim = harness.VendorSim(city.registry)
    sims.append(sim)
    d = city.start_daemon(fx.config(city, sim))
    c = ic.Client.for_daemon(d)
    keys = c.keys()
    moved = [r for r in city.carded if r["stale"] and r["stale"]["kind"] == "address"
             and r["issuable"]["residence"]][:4]

    def stale_refused():
        expect(moved, "no carded resident who moved in the demo city")
        sim.control("mode stale")
        try:
            for r in moved:
                body, sent = request_body("residence", raw=True)
                doc = fx.problem(c.issue(city.card(r), body), 503, "DATA_NOT_CURRENT",
                                 sent["request_id"])
                expect("as_of" in doc.get("detail", ""), "detail %r" % doc.get("detail"))
        finally:
            sim.control("mode normal")
    tap.check("I5: %d residents who moved, the vendor serving the address before the move "
              "with its honest as_of: 503 DATA_NOT_CURRENT (as_of older than the bound)"
              % len(moved), stale_refused)

    def current_printed():
        for r in moved:
            body, sent = request_body("residence", raw=True)
            _, pdf = fx.own_201(keys, r, city.card(r), sent, c.issue(city.card(r), body))
            text = ic.squash(ic.pdf_text(pdf))
            addr = ic.squash(r["address"])
            expect(addr in text, "the current address is not printed")
    tap.check("I5: the current records are issued and print the new address", current_printed)
    c.close()
    harness.stop_point(tap, d, "I5: the daemon exits 0 on SIGTERM")


PAGE_CODE = re.compile(r"MDG1:\S+")


def page_codes(pdf):
    """The verification code text of each page, by pdftotext page by page."""
    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(pdf)
        f.flush()
        info = subprocess.run(["pdfinfo", f.name], capture_output=True, text=True, timeout=30)
        m = re.search(r"^Pages:\s+(\d+)", info.stdout, re.M)
        n = int(m.group(1)) if m else 0
        out = []
        for i in range(1, n + 1):
            p = subprocess.run(["pdftotext", "-f", str(i), "-l", str(i), f.name, "-"],
                               capture_output=True, text=True, timeout=30)
            out.append(PAGE_CODE.findall(p.stdout))
        return out


def scenario_i6(tap, city, sims):
    """I6: "page 2 of a 3-page certificate belonged to someone else: multi-page assembly."
    Promise: every page carries the issuance id and the subject binding in its verification
    code.

    Multi-page documents (residence certificates of whole large households, full registers)
    of different residents requested at the same instant: every page's code verifies
    (madoguchictl verify), names this issuance and page n/N, and all pages of one document
    carry one digest.  A backend that loses the last part of a record (partial mode) delivers
    nothing."""
    sim = harness.VendorSim(city.registry)
    sims.append(sim)
    d = city.start_daemon(fx.config(city, sim))
    keys = ic.Client.for_daemon(d).keys()
    sizes = collections.Counter(r["household_id"] for r in city.truth if r["status"] == "active")
    big = sorted((r for r in city.carded if r["issuable"]["residence"]
                  and sizes[r["household_id"]] >= 6),
                 key=lambda r: -sizes[r["household_id"]])
    seen, people = set(), []
    for r in big:
        if r["household_id"] not in seen:
            seen.add(r["household_id"])
            people.append(r)
    people = people[:4]
    household = {"household": True, "show_my_number": False, "show_domicile": False}
    state = {}

    def multi_page():
        expect(len(people) >= 2, "only %d carded residents of households of six or more"
               % len(people))
        jobs, sents = [], []
        for r in people:
            body, sent = request_body("residence", raw=True, options=household)
            jobs.append((city.card(r), body))
            sents.append(sent)
        res = ic.send_together(d, jobs, timeout=15 * SLACK)
        docs = []
        for r, sent, resp in zip(people, sents, res):
            answer, pdf = fx.own_201(keys, r, city.card(r), sent, resp)
            docs.append((answer, pdf))
        state["docs"] = docs
        pages = [a["pages"] for a, _ in docs]
        tap.diag("I6: pages of the household certificates: %r" % pages)
        expect(sum(1 for p in pages if p >= 2) >= 2, "fewer than two multi-page documents: %r"
               % pages)
    tap.check("I6: residence certificates of %d large households requested at once: each 201 "
              "is its requester's, at least two of them multi-page" % len(people), multi_page)

    def codes_bound():
        expect("docs" in state, "no documents")
        bad, checked = [], 0
        for answer, pdf in state["docs"]:
            codes = page_codes(pdf)
            n = answer["pages"]
            if len(codes) != n or any(len(c) != 1 for c in codes):
                bad.append("%s: %d pages, codes %r" % (answer["issuance_id"], n,
                                                       [len(c) for c in codes]))
                continue
            digests = set()
            for i, (code,) in enumerate(codes, 1):
                parts = code.split(":")
                if len(parts) != 6 or parts[2] != answer["issuance_id"] or \
                        parts[3] != "%d/%d" % (i, n):
                    bad.append("page %d of %s: code names %r" % (i, answer["issuance_id"],
                                                                 parts[2:4]))
                digests.add(parts[4] if len(parts) == 6 else None)
                p = subprocess.run([CTL, "verify", "--public-key", city.document_pub, code],
                                   capture_output=True, text=True, timeout=30)
                checked += 1
                want = "issuance %s, page %d/%d" % (answer["issuance_id"], i, n)
                if p.returncode != 0 or want not in p.stdout:
                    bad.append("page %d of %s: verify %d %r %r" % (
                        i, answer["issuance_id"], p.returncode, p.stdout.strip(),
                        p.stderr.strip()))
            if len(digests) != 1:
                bad.append("%s: the pages carry %d digests" % (answer["issuance_id"],
                                                               len(digests)))
        tap.diag("I6: %d page codes verified" % checked)
        expect(not bad, "; ".join(bad[:4]))
    tap.check("I6: every page of every document has one code that verifies (madoguchictl "
              "verify), names its issuance id and page n/N, and one digest per document",
              codes_bound)

    def partial():
        sim.control("mode partial")
        try:
            c = ic.Client.for_daemon(d)
            for r in people[:2]:
                body, sent = request_body("residence", raw=True, options=household)
                fx.problem(c.issue(city.card(r), body), 502, "BACKEND_ERROR", sent["request_id"])
                rows = fx.rows_by_request(d).get(sent["request_id"], [])
                expect([x["outcome"] for x in rows] == ["BACKEND_ERROR"]
                       and rows[0]["document_sha256"] is None, "audit rows %r" % rows)
            c.close()
        finally:
            sim.control("mode normal")
    tap.check("I6: the vendor drops the last member of a multi-member record (partial mode): "
              "502 BACKEND_ERROR, audited without a document", partial)
    harness.stop_point(tap, d, "I6: the daemon exits 0 on SIGTERM")


def scenario_i7(tap, city, sims):
    """I7: "a fix for a known bug was missing on 44 of 123 installations: no fleet-wide view
    of versions."
    Promise: appliances report plugin versions; a ministry suspension can target a version
    range.

    The appliance reports each plugin's version (GET /v1/status, GET /v1/plugins, every audit
    row); a ministry list for fujitsu-like below the fixed version 2.3.1 suspends this
    appliance's 1.0.0 and nothing else, one for versions below 1.0.0 does not, a local resume
    cannot lift it, a newer list lifts it."""
    sim = harness.VendorSim(city.registry)
    sims.append(sim)
    d = city.start_daemon(fx.config(city, sim, certificates=fx.routes(
        "vendor", residence="registry", seal="registry"), ministry=fx.ministry_config(city)))
    c = ic.Client.for_daemon(d)
    keys = c.keys()
    tmp = tempfile.mkdtemp(prefix="mdg-incident-lists-")

    def send(t):
        r = city.issuable(t)
        body, sent = request_body(t, raw=True)
        return r, sent, c.issue(city.card(r), body)

    def issued(t):
        r, sent, resp = send(t)
        return fx.own_201(keys, r, city.card(r), sent, resp)[0]

    def suspended(t, source):
        _, sent, resp = send(t)
        doc = fx.problem(resp, 503, "SERVICE_SUSPENDED", sent["request_id"])
        expect((doc.get("suspension") or {}).get("source") == source, "suspension %r"
               % doc.get("suspension"))

    def versions_reported():
        st = {p["name"]: p for p in d.admin_get("/v1/status").json()["plugins"]}
        pl = {p["name"]: p for p in d.admin_get("/v1/plugins").json()["plugins"]}
        for name in ("vendor", "registry"):
            expect(st[name].get("version") and st[name]["version"] == pl[name]["version"],
                   "%s: status %r, plugins %r" % (name, st[name].get("version"),
                                                  pl[name].get("version")))
        expect(pl["vendor"]["version"] == "1.0.0", "vendor version %r" % pl["vendor"]["version"])
        answer = issued("koseki-full")
        # The 201 names the city's instance ("vendor"), with the plugin's version.
        expect(answer["plugin"].get("version") == "1.0.0", "201 plugin %r" % answer["plugin"])
        rows = fx.rows_by_request(d)[answer["request_id"]]
        expect([x["plugin_version"] for x in rows] == ["1.0.0"], "audit %r" % rows)
    tap.check("I7: the plugin versions are reported by GET /v1/status and GET /v1/plugins, in "
              "each 201 and in each audit row", versions_reported)

    def by_version():
        fx.push_list(d, fx.signed_list(city, 10, [
            {"id": "i7-old", "plugin": "fujitsu-like", "versions": "<1.0.0",
             "reason": "fixed in 1.0.0"}], tmp))
        issued("koseki-full")
        expect(fx.plugin_view(d, "vendor")["state"] == "serving", "vendor not serving")
        fx.push_list(d, fx.signed_list(city, 11, [
            {"id": "i7-bug", "plugin": "fujitsu-like", "versions": ">=1.0.0,<2.3.1",
             "reason": "fix in 2.3.1"}], tmp))
        for t in fx.KOSEKI + ("tax-income",):
            suspended(t, "ministry")
        issued("residence")
        issued("seal")
        r = fx.admin(d, "POST", "/v1/plugins/vendor/resume", {})
        expect(r.status == 409 and r.json().get("code") == "SUSPENSION_HELD",
               "local resume: %d %r" % (r.status, r.body[:200]))
        suspended("koseki-full", "ministry")
        fx.push_list(d, fx.signed_list(city, 12, [
            {"id": "i7-bug", "plugin": "fujitsu-like", "versions": "<1.0.0",
             "reason": "fix in 2.3.1"}], tmp))
        issued("koseki-full")
    tap.check("I7: a ministry list for fujitsu-like <1.0.0 leaves 1.0.0 serving; one for "
              ">=1.0.0,<2.3.1 suspends it (every type it serves, source ministry) and not the "
              "registry plugin; a local resume is 409 SUSPENSION_HELD; a newer list lifts it",
              by_version)
    c.close()
    shutil.rmtree(tmp, ignore_errors=True)
    harness.stop_point(tap, d, "I7: the daemon exits 0 on SIGTERM")


def scenario_i8(tap, city, sims):
    """I8: "a program written for one server was deployed on several: concurrency assumptions
    broken by scale-out."
    Promise: correctness must not depend on a single instance; state that matters is in
    SQLite.

    Two appliances of the same city, each with its own data_dir and its own backend
    connection, sharing nothing but the ministry's list: requests spread over both at the same
    instant each get their own document; the same signed list pushed to both suspends the same
    scope on both, and still does after one of them restarts."""
    sim_a = harness.VendorSim(city.registry)
    sim_b = harness.VendorSim(city.registry)
    sims += [sim_a, sim_b]
    mc = fx.ministry_config(city)
    # Each appliance has its node (issuance.node), as a city running several must configure.
    a = city.start_daemon(fx.config(city, sim_a, ministry=mc, issuance={"node": "a"}))
    b = city.start_daemon(fx.config(city, sim_b, ministry=mc, issuance={"node": "b"}))
    keys_a, keys_b = ic.Client.for_daemon(a).keys(), ic.Client.for_daemon(b).keys()
    tmp = tempfile.mkdtemp(prefix="mdg-incident-lists-")
    people = fx.distinct_people(city, "koseki-individual", 24)

    def spread():
        sents = []
        jobs = {a: [], b: []}
        for i, r in enumerate(people):
            body, sent = request_body("koseki-individual", raw=True)
            sents.append((a if i % 2 == 0 else b, r, sent))
            jobs[a if i % 2 == 0 else b].append((city.card(r), body))
        res = {}
        ts = [threading.Thread(target=lambda dd=dd: res.__setitem__(
            dd, ic.send_together(dd, jobs[dd], timeout=15 * SLACK)), daemon=True) for dd in (a, b)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60 * SLACK)
        bad, ids = [], {a: set(), b: set()}
        idx = {a: 0, b: 0}
        for dd, r, sent in sents:
            resp = res[dd][idx[dd]]
            idx[dd] += 1
            try:
                answer, _ = fx.own_201(keys_a if dd is a else keys_b, r, city.card(r), sent,
                                       resp, people)
                ids[dd].add(answer["issuance_id"])
            except AssertionError as e:
                bad.append("%s: %s" % (r["card_serial"][:4], e))
        expect(not bad, "; ".join(bad[:4]))
        shared = ids[a] & ids[b]
        expect(not shared, "the two appliances gave %d identical issuance ids (%s)"
               % (len(shared), sorted(shared)[:1]))
        for dd, node in ((a, "a"), (b, "b")):
            expect(all(i.split("-")[1] == node for i in ids[dd]),
                   "issuance ids of node %s: %r" % (node, sorted(ids[dd])[:2]))
    tap.check("I8: 24 residents at the same instant, spread over two appliances (nodes a and "
              "b): each 201 verifies for its card and names only its own resident, and no "
              "issuance id is given by both", spread)

    def same_list():
        signed = fx.signed_list(city, 20, [
            {"id": "i8-seal", "plugin": "fujitsu-like", "certificates": ["seal"],
             "reason": "scale-out check"}], tmp)
        for dd in (a, b):
            got = fx.push_list(dd, signed)
            expect(got.get("applied") is True, "push: %r" % got)
        b.stop()
        b.start()
        for dd in (a, b):
            c = ic.Client.for_daemon(dd)
            r = city.issuable("seal")
            body, sent = request_body("seal", raw=True)
            doc = fx.problem(c.issue(city.card(r), body), 503, "SERVICE_SUSPENDED",
                             sent["request_id"])
            expect(doc["suspension"]["source"] == "ministry", "suspension %r" % doc)
            r = city.issuable("residence")
            body, sent = request_body("residence", raw=True)
            fx.own_201(keys_a if dd is a else keys_b, r, city.card(r), sent,
                       c.issue(city.card(r), body))
            c.close()
    tap.check("I8: one signed list pushed to both appliances suspends the vendor's seal on "
              "both, also on the one restarted since (persisted), and nothing else", same_list)
    shutil.rmtree(tmp, ignore_errors=True)
    harness.stop_point(tap, a, "I8: appliance A exits 0 on SIGTERM")


def scenario_i9(tap, city, sims):
    """I9: "the ministry had to stop the whole vendor service, twice; cities wanted to keep
    unaffected services: no finer switch."
    Promise: suspension per plugin (and per certificate type / version range), effective at
    once, persisted.

    A local suspension of one type of the vendor plugin, a ministry suspension of one type of
    the registry plugin: exactly those two types are refused, from the next request on, the
    other five are issued, and after a restart the same holds before the first request."""
    sim = harness.VendorSim(city.registry)
    sims.append(sim)
    certs = fx.routes("vendor", residence="registry", seal="registry", tax_income="registry")
    d = city.start_daemon(fx.config(city, sim, certificates=certs,
                                        ministry=fx.ministry_config(city)))
    tmp = tempfile.mkdtemp(prefix="mdg-incident-lists-")
    client = ic.Client.for_daemon(d)
    keys = client.keys()
    off = {"koseki-full": "local", "seal": "ministry"}

    def each_type():
        bad = []
        for t in fx.TYPES:
            r = city.issuable(t)
            body, sent = request_body(t, raw=True)
            resp = client.issue(city.card(r), body)
            try:
                if t in off:
                    doc = fx.problem(resp, 503, "SERVICE_SUSPENDED", sent["request_id"])
                    expect(doc["suspension"]["source"] == off[t], "source %r"
                           % doc["suspension"])
                else:
                    fx.own_201(keys, r, city.card(r), sent, resp)
            except AssertionError as e:
                bad.append("%s: %s" % (t, e))
        expect(not bad, "; ".join(bad))

    def finer_switch():
        r = fx.admin(d, "POST", "/v1/plugins/vendor/suspend",
                     {"reason": "I9 drill", "certificates": ["koseki-full"]})
        expect(r.status == 200, "suspend: %d %r" % (r.status, r.body[:200]))
        fx.push_list(d, fx.signed_list(city, 30, [
            {"id": "i9-seal", "plugin": "sqlite-registry", "certificates": ["seal"],
             "reason": "seal only"}], tmp))
        each_type()
    tap.check("I9: koseki-full suspended locally on the vendor plugin and seal by the "
              "ministry on the registry plugin: exactly these two are 503 SERVICE_SUSPENDED "
              "(their sources), the five other types are issued", finer_switch)

    def persisted():
        client.close()
        d.stop()
        d.start()
        each_type()
        r = fx.admin(d, "POST", "/v1/plugins/vendor/resume", {"certificates": ["koseki-full"]})
        expect(r.status == 200, "resume: %d %r" % (r.status, r.body[:200]))
        del off["koseki-full"]
        each_type()
    tap.check("I9: after a restart the same two types are refused from the first request; "
              "a local resume of koseki-full lifts only that one", persisted)
    client.close()
    shutil.rmtree(tmp, ignore_errors=True)
    harness.stop_point(tap, d, "I9: the daemon exits 0 on SIGTERM")


SCENARIOS = (("I1", scenario_i1), ("I2", scenario_i2), ("I3", scenario_i3),
             ("I4", scenario_i4), ("I5", scenario_i5), ("I6", scenario_i6),
             ("I7", scenario_i7), ("I8", scenario_i8), ("I9", scenario_i9))


def main(tap):
    only = set(filter(None, os.environ.get("MDG_INCIDENTS", "").upper().split(",")))
    city = fx.City()
    tap.diag("demo city of %d residents, %d cards in %.1f s" % (fx.RESIDENTS, fx.CARDS,
                                                               city.seconds))
    sims = []
    t0 = time.monotonic()
    try:
        for name, fn in SCENARIOS:
            if only and name not in only:
                continue
            t = time.monotonic()
            try:
                fn(tap, city, sims)
            except Exception as e:  # a broken fixture: fail the scenario, go on
                tap.ok(False, "%s: the scenario ran to its end" % name,
                       "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))
            finally:
                for s in sims:
                    s.cleanup()
                del sims[:]
                for dd in list(harness.Daemon._all):
                    if dd.running():
                        dd.stop()
            tap.diag("%s: %.1f s" % (name, time.monotonic() - t))
    finally:
        harness.sanitizer_point(tap, *list(harness.Daemon._all))
        city.cleanup()
        tap.diag("all scenarios: %.1f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    harness.run(main)
