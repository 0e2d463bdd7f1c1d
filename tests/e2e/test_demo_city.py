#!/usr/bin/env python3
"""test_demo_city.py: the demo municipality (scripts/demo-city) and the dev card PKI
(scripts/dev-pki --cards).  What must hold: the same seed gives byte-identical output; the city
has the size, statuses, My Numbers, households, seals, registers, taxes and previous versions
that docs/records.md and plugins/sqlite-registry/README.md promise; the demo truth's issuable
flags follow the rules of docs/records.md, recomputed here from the registry with SQL; linkage
holds only residents 15 and over with unique card serials; card certificates carry their serial,
chain to card-ca.pem, mix RSA and ECDSA, and carry no personal data."""

import csv
import datetime
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import SRCDIR, expect  # noqa: E402

DEMO_CITY = os.path.join(SRCDIR, "scripts", "demo-city")
DEV_PKI = os.path.join(SRCDIR, "scripts", "dev-pki")
TYPES = ("residence", "residence-record", "seal", "tax-income", "koseki-full",
         "koseki-individual", "koseki-attachment")
SERIAL_RE = re.compile(r"^[1-9A-F][0-9A-F]*$")


def generate(out, *args):
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, DEMO_CITY, "--out", out] + list(args),
                       capture_output=True, text=True, timeout=120)
    expect(p.returncode == 0, "demo-city exit %d: %s" % (p.returncode, p.stderr))
    return time.monotonic() - t0


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


def dump(path):
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def my_number_ok(num):
    """Independent check of the My Number check digit (個人番号の検査用数字)."""
    if not re.match(r"^\d{12}$", num):
        return False
    digits = [int(c) for c in num[:11]][::-1]  # P1 is the rightmost of the first 11
    s = sum(p * (n + 1 if n <= 6 else n - 5) for n, p in enumerate(digits, 1))
    r = s % 11
    return int(num[11]) == (0 if r <= 1 else 11 - r)


def age(birth, day):
    b = datetime.date.fromisoformat(birth)
    return day.year - b.year - ((day.month, day.day) < (b.month, b.day))


def expected_refusals(db):
    """{resident_code: {type: None | code}} from the registry alone, by the rules of
    docs/records.md ("Issuable")."""
    fy = int(db.execute("SELECT value FROM meta WHERE key = 'fiscal_year'").fetchone()[0])
    out = {}
    rows = db.execute("""
        SELECT r.resident_code, r.status, s.status,
               EXISTS (SELECT 1 FROM tax_records t
                       WHERE t.resident_code = r.resident_code AND t.fiscal_year = ?),
               r.register_id IS NOT NULL AND EXISTS (
                   SELECT 1 FROM register_persons k
                   WHERE k.register_id = r.register_id AND k.person_no = r.person_no
                     AND k.resident_code = r.resident_code)
        FROM residents r LEFT JOIN seals s ON s.resident_code = r.resident_code""", (fy,))
    for code, status, seal, tax, koseki in rows:
        active = status == "active"
        ni, nr = "RECORD_NOT_ISSUABLE", "NO_RECORD"
        e = {"residence": None if active else ni, "residence-record": None if active else ni,
             "seal": nr if seal is None else None if active and seal == "registered" else ni,
             "tax-income": nr if not tax else None if active else ni}
        for t in ("koseki-full", "koseki-individual", "koseki-attachment"):
            e[t] = nr if not koseki else None if active else ni
        out[code] = e
    return out


def main(tap):
    work = tempfile.mkdtemp(prefix="mdg-demo-city-")
    try:
        run_checks(tap, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_checks(tap, work):
    a, b, c = (os.path.join(work, x) for x in ("a", "b", "c"))
    secs = generate(a)
    tap.ok(secs < 15, "12,000 residents are generated in under 15 s (%.1f s)" % secs)
    generate(b)
    generate(c, "--seed", "2", "--residents", "300")

    tap.ok(read(os.path.join(a, "demo/residents.jsonl")) ==
           read(os.path.join(b, "demo/residents.jsonl")),
           "the same seed gives a byte-identical residents.jsonl")
    tap.ok(read(os.path.join(a, "demo/linkage.csv")) == read(os.path.join(b, "demo/linkage.csv")),
           "the same seed gives a byte-identical linkage.csv")
    tap.ok(dump(os.path.join(a, "registry.sqlite")) == dump(os.path.join(b, "registry.sqlite")),
           "the same seed gives an identical registry (iterdump)")
    tap.ok(read(os.path.join(c, "demo/residents.jsonl")) !=
           read(os.path.join(a, "demo/residents.jsonl")),
           "another seed and size give another city")

    db = sqlite3.connect(os.path.join(a, "registry.sqlite"))
    meta = dict(db.execute("SELECT key, value FROM meta"))
    as_of = datetime.datetime.strptime(meta["as_of"], "%Y-%m-%dT%H:%M:%SZ")
    today = as_of.date()
    truth = [json.loads(line) for line in read(os.path.join(a, "demo/residents.jsonl"),
                                               "r").splitlines()]
    by_code = {t["resident_code"]: t for t in truth}
    residents = {r[0]: r for r in db.execute(
        "SELECT resident_code, status, birth_date, my_number, household_id, relationship, "
        "family_name, given_name, version FROM residents")}
    n = len(residents)

    tap.ok(meta.get("as_of") == "2026-11-27T00:00:00Z" and meta.get("municipality") == "141003",
           "meta records the fixed as_of and the municipality", meta)
    tap.ok(n >= 10000 and n == 12000, "the city has 12,000 residents (%d)" % n)
    tap.ok(len(truth) == n and set(by_code) == set(residents),
           "the truth has one line per resident of the registry")

    def check_truth_shape():
        for t in truth:
            for k in ("resident_code", "municipality", "card_serial", "name", "status",
                      "issuable", "kana", "birth_date", "age", "household_id", "version"):
                expect(k in t, "truth line lacks %s" % k)
            expect(t["municipality"] == "141003", "municipality %r" % t["municipality"])
            expect(list(t["issuable"]) == list(TYPES), "issuable keys %r" % list(t["issuable"]))
            expect(re.match(r"^[1-9]\d{10}$", t["resident_code"]), "resident code shape")
            r = residents[t["resident_code"]]
            expect(t["name"] == "%s %s" % (r[6], r[7]) and t["status"] == r[1] and
                   t["version"] == r[8] and t["birth_date"] == r[2], "truth disagrees with registry")
    tap.check("every truth line has the DESIGN §11 members and agrees with the registry",
              check_truth_shape)

    counts = {}
    for r in residents.values():
        counts[r[1]] = counts.get(r[1], 0) + 1
    share = {s: counts.get(s, 0) / n for s in ("active", "moved-out", "deceased", "deleted")}
    tap.ok(0.90 <= share["active"] <= 0.94 and 0.03 <= share["moved-out"] <= 0.05 and
           0.02 <= share["deceased"] <= 0.04 and 0.005 <= share["deleted"] <= 0.015,
           "statuses are about 92 % active, 4 % moved out, 3 % deceased, 1 % deleted",
           share)

    numbers = [r[3] for r in residents.values()]
    bad = [x for x in numbers if not my_number_ok(x)]
    tap.ok(not bad and len(set(numbers)) == n, "every My Number is unique with a valid check digit",
           "%d invalid" % len(bad))

    def check_households():
        sizes = {}
        for r in residents.values():
            sizes.setdefault(r[4], []).append(r[5])
        for hid, rels in sizes.items():
            expect(1 <= len(rels) <= 6, "household %s has %d members" % (hid, len(rels)))
            expect(rels.count("世帯主") == 1, "household %s: %r" % (hid, rels))
        expect(any(len(v) >= 5 for v in sizes.values()), "no household of 5 or more")
        for hid, code in db.execute("SELECT household_id, householder_code FROM households"):
            expect(residents[code][4] == hid and residents[code][5] == "世帯主",
                   "householder of %s" % hid)
        # A household with an active member has an active householder.
        for hid, active_members, hh_status in db.execute("""
                SELECT h.household_id, SUM(r.status = 'active'), hr.status
                FROM households h JOIN residents r USING (household_id)
                JOIN residents hr ON hr.resident_code = h.householder_code
                GROUP BY h.household_id"""):
            expect(not active_members or hh_status == "active", "householder of %s" % hid)
    tap.check("households have 1 to 6 members and exactly one active householder",
              check_households)

    surnames = {r[6] for r in residents.values()}
    given = {}
    for code, sex, gname in db.execute("SELECT resident_code, sex, given_name FROM residents"):
        given.setdefault(sex, set()).add(gname)
    tap.ok(len(surnames) >= 100 and len(given.get("male", ())) >= 100 and
           len(given.get("female", ())) >= 100,
           "names come from at least 100 surnames and 100 given names per sex",
           "%d / %d / %d" % (len(surnames), len(given.get("male", ())),
                            len(given.get("female", ()))))
    kana_ok = all(re.match(r"^[ァ-ヶー]+ [ァ-ヶー]+$", t["kana"]) for t in truth)
    tap.ok(kana_ok, "every resident has a katakana reading")
    ages = [age(r[2], today) for r in residents.values()]
    tap.ok(min(ages) == 0 and 95 <= max(ages) <= 100, "ages run from 0 to about 100",
           (min(ages), max(ages)))

    # Linkage.
    rows = list(csv.reader(read(os.path.join(a, "demo/linkage.csv"), "r").splitlines()))
    tap.ok(rows[0] == ["card_serial", "resident_code"], "linkage.csv starts with its header")
    link = rows[1:]
    serials = [s for s, _c in link]
    tap.ok(len(set(serials)) == len(serials) and all(SERIAL_RE.match(s) and len(s) == 16
                                                     for s in serials),
           "card serials are unique, 16 upper-case hex digits without leading zeros")
    linked = {c: s for s, c in link}
    tap.ok(len(linked) == len(link) and all(c in residents for c in linked),
           "each linked resident code is in the registry, once")
    tap.ok(all(age(residents[c][2], today) >= 15 for c in linked),
           "only residents 15 or older are linked")
    adults_active = [c for c, r in residents.items() if r[1] == "active" and age(r[2], today) >= 15]
    tap.ok(all(c in linked for c in adults_active),
           "every active resident 15 or older holds a card")
    inactive_linked = {residents[c][1] for c in linked if residents[c][1] != "active"}
    tap.ok(inactive_linked == {"moved-out", "deceased", "deleted"},
           "some moved-out, deceased and deleted residents hold cards", inactive_linked)
    first500 = [residents[c][1] for c in list(linked)[:500]]
    tap.ok({"moved-out", "deceased", "deleted", "active"} <= set(first500),
           "the first 500 rows (the default cards) include every status")
    tap.ok(all(t["card_serial"] == linked.get(t["resident_code"]) for t in truth),
           "the truth's card_serial matches linkage.csv (null without a card)")

    # Issuable flags against the rules of docs/records.md, recomputed from SQL.
    want = expected_refusals(db)

    def check_issuable():
        wrong = []
        for t in truth:
            e = want[t["resident_code"]]
            for ty in TYPES:
                if t["issuable"][ty] != (e[ty] is None) or t.get("refusal", {}).get(ty) != e[ty]:
                    wrong.append((t["resident_code"], ty, t["issuable"][ty], e[ty]))
        expect(not wrong, "%d disagreements, e.g. %r" % (len(wrong), wrong[:3]))
    tap.check("the truth's issuable flags and refusals follow docs/records.md (recomputed in SQL)",
              check_issuable)
    for ty in TYPES:
        yes = sum(1 for t in truth if t["issuable"][ty])
        tap.ok(0 < yes < n, "%s is issuable for some residents and not for others (%d)" % (ty, yes))

    # Seals.
    old_enough = sum(1 for r in residents.values() if age(r[2], today) >= 15)
    seals = db.execute("SELECT COUNT(*), SUM(status = 'abolished'), "
                       "SUM((status = 'abolished') != (abolished_date IS NOT NULL)) "
                       "FROM seals").fetchone()
    tap.ok(0.35 <= seals[0] / old_enough <= 0.45 and 0.07 <= seals[1] / seals[0] <= 0.13 and
           seals[2] == 0,
           "about 40 % of residents 15+ have a seal, about 10 % of those abolished with a date",
           seals)
    tap.ok(db.execute("SELECT COUNT(*) FROM seals s JOIN residents r USING (resident_code) "
                      "WHERE date(r.birth_date, '+15 years') > s.registered_date").fetchone()[0]
           == 0, "no seal was registered before its owner turned 15")

    # Family registers.
    held = db.execute("SELECT COUNT(DISTINCT household_id) FROM residents "
                      "WHERE register_id IS NOT NULL").fetchone()[0]
    households = db.execute("SELECT COUNT(*) FROM households").fetchone()[0]
    tap.ok(0.62 <= held / households <= 0.78, "about 70 % of households have their register here",
           held / households)
    tap.ok(db.execute("""SELECT COUNT(*) FROM residents r JOIN register_persons k
                         ON k.register_id = r.register_id AND k.person_no = r.person_no
                         WHERE r.status = 'active' AND k.state != 'present'""").fetchone()[0] == 0,
           "an active resident is present in their register")
    removed = dict(db.execute("SELECT removed_reason, COUNT(*) FROM register_persons "
                              "WHERE state = 'removed' GROUP BY 1"))
    tap.ok(removed.get("婚姻", 0) > 0 and removed.get("死亡", 0) > 0,
           "registers include persons who left by marriage and who died", removed)
    tap.ok(db.execute("""SELECT COUNT(*) FROM register_persons k WHERE NOT EXISTS (
                         SELECT 1 FROM register_events e WHERE e.register_id = k.register_id
                         AND e.person_no = k.person_no AND e.kind = 'birth')""").fetchone()[0] == 0,
           "every person of a register has a birth event")
    tap.ok(db.execute("""SELECT COUNT(*) FROM register_persons k WHERE k.state = 'present'
                         AND NOT EXISTS (SELECT 1 FROM attachment_entries a
                         WHERE a.register_id = k.register_id AND a.person_no = k.person_no)""")
           .fetchone()[0] == 0, "every present person of a register has an attachment history")

    # Tax records: the documented arithmetic.
    def check_tax():
        fy = int(meta["fiscal_year"])
        expect(fy == 2026, "fiscal year %d" % fy)
        inc = dict(db.execute("SELECT resident_code, SUM(income_yen) FROM tax_incomes "
                              "GROUP BY resident_code"))
        ded = dict(db.execute("SELECT resident_code, SUM(amount_yen) FROM tax_deductions "
                              "GROUP BY resident_code"))
        rows = db.execute("SELECT resident_code, total_income_yen, total_deductions_yen, "
                          "taxable_income_yen, municipal_tax_yen, prefectural_tax_yen "
                          "FROM tax_records").fetchall()
        expect(len(rows) > n // 3, "only %d tax records" % len(rows))
        for code, ti, td, taxable, mun, pref in rows:
            expect(inc.get(code) == ti and ded.get(code) == td, "sums of %s" % code)
            expect(taxable == max(0, ti - td) // 1000 * 1000, "taxable of %s" % code)
            expect(mun == taxable * 6 // 10000 * 100 and pref == taxable * 4 // 10000 * 100,
                   "tax of %s" % code)
        kinds = {k for (k,) in db.execute("SELECT DISTINCT kind FROM tax_incomes")}
        expect(kinds == {"salary", "pension", "business"}, "income kinds %r" % kinds)
    tap.check("tax records add up: 6 % municipal and 4 % prefectural of the taxable income",
              check_tax)

    # Previous versions (incidents I3-I5).
    def check_history():
        rows = db.execute("""SELECT h.resident_code, h.version, h.as_of, h.changed_at,
                             h.change_kind, r.version, r.updated_at, h.address, h.status,
                             h.seal_status FROM resident_history h
                             JOIN residents r USING (resident_code)""").fetchall()
        expect(len(rows) >= 0.04 * n, "only %d previous versions" % len(rows))
        kinds = {r[4] for r in rows}
        expect(kinds == {"address", "status", "seal"}, "kinds %r" % kinds)
        for code, v, h_as_of, changed, kind, cur_v, updated, addr, status, seal in rows:
            expect(v < cur_v, "%s: old version %d, current %d" % (code, v, cur_v))
            expect(h_as_of < changed <= meta["as_of"] and changed == updated,
                   "%s: times %s %s %s" % (code, h_as_of, changed, updated))
            expect((kind == "address") == (addr is not None) and
                   (kind == "status") == (status == "active") and
                   (kind == "seal") == (seal == "registered"), "%s: %s row" % (code, kind))
            t = by_code[code]
            expect(t["stale"] and t["stale"]["version"] == v, "truth of %s lacks stale" % code)
    tap.check("about 5 % of residents keep a previous version, older in version and as_of",
              check_history)
    db.close()

    # dev-pki --cards: 20 cards, serial = file name, chain to card-ca, 2 RSA, no personal data.
    pki = os.path.join(work, "pki")
    t0 = time.monotonic()
    p = subprocess.run([DEV_PKI, "--cards", os.path.join(a, "demo/linkage.csv"),
                        "--card-count", "20", "--ministry", "dev", pki],
                       capture_output=True, text=True, timeout=120)
    secs = time.monotonic() - t0
    tap.ok(p.returncode == 0, "dev-pki --cards --card-count 20 succeeds (%.1f s)" % secs,
           p.stderr)
    cards = sorted(f[:-4] for f in os.listdir(os.path.join(pki, "cards")) if f.endswith(".pem"))
    tap.ok(cards == sorted(serials[:20]) and all(
        os.path.exists(os.path.join(pki, "cards", s + ".key")) for s in cards),
        "it makes a certificate and a key for each of the first 20 linkage rows")
    texts = {}
    for s in cards:
        pem = os.path.join(pki, "cards", s + ".pem")
        out = subprocess.run(["openssl", "x509", "-in", pem, "-noout", "-serial", "-subject",
                              "-text", "-nameopt", "utf8"],
                             capture_output=True, text=True, timeout=10).stdout
        texts[s] = (out, read(pem))

    def serial_of(text):
        m = re.search(r"^serial=([0-9A-F]+)$", text, re.M)
        return m.group(1).lstrip("0") if m else None
    tap.ok(all(serial_of(t) == s for s, (t, _p) in texts.items()),
           "each certificate's serial number is its file name")
    v = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(pki, "card-ca.pem")] +
                       [os.path.join(pki, "cards", s + ".pem") for s in cards],
                       capture_output=True, text=True, timeout=30)
    tap.ok(v.returncode == 0 and v.stdout.count(": OK") == 20,
           "every card certificate verifies against card-ca.pem", v.stdout + v.stderr)
    rsa = sum(1 for t, _p in texts.values() if "rsaEncryption" in t)
    ec = sum(1 for t, _p in texts.values() if "id-ecPublicKey" in t and "prime256v1" in t)
    tap.ok(rsa == 2 and ec == 18, "two cards are RSA-2048, the others ECDSA P-256",
           (rsa, ec))
    tap.ok(all(re.search(r"^subject=CN ?= ?madoguchi dev card$", t, re.M) and
               "Digital Signature" in t and "TLS Web Client Authentication" in t
               for t, _p in texts.values()),
           "cards have subject CN=madoguchi dev card, digitalSignature and clientAuth")

    def check_no_names():
        names = set()
        for _code, r in residents.items():
            names.update((r[6] + " " + r[7], r[6] + r[7]))
        for s, (t, pem) in texts.items():
            der = subprocess.run(["openssl", "x509", "-in", os.path.join(pki, "cards", s + ".pem"),
                                  "-outform", "DER"], capture_output=True, timeout=10).stdout
            expect(all(ord(ch) < 128 for ch in t), "non-ASCII text in card %s" % s)
            for name in names:
                expect(name not in t and name.encode() not in der, "a name in card %s" % s)
            for code in linked:
                expect(code not in t, "a resident code in card %s" % s)
    tap.check("no name or resident code from the registry appears in any card certificate",
              check_no_names)

    def check_keys():
        for s in cards:
            st = os.stat(os.path.join(pki, "cards", s + ".key"))
            expect(st.st_mode & 0o077 == 0, "card key %s mode %o" % (s, st.st_mode & 0o777))
        for f, kind in (("document.key", "PRIVATE KEY"), ("ministry/dev.key", "PRIVATE KEY"),
                        ("ministry/dev.pub", "PUBLIC KEY")):
            text = read(os.path.join(pki, f), "r")
            expect(text.startswith("-----BEGIN %s-----" % kind), "%s is not PEM %s" % (f, kind))
            out = subprocess.run(["openssl", "pkey", "-in", os.path.join(pki, f), "-noout",
                                  "-text"] + (["-pubin"] if kind == "PUBLIC KEY" else []),
                                 capture_output=True, text=True, timeout=10).stdout
            expect("ED25519" in out, "%s is not Ed25519: %s" % (f, out[:60]))
    tap.check("card keys are private; document.key and ministry/dev.key/.pub are Ed25519 PEM",
              check_keys)

    p = subprocess.run([DEV_PKI, "--cards", os.path.join(a, "demo/linkage.csv"),
                        "--card-count", "20", pki], capture_output=True, text=True, timeout=60)
    tap.ok(p.returncode == 0 and "created 0, kept 20" in p.stdout,
           "a second run keeps the existing cards", p.stdout + p.stderr)


if __name__ == "__main__":
    harness.run(main)
