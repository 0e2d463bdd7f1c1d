#!/usr/bin/env python3
"""test_tls.py: the store listener requires mutual TLS 1.2+ with a store-network client
certificate (DESIGN §2), counts refused handshakes, and answers errors as problem+json (§4)."""

import os
import re
import ssl
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, expect, problem_ok  # noqa: E402


def curl(d, path, cert=True, cert_pem=None, key_pem=None):
    args = ["curl", "-sS", "--max-time", "5", "--cacert", d.store_ca, "-o", "/dev/null",
            "-w", "%{http_code}"]
    if cert:
        args += ["--cert", cert_pem or d.center_cert, "--key", key_pem or d.center_key]
    args.append("https://localhost:%d%s" % (d.store_port, path))
    return subprocess.run(args, capture_output=True, text=True, timeout=15)


def main(tap):
    d = Daemon().start()
    other_pki = tempfile.mkdtemp(prefix="mdg-e2e-otherpki-")
    try:
        harness.make_pki(other_pki)
        failures0 = d.metric("madoguchi_tls_handshake_failures_total", {"listener": "store"})

        p = curl(d, "/healthz")
        tap.ok(p.returncode == 0 and p.stdout == "200",
               "curl with the centre client certificate gets 200 on GET /healthz",
               "rc=%d http_code=%r stderr=%r" % (p.returncode, p.stdout, p.stderr))

        p = curl(d, "/healthz", cert=False)
        tap.ok(p.returncode != 0 and p.stdout in ("000", ""),
               "curl without a client certificate is refused in the handshake (no HTTP answer)",
               "rc=%d http_code=%r stderr=%r" % (p.returncode, p.stdout, p.stderr))

        p = curl(d, "/healthz", cert_pem=os.path.join(other_pki, "center.pem"),
                 key_pem=os.path.join(other_pki, "center.key"))
        tap.ok(p.returncode != 0 and p.stdout in ("000", ""),
               "a client certificate from another CA is refused (no HTTP answer)",
               "rc=%d http_code=%r stderr=%r" % (p.returncode, p.stdout, p.stderr))

        p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % d.store_port,
                            "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-cert", d.center_cert,
                            "-key", d.center_key, "-CAfile", d.store_ca,
                            "-servername", "localhost"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15)
        out = p.stdout + p.stderr
        completed = re.search(r"Cipher is (?!\(NONE\))", out)
        tap.ok(p.returncode != 0 and not completed,
               "openssl s_client -tls1_1 does not complete a handshake",
               "rc=%d output:\n%s" % (p.returncode, out[-1500:]))

        for ver, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
            def one(ver=ver, name=name):
                ctx = d.client_context(min_version=ver, max_version=ver)
                with d.store(ctx) as h:
                    got = h.sock.version()
                    r = h.request("GET", "/healthz")
                expect(got == name, "negotiated %r, want %r" % (got, name))
                expect(r.status == 200 and r.body == b"ok\n", "answer %r" % r)
            tap.check("%s with the client certificate gets 200 on /healthz" % name, one)

        def cbc_refused():
            ctx = d.client_context(max_version=ssl.TLSVersion.TLSv1_2)
            ctx.set_ciphers("ECDHE+AES+SHA256:ECDHE+AES+SHA384:ECDHE+AES+SHA1:-AESGCM")
            try:
                with d.store(ctx) as h:
                    cipher = h.sock.cipher()
            except (ssl.SSLError, ConnectionResetError):
                return
            raise AssertionError("handshake completed with %r" % (cipher,))
        tap.check("TLS 1.2 offering only CBC suites fails the handshake (AEAD suites only)",
                  cbc_refused)

        # Python without a client certificate, TLS 1.2 (refused in the handshake itself).
        def no_cert_py():
            ctx = d.client_context(client_cert=False, max_version=ssl.TLSVersion.TLSv1_2)
            try:
                with d.store(ctx) as h:
                    h.request("GET", "/healthz")
            except (ssl.SSLError, harness.Closed, ConnectionResetError) as e:
                return e
            raise AssertionError("request without a client certificate was answered")
        tap.check("TLS 1.2 without a client certificate fails the handshake", no_cert_py)

        def failures_grew():
            after = d.metric("madoguchi_tls_handshake_failures_total", {"listener": "store"})
            expect(failures0 is not None and after is not None,
                   "series missing (before %r, after %r)" % (failures0, after))
            # no cert (curl), foreign CA (curl), TLS 1.1 (openssl), no cert (python)
            expect(after - failures0 >= 4, "grew from %r to %r, want +4" % (failures0, after))
        tap.check('madoguchi_tls_handshake_failures_total{listener="store"} grew by each refused'
                  ' handshake', failures_grew)

        def unknown_path():
            with d.store() as h:
                r = h.request("GET", "/no/such/path")
                doc = problem_ok(r, 404, "NOT_FOUND")
                expect(isinstance(doc["request_id"], str) and doc["request_id"],
                       "request_id %r" % doc["request_id"])
                # the connection stays usable after an error answer
                r2 = h.request("GET", "/healthz")
                expect(r2.status == 200, "following request got %r" % r2)
        tap.check("unknown path answers 404 application/problem+json with type, title, status,"
                  " code, request_id", unknown_path)

        def method_not_allowed():
            with d.store() as h:
                r = h.request("DELETE", "/healthz")
                problem_ok(r, 405, "METHOD_NOT_ALLOWED")
        tap.check("wrong method on /healthz answers 405 problem+json METHOD_NOT_ALLOWED",
                  method_not_allowed)

        harness.stop_point(tap, d)
    finally:
        d.stop()
        import shutil
        shutil.rmtree(other_pki, ignore_errors=True)
    harness.sanitizer_point(tap, d)


if __name__ == "__main__":
    harness.run(main)
