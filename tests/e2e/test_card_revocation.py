#!/usr/bin/env python3
"""Revoked cards (issue 7): issuance.card_proof.crl names the card CAs' CRLs; a card listed
there is refused 401 CARD_PROOF_INVALID, also when it was seen (and cached) before; the file is
watched every card_proof.crl_interval; a CRL that is broken or signed by another CA is refused
with a log line and the CRLs in force stay; a start with a bad CRL file fails naming it.

Environment: MDG_SRCDIR, MDG_BUILDDIR, MDG_SANITIZERS.
"""

import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, expect  # noqa: E402
from issuance_client import Client, DemoCity, request_body  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

PLUGINS = os.environ.get("MDG_PLUGINS") or os.path.join(harness.BUILDDIR, "plugins", ".libs")
SLACK = 3 if harness.SANITIZERS else 1


def write_crl(path, ca_cert_path, ca_key_path, serials_hex, key=None):
    """A CRL by the card CA (or signed with another key) revoking the serials; written
    atomically (rename), as an operator's fetch job would."""
    with open(ca_cert_path, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    if key is None:
        with open(ca_key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
         .last_update(now - datetime.timedelta(hours=1))
         .next_update(now + datetime.timedelta(days=1)))
    for s in serials_hex:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(int(s, 16))
            .revocation_date(now - datetime.timedelta(minutes=5)).build())
    crl = b.sign(key, hashes.SHA256())
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(crl.public_bytes(serialization.Encoding.PEM))
    os.rename(tmp, path)


def config(city, crl):
    return {"plugin_dir": PLUGINS,
            "plugins": {"registry": {"file": "sqlite-registry.so",
                                     "config": {"database": city.registry}}},
            "issuance": {"municipalities": ["141003"], "municipality_name": "横浜市中区",
                         "document_key": "pki/document.key",
                         "card_proof": {"ca": "pki/card-ca.pem", "max_skew": "5m",
                                        "crl": crl, "crl_interval": "1s"},
                         "certificates": {"residence": {"plugin": "registry",
                                                        "always_open": True}}}}


def main(tap):
    city = DemoCity(residents=200, cards=12, prefix="mdg-crl-")
    ca_pem = os.path.join(city.pki, "card-ca.pem")
    ca_key = os.path.join(city.pki, "card-ca.key")
    crl = os.path.join(city.dir, "cards.crl")
    try:
        alice, bob = city.issuable("residence", 2)
        write_crl(crl, ca_pem, ca_key, ["77"])  # revokes nobody we hold
        d = city.start_daemon(config(city, crl))
        c = Client.for_daemon(d, timeout=15 * SLACK)

        def issue(who):
            return c.issue(city.card(who), request_body("residence"))

        def loaded(revoked):
            d.wait_event("card_crl_loaded", timeout=10 * SLACK,
                         pred=lambda e: e.get("revoked") == revoked)

        def before():
            loaded(1)
            for who in (alice, bob):
                r = issue(who)
                expect(r.status == 201, "before revocation: %d %r" % (r.status, r.body[:200]))
            expect(harness.metric_value(d.metrics_text(), "madoguchi_card_crl_revoked") == 1,
                   "madoguchi_card_crl_revoked")
        tap.check("with a CRL that lists neither card, both are issued (card_crl_loaded, "
                  "madoguchi_card_crl_revoked 1)", before)

        def revoke():
            write_crl(crl, ca_pem, ca_key, ["77", alice["card_serial"]])
            loaded(2)
            r = issue(alice)
            expect(r.status == 401 and r.json().get("code") == "CARD_PROOF_INVALID"
                   and "revoked" in r.json().get("detail", ""),
                   "revoked card: %d %r" % (r.status, r.body[:300]))
            r = issue(bob)
            expect(r.status == 201, "the other card: %d %r" % (r.status, r.body[:200]))
        tap.check("a new CRL listing one card is read within crl_interval: that card (seen and "
                  "cached before) is refused 401 CARD_PROOF_INVALID naming revocation; the "
                  "other card is still issued", revoke)

        def bad_files():
            rogue = ec.generate_private_key(ec.SECP256R1())
            write_crl(crl, ca_pem, ca_key, [], key=rogue)
            d.wait_event("card_crl_refused", count=1, timeout=10 * SLACK)
            with open(crl + ".new", "w") as f:
                f.write("not a CRL\n")
            os.rename(crl + ".new", crl)
            d.wait_event("card_crl_refused", count=2, timeout=10 * SLACK)
            r = issue(alice)
            expect(r.status == 401, "after bad CRL files: %d" % r.status)
            text = d.log_text()
            for who in (alice, bob):
                expect(who["card_serial"] not in text and
                       who["card_serial"].lower() not in text, "a card serial in the log")
        tap.check("a CRL signed by another key, then a file that is no CRL: each refused "
                  "(card_crl_refused), the revocation in force stays; no card serial in the "
                  "log", bad_files)
        c.close()
        harness.stop_point(tap, d)

        def bad_start():
            with open(crl, "w") as f:
                f.write("garbage\n")
            code, log = city.refused_start(config(city, crl), timeout=10 * SLACK)
            expect(code not in (0, None), "exit %r" % code)
            expect("issuance.card_proof.crl" in log and "no PEM X509 CRL" in log,
                   "log: %s" % log[-500:])
        tap.check("a start with a CRL file that holds no CRL fails, naming card_proof.crl",
                  bad_start)
    finally:
        harness.sanitizer_point(tap, *list(Daemon._all))
        city.cleanup()


if __name__ == "__main__":
    harness.run(main)
