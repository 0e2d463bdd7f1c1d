#!/usr/bin/env python3
"""test_key_rotation.py: rotating the document-signing key (docs/operations.md §4).

An appliance issues with key A, is stopped, and starts again with a new key B and A listed
under issuance.retired_document_keys, on the same data directory.  Then:
  - GET /v1/keys lists B first and A after it, so a document issued before the rotation still
    verifies from what the appliance publishes, and one issued after names B;
  - the audit database, whose checkpoints are signed by A and then by B, verifies whole: the
    daemon's own GET /v1/audit/verify, and `madoguchictl audit verify` given both public keys;
    given B alone it stops at A's first checkpoint and says to give that key too;
  - a retired key that repeats the key in use is refused at start, with the reason.

Environment: MDG_SRCDIR, MDG_BUILDDIR, MDG_PLUGINS, MDG_SANITIZERS (see harness.py).
"""

import base64
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, expect  # noqa: E402
from issuance_client import (Client, DemoCity, binding_text, request_body,  # noqa: E402
                             verify_201)

PLUGINS = os.environ.get("MDG_PLUGINS") or os.path.join(harness.BUILDDIR, "plugins", ".libs")


def config(city, document_key, retired=None):
    issuance = {"municipalities": ["141003"], "municipality_name": "横浜市中区",
                "document_key": document_key,
                "card_proof": {"ca": "pki/card-ca.pem", "max_skew": "5m"},
                "audit": {"checkpoint_rows": 1},
                "certificates": {"residence": {"plugin": "registry", "always_open": True}}}
    if retired is not None:
        issuance["retired_document_keys"] = retired
    return {"plugin_dir": PLUGINS,
            "plugins": {"registry": {"file": "sqlite-registry.so",
                                     "config": {"database": city.registry}}},
            "issuance": issuance,
            "log": {"level": "info", "access": False}}


def write_key(path, key, private):
    if private:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    else:
        data = key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def issue(d, city, resident):
    """One residence certificate for resident; returns (the 201's JSON, GET /v1/keys)."""
    with Client.for_daemon(d) as c:
        body, sent = request_body("residence", raw=True)
        card = city.card(resident)
        resp = c.post(body, card.headers(body))
        keys = c.keys()
    problems, answer, _ = verify_201(resp, sent, card, keys)
    expect(not problems, "the 201 does not verify: %s" % "; ".join(problems))
    return answer, keys


def main(tap):
    city = DemoCity(residents=60, cards=8, prefix="mdg-keyrot-")
    try:
        run_points(tap, city)
    finally:
        harness.sanitizer_point(tap, *list(Daemon._all))
        city.cleanup()


def run_points(tap, city):
    people = city.issuable("residence", 2)
    key_a = ed25519.Ed25519PrivateKey.generate()
    key_b = ed25519.Ed25519PrivateKey.generate()

    def path(name):
        return os.path.join(city.dir, name)

    write_key(path("key-a.pem"), key_a, True)
    write_key(path("key-a.pub"), key_a, False)
    write_key(path("key-b.pem"), key_b, True)
    write_key(path("key-b.pub"), key_b, False)
    d = city.start_daemon(config(city, path("key-a.pem")))
    state = {}

    def before():
        state["old"], keys = issue(d, city, people[0])
        expect(len(keys.by_id) == 1, "keys before the rotation: %d" % len(keys.by_id))
        state["id_a"] = state["old"]["binding"]["key_id"]
        expect(d.stop() == 0, "the daemon did not exit 0")
    tap.check("before the rotation: a 201 bound with key A, the only key listed", before)

    def after():
        d.config = harness.merge(d.config, config(city, path("key-b.pem"), [path("key-a.pub")]))
        d.write_config()
        d.exit_code = None
        d.start()
        new, keys = issue(d, city, people[1])
        ids = [k["key_id"] for k in keys.doc["keys"]]
        expect(new["binding"]["key_id"] != state["id_a"], "still bound with key A")
        expect(ids == [new["binding"]["key_id"], state["id_a"]],
               "GET /v1/keys lists %r, want the new key then the retired one" % ids)
        old = state["old"]  # the binding made before the rotation, checked with the listed A
        keys.by_id[state["id_a"]].verify(
            base64.b64decode(old["binding"]["signature"]),
            binding_text(old, old["subject"]["card_serial"]))
    tap.check("after the rotation: a 201 bound with key B; GET /v1/keys lists B, then the "
              "retired A (the earlier 201 still verifies from it)", after)

    def daemon_verify():
        r = d.admin_get("/v1/audit/verify")
        doc = r.json()
        expect(r.status == 200 and doc.get("intact") is True,
               "GET /v1/audit/verify: %d %r" % (r.status, doc))
        expect(doc.get("checkpoints_checked", 0) >= 2, "checkpoints: %r" % doc)
    tap.check("GET /v1/audit/verify: the chain with checkpoints of both keys is intact",
              daemon_verify)

    def ctl_verify():
        db = d.path("data/audit.sqlite")
        both = d.run_ctl("audit", "verify", "--db", db, "--public-key", path("key-b.pub"),
                         "--public-key", path("key-a.pub"))
        expect(both.returncode == 0, "with both keys: exit %d: %s" % (both.returncode,
                                                                        both.stderr))
        new_only = d.run_ctl("audit", "verify", "--db", db, "--public-key", path("key-b.pub"))
        expect(new_only.returncode != 0, "with key B alone: exit 0")
        expect(state["id_a"] in new_only.stderr and "give that key's public key too" in
               new_only.stderr, "with key B alone: %s" % new_only.stderr)
    tap.check("madoguchictl audit verify: passes given both public keys; given only the new "
              "one it names the old key's first checkpoint and says to give that key too",
              ctl_verify)
    harness.stop_point(tap, d)

    def repeated():
        code, log = city.refused_start(config(city, path("key-b.pem"), [path("key-b.pub")]))
        expect(code not in (0, None), "exit %r" % code)
        expect("retired_document_keys" in log and "listed already" in log,
               "no reason in the log: %s" % log[-600:])
    tap.check("a retired key that is the key in use is refused at start with the "
              "reason", repeated)


if __name__ == "__main__":
    harness.run(main)
