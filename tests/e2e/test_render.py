#!/usr/bin/env python3
"""test_render.py: certificate PDFs of real demo-city records, rendered by `madoguchictl render`
and checked with qpdf, pdftotext and `madoguchictl verify`.

What must hold, for each of the seven types: the PDF passes `qpdf --check`; both faces are
embedded as subsets with a ToUnicode map (pdffonts); pdftotext finds
every printed field value of the record (docs/documents.md says how values are printed: dates
in the Japanese era, amounts with separators and 円, codes as words) and none of another
resident's distinctive values; every page carries its verification code, which verifies
against the document key's public half and names page n/N of this issuance, and whose QR code
reads back (zbarimg at 150 dpi) as the same text; a tampered code
and a code checked against another key fail.  A six-member household and a large register
spill onto more pages with every page's header and code.

Records are read from the generated city's registry.sqlite by a small reader below that
follows docs/records.md (the same shape record_json() produces).  With MDG_WRITE_SAMPLES=1 it
also writes docs/samples/<type>.png (first page, pdftoppm -r 60).
Environment: MDG_SRCDIR, MDG_BUILDDIR.
"""

import datetime
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import SRCDIR, CTL, expect  # noqa: E402

DEMO_CITY = os.path.join(SRCDIR, "scripts", "demo-city")
TYPES = ("residence", "residence-record", "seal", "tax-income", "koseki-full",
         "koseki-individual", "koseki-attachment")
ISSUANCE = "141003-20261127-000123"
ISSUED_AT = "1795741200"  # 2026-11-27T00:00:00Z

# ------------------------------------------------------------------- records from the registry


def name(row, kana=False):
    if kana:
        return row["family_kana"] + " " + row["given_kana"]
    return row["family_name"] + " " + row["given_name"]


def base(cert, r):
    return {"certificate": cert, "resident_code": r["resident_code"], "version": r["version"],
            "status": r["status"], "as_of": 1795000000}


def residence(db, r, cert, household=False, my_number=False, domicile=False):
    h = db.execute("SELECT * FROM households WHERE household_id = ?",
                   (r["household_id"],)).fetchone()
    hh = db.execute("SELECT * FROM residents WHERE resident_code = ?",
                    (h["householder_code"],)).fetchone()
    rec = base(cert, r)
    rec["address"] = h["address"]
    rec["householder_name"] = name(hh)
    people = [r]
    if household:
        people += [m for m in db.execute(
            "SELECT * FROM residents WHERE household_id = ? AND status = 'active' "
            "ORDER BY rowid", (r["household_id"],)) if m["resident_code"] != r["resident_code"]]
    rec["members"] = []
    for m in people:
        item = {"subject": "true" if m is r else "false", "name": name(m),
                "kana": name(m, True), "birth_date": m["birth_date"], "sex": m["sex"],
                "relationship": m["relationship"],
                "became_resident_date": m["became_resident_date"],
                "address_since": m["address_since"]}
        if m["previous_address"]:
            item["previous_address"] = m["previous_address"]
        if my_number and cert == "residence":
            item["my_number"] = m["my_number"]
        if domicile:
            item["domicile"] = m["domicile"]
            item["domicile_head"] = m["domicile_head"]
        rec["members"].append(item)
    return rec


def seal(db, r):
    s = db.execute("SELECT * FROM seals WHERE resident_code = ?", (r["resident_code"],)).fetchone()
    if s is None:
        return None
    h = db.execute("SELECT address FROM households WHERE household_id = ?",
                   (r["household_id"],)).fetchone()
    rec = base("seal", r)
    rec.update({"registration_number": str(s["registration_number"]),
                "registered_name": s["registered_name"], "kana": name(r, True),
                "birth_date": r["birth_date"], "sex": r["sex"], "address": h["address"],
                "seal_image": s["seal_image"], "seal_text": s["seal_text"],
                "seal_status": s["status"], "registered_date": s["registered_date"]})
    if s["abolished_date"]:
        rec["abolished_date"] = s["abolished_date"]
    return rec


def tax(db, r):
    t = db.execute("SELECT * FROM tax_records WHERE resident_code = ?",
                   (r["resident_code"],)).fetchone()
    if t is None:
        return None
    h = db.execute("SELECT address FROM households WHERE household_id = ?",
                   (r["household_id"],)).fetchone()
    rec = base("tax-income", r)
    rec.update({"fiscal_year": str(t["fiscal_year"]), "income_year": str(t["income_year"]),
                "name": name(r), "kana": name(r, True), "birth_date": r["birth_date"],
                "address": h["address"]})
    for k in ("total_income_yen", "total_deductions_yen", "taxable_income_yen",
              "municipal_tax_yen", "prefectural_tax_yen"):
        rec[k] = str(t[k])
    key = (r["resident_code"], t["fiscal_year"])
    rec["incomes"] = [{"kind": i["kind"], "revenue_yen": str(i["revenue_yen"]),
                       "income_yen": str(i["income_yen"])} for i in db.execute(
        "SELECT * FROM tax_incomes WHERE resident_code = ? AND fiscal_year = ? ORDER BY seq", key)]
    rec["deductions"] = [{"kind": d["kind"], "amount_yen": str(d["amount_yen"])} for d in db.execute(
        "SELECT * FROM tax_deductions WHERE resident_code = ? AND fiscal_year = ? ORDER BY seq", key)]
    return rec


def koseki(db, r, cert, household=False):
    if r["register_id"] is None:
        return None
    g = db.execute("SELECT * FROM registers WHERE register_id = ?", (r["register_id"],)).fetchone()
    rec = base(cert, r)
    rec["domicile"] = g["domicile"]
    rec["head_name"] = g["head_name"]
    rec["subject_person_no"] = str(r["person_no"])
    persons = list(db.execute("SELECT * FROM register_persons WHERE register_id = ? "
                              "ORDER BY person_no", (r["register_id"],)))
    if cert == "koseki-attachment":
        persons = [p for p in persons if p["person_no"] == r["person_no"]
                   or (household and p["state"] == "present")]
        rec["persons"] = [{"person_no": str(p["person_no"]), "name": name(p),
                           "birth_date": p["birth_date"]} for p in persons]
        rec["addresses"] = [{"person_no": str(p["person_no"]), "address": a["address"],
                             "since": a["since_date"]} for p in persons for a in db.execute(
            "SELECT * FROM attachment_entries WHERE register_id = ? AND person_no = ? "
            "ORDER BY seq", (r["register_id"], p["person_no"]))]
        return rec
    rec["register_created_date"] = g["created_date"]
    rec["register_created_reason"] = g["created_reason"]
    if cert == "koseki-individual":
        persons = [p for p in persons if p["person_no"] == r["person_no"]]
    rec["persons"] = []
    rec["events"] = []
    for p in persons:
        item = {"person_no": str(p["person_no"]), "name": p["given_name"],
                "kana": p["given_kana"], "birth_date": p["birth_date"], "sex": p["sex"],
                "father": p["father"], "mother": p["mother"],
                "parental_relationship": p["parental_relationship"], "state": p["state"]}
        for k in ("spouse_role", "removed_reason", "removed_date"):
            if p[k]:
                item[k] = p[k]
        rec["persons"].append(item)
        rec["events"] += [{"person_no": str(p["person_no"]), "kind": e["kind"],
                           "date": e["date"], "detail": e["detail"]} for e in db.execute(
            "SELECT * FROM register_events WHERE register_id = ? AND person_no = ? "
            "ORDER BY seq", (r["register_id"], p["person_no"]))]
    return rec


def record_for(db, r, cert, household=False):
    if cert in ("residence", "residence-record"):
        return residence(db, r, cert, household, my_number=True, domicile=True)
    if cert == "seal":
        return seal(db, r)
    if cert == "tax-income":
        return tax(db, r)
    return koseki(db, r, cert, household)

# --------------------------------------------------------------------- how values are printed


ERAS = ((datetime.date(2019, 5, 1), "令和"), (datetime.date(1989, 1, 8), "平成"),
        (datetime.date(1926, 12, 25), "昭和"), (datetime.date(1912, 7, 30), "大正"),
        (datetime.date(1868, 1, 25), "明治"))
WORDS = {"male": "男", "female": "女", "salary": "給与", "pension": "公的年金等",
         "business": "営業等", "basic": "基礎控除", "social_insurance": "社会保険料控除",
         "spouse": "配偶者控除", "dependent": "扶養控除", "elderly_dependent": "扶養控除(老人)",
         "birth": "出生", "marriage": "婚姻", "divorce": "離婚", "death": "死亡", "entry": "入籍",
         "partition": "分籍", "registered": "登録", "abolished": "廃止", "present": "在籍",
         "removed": "除籍"}
NOT_PRINTED = {"certificate", "resident_code", "version", "status", "as_of", "subject",
               "person_no"}


def era(iso):
    d = datetime.date.fromisoformat(iso)
    for start, nm in ERAS:
        if d >= start:
            n = d.year - start.year + 1
            return "%s%s年%d月%d日" % (nm, "元" if n == 1 else n, d.month, d.day)
    return iso


def printed(field, value):
    if field.endswith("_yen"):
        return "{:,}円".format(int(value))
    if re.match(r"^\d{4}-\d{2}-\d{2}$", value):
        return era(value)
    if field == "fiscal_year":
        return value + "年度"
    if field == "income_year":
        return value + "年分"
    if field == "subject_person_no":
        return value + "番目に記録されている者"
    return WORDS.get(value, value)


def printed_values(rec):
    out = []
    for k, v in rec.items():
        if k in NOT_PRINTED:
            continue
        if isinstance(v, list):
            for item in v:
                out += [(k + "." + f, printed(f, x)) for f, x in item.items()
                        if f not in NOT_PRINTED]
        else:
            out.append((k, printed(k, v)))
    return out


def squash(text):
    return re.sub(r"\s+", "", text)

# ------------------------------------------------------------------------------------ tests


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


def render(tmp, rec, key, tag):
    path = os.path.join(tmp, tag + ".json")
    with open(path, "w") as f:
        json.dump(rec, f, ensure_ascii=False)
    pdf = os.path.join(tmp, tag + ".pdf")
    p = run([CTL, "render", "--record", path, "--certificate", rec["certificate"], "-o", pdf,
             "--key", key, "--municipality-name", "横浜市中区", "--issuance-id", ISSUANCE,
             "--issued-at", ISSUED_AT])
    expect(p.returncode == 0, "render %s: exit %d: %s" % (tag, p.returncode, p.stderr))
    return pdf


def pages_of(pdf):
    p = run(["pdfinfo", pdf])
    m = re.search(r"^Pages:\s+(\d+)", p.stdout, re.M)
    return int(m.group(1)) if m else -1


def page_text(pdf, page):
    return run(["pdftotext", "-f", str(page), "-l", str(page), pdf, "-"]).stdout


def qr_of(pdf, page):
    """The QR code of one page as a scanner reads it (150 dpi, zbarimg), or None."""
    with tempfile.TemporaryDirectory() as d:
        png = os.path.join(d, "page")
        run(["pdftoppm", "-r", "150", "-png", "-singlefile", "-f", str(page), "-l", str(page),
             pdf, png])
        p = run(["zbarimg", "-q", "--raw", "-Sdisable", "-Sqrcode.enable", png + ".png"])
        return p.stdout.strip() if p.returncode == 0 else None


def codes_of(pdf):
    return [re.findall(r"MDG1:\S+", page_text(pdf, i + 1)) for i in range(pages_of(pdf))]


def check_document(tap, tmp, pdf, rec, other, pub, pub_other, tag):
    cert = rec["certificate"]
    q = run(["qpdf", "--check", pdf])
    tap.ok(q.returncode == 0, "%s: qpdf --check passes" % tag, q.stdout[-400:] + q.stderr)
    fonts = run(["pdffonts", pdf]).stdout.splitlines()[2:]
    tap.ok(len(fonts) == 2 and all(f.split()[-5:-2] == ["yes", "yes", "yes"] for f in fonts),
           "%s: both IPAex faces are embedded as subsets with a Unicode map" % tag,
           "\n".join(fonts))
    text = squash(run(["pdftotext", pdf, "-"]).stdout)
    missing = [(f, v) for f, v in printed_values(rec) if squash(v) not in text]
    tap.ok(not missing, "%s: every field value of the record is printed" % tag,
           "missing: %r" % missing[:8])
    leaked = [(f, v) for f, v in printed_values(other) if f in LEAK_FIELDS and len(squash(v)) >= 4 and squash(v) in text
              and squash(v) not in [squash(x) for _, x in printed_values(rec)]]
    tap.ok(not leaked, "%s: no value of another resident's record is printed" % tag,
           "leaked: %r" % leaked[:8])
    n = pages_of(pdf)
    codes = codes_of(pdf)
    ok = n >= 1 and all(len(c) == 1 for c in codes)
    verified = []
    for i, c in enumerate(codes):
        if len(c) != 1:
            continue
        p = run([CTL, "verify", "--public-key", pub, c[0]])
        verified.append(p.returncode == 0 and ("page %d/%d" % (i + 1, n)) in p.stdout
                        and ISSUANCE in p.stdout)
    tap.ok(ok and all(verified) and len(verified) == n,
           "%s: each of the %d page(s) carries one code that verifies as page n/%d" % (tag, n, n),
           "codes %r verified %r" % (codes, verified))
    scanned = [qr_of(pdf, i + 1) for i in range(n)]
    tap.ok(len(scanned) == n and all(len(c) == 1 and s == c[0] for s, c in zip(scanned, codes)),
           "%s: each page's QR code reads back as the code printed beside it" % tag,
           "scanned %r" % scanned)
    titles = [page_text(pdf, i + 1) for i in range(n)]
    tap.ok(all(TITLES[cert] in t and ("%d / %d" % (i + 1, n)) in t for i, t in enumerate(titles)),
           "%s: every page has the title and page n / N" % tag)
    if codes and codes[0]:
        c = codes[0][0]
        i = len(c) - 10
        tampered = c[:i] + ("A" if c[i] != "A" else "B") + c[i + 1:]
        p1 = run([CTL, "verify", "--public-key", pub, tampered])
        p2 = run([CTL, "verify", "--public-key", pub_other, c])
        tap.ok(p1.returncode == 1 and "NOT verify" in p1.stderr and p2.returncode == 1,
               "%s: a tampered code and another key fail" % tag, p1.stderr + p2.stderr)
    return n


TITLES = {"residence": "住民票の写し", "residence-record": "住民票記載事項証明書",
          "seal": "印鑑登録証明書", "tax-income": "所得・課税証明書",
          "koseki-full": "戸籍全部事項証明書", "koseki-individual": "戸籍個人事項証明書",
          "koseki-attachment": "戸籍の附票の写し"}
# Values that identify a person (a shared town name or date proves nothing).
LEAK_FIELDS = {"members.name", "members.kana", "members.my_number", "registered_name",
               "registration_number", "name", "kana", "persons.name", "address", "domicile",
               "head_name", "householder_name"}


def main(tap):
    tmp = tempfile.mkdtemp(prefix="mdg-render-")
    try:
        p = run([sys.executable, DEMO_CITY, "--out", tmp, "--residents", "2000"])
        expect(p.returncode == 0, "demo-city: %s" % p.stderr)
        key = os.path.join(tmp, "document.key")
        other_key = os.path.join(tmp, "other.key")
        pub = os.path.join(tmp, "document.pub")
        pub_other = os.path.join(tmp, "other.pub")
        for k, pb in ((key, pub), (other_key, pub_other)):
            expect(run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", k]).returncode
                   == 0, "openssl genpkey")
            expect(run(["openssl", "pkey", "-in", k, "-pubout", "-out", pb]).returncode == 0,
                   "openssl pkey -pubout")
        db = sqlite3.connect(os.path.join(tmp, "registry.sqlite"))
        db.row_factory = sqlite3.Row
        active = list(db.execute("SELECT * FROM residents WHERE status = 'active' "
                                 "ORDER BY rowid"))

        def pick(cert, exclude=None, pred=None):
            for r in active:
                if exclude is not None and (r["household_id"] == exclude["household_id"] or
                                            r["register_id"] == exclude["register_id"] and
                                            r["register_id"] is not None):
                    continue
                rec = record_for(db, r, cert)
                if rec is not None and (pred is None or pred(rec)):
                    return r, rec
            expect(False, "no resident with a %s record" % cert)

        samples = os.environ.get("MDG_WRITE_SAMPLES") == "1"
        for cert in TYPES:
            r, rec = pick(cert, pred=lambda x: x.get("seal_status", "registered") == "registered")
            _, other = pick(cert, exclude=r)
            pdf = render(tmp, rec, key, cert)
            n = check_document(tap, tmp, pdf, rec, other, pub, pub_other, cert)
            tap.ok(n == 1, "%s: one resident's record fits on one page" % cert, "pages %d" % n)
            if samples:
                out = os.path.join(SRCDIR, "docs", "samples", cert)
                run(["pdftoppm", "-r", "60", "-png", "-singlefile", pdf, out])

        # A household of six or more: the members spill onto a second page.
        big = db.execute("SELECT household_id, COUNT(*) AS n FROM residents WHERE status = "
                         "'active' GROUP BY household_id HAVING n >= 6 ORDER BY n, household_id "
                         "LIMIT 1").fetchone()
        expect(big is not None, "the demo city has a household of six")
        r = db.execute("SELECT * FROM residents WHERE household_id = ? AND status = 'active' "
                       "ORDER BY rowid LIMIT 1", (big["household_id"],)).fetchone()
        rec = residence(db, r, "residence", household=True, my_number=True, domicile=True)
        _, other = pick("residence", exclude=r)
        pdf = render(tmp, rec, key, "household")
        n = check_document(tap, tmp, pdf, rec, other, pub, pub_other,
                           "residence, household of %d" % len(rec["members"]))
        want = 2 if len(rec["members"]) <= 6 else None
        tap.ok(n >= 2 and (want is None or n == want),
               "a household of %d members takes %s pages" % (len(rec["members"]), want or ">= 2"),
               "pages %d" % n)

        # The largest register: koseki-full over several pages, no person cut across pages.
        reg = db.execute("SELECT register_id, COUNT(*) AS n FROM register_persons GROUP BY "
                         "register_id ORDER BY n DESC, register_id LIMIT 1").fetchone()
        r = db.execute("SELECT * FROM residents WHERE register_id = ? AND status = 'active' "
                       "ORDER BY person_no LIMIT 1", (reg["register_id"],)).fetchone()
        expect(r is not None, "a living resident in the largest register")
        rec = koseki(db, r, "koseki-full")
        _, other = pick("koseki-full", exclude=r)
        pdf = render(tmp, rec, key, "register")
        n = check_document(tap, tmp, pdf, rec, other, pub, pub_other,
                           "koseki-full, register of %d persons" % len(rec["persons"]))
        heads = [len(re.findall("戸籍に記録されている者", page_text(pdf, i + 1)))
                 for i in range(n)]
        tap.ok(n >= 2 and sum(heads) == len(rec["persons"]),
               "a register of %d persons with %d events takes %d pages, each person once"
               % (len(rec["persons"]), len(rec["events"]), n), "per page %r" % heads)

        # verify: a usage mistake is exit 2, an unreadable key exit 1.
        p = run([CTL, "verify", "MDG1:x"])
        tap.ok(p.returncode == 2, "verify without --public-key is a usage error (exit 2)")
        p = run([CTL, "verify", "--public-key", key, "MDG1:x"])
        tap.ok(p.returncode == 1 and "public key" in p.stderr,
               "verify with a private key file says it needs the public key", p.stderr)
        db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    harness.run(main)
