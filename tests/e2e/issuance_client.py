"""issuance_client.py: a small client of POST /v1/issuances (DESIGN §4) for the e2e tests.

  Card             a card's user certificate and key (scripts/dev-pki --cards: cards/SERIAL.pem
                   + SERIAL.key); serial() spells it as card_serial does (upper-case hex, no
                   leading zeros); sign(body) is RSA PKCS#1 v1.5 SHA-256 or ECDSA P-256 SHA-256
                   (DER), by the key's type.
  request_body()   a request body per DESIGN §4 (compact JSON in the order of the example), with
                   a fresh request_id and requested_at = now unless given; overrides add,
                   replace or (value DROP) remove members.
  Client           one keep-alive mutual-TLS connection (the centre's certificate) to the store
                   listener; issue() signs and posts a body, keys() reads GET /v1/keys.
                   Reconnects when the server closed the connection between requests.
  verify_201()     checks a 201 answer: request_id, municipality and certificate echoed,
                   subject.card_serial is the card's, document.sha256 matches the decoded PDF,
                   and binding.signature verifies (Ed25519) against GET /v1/keys.
  pdf_text()       pdftotext of a PDF given as bytes.

Every call is on loopback with a timeout.  Uses python3-cryptography.
"""

import base64
import datetime
import hashlib
import json
import os
import socket
import ssl
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

import harness

TYPES = ("residence", "residence-record", "seal", "tax-income", "koseki-full",
         "koseki-individual", "koseki-attachment")
MUNICIPALITY = "141003"
DROP = object()  # request_body(..., field=DROP) removes the field


def serial_hex(n):
    """card_serial of a serial number: upper-case hex without leading zeros ("0" for 0)."""
    return "%X" % n


def utc_text(t=None):
    """RFC 3339 UTC, whole seconds ("2026-11-27T09:00:00Z"); t: datetime (aware) or None."""
    t = t or datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Card:
    """A card's user certificate and private key."""

    def __init__(self, cert, key):
        self.cert = cert
        self.key = key
        self.der = cert.public_bytes(serialization.Encoding.DER)
        self.cert_b64 = base64.b64encode(self.der).decode()

    @classmethod
    def load(cls, pem_path, key_path=None):
        if key_path is None:
            key_path = pem_path[:-4] + ".key"
        with open(pem_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        return cls(cert, key)

    @classmethod
    def from_dir(cls, cards_dir, serial):
        return cls.load(os.path.join(cards_dir, serial + ".pem"))

    def serial(self):
        return serial_hex(self.cert.serial_number)

    def sign(self, body):
        if isinstance(self.key, rsa.RSAPrivateKey):
            sig = self.key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(self.key, ec.EllipticCurvePrivateKey):
            sig = self.key.sign(body, ec.ECDSA(hashes.SHA256()))  # DER
        else:
            raise ValueError("unsupported card key type %r" % type(self.key))
        return base64.b64encode(sig).decode()

    def headers(self, body):
        return {"Madoguchi-Card-Certificate": self.cert_b64,
                "Madoguchi-Card-Signature": self.sign(body)}


def make_card(ca_cert_path, ca_key_path, serial, days_valid=365, not_before=None,
              key_type="ec"):
    """A card certificate signed by the given CA (a test's own cards: unlinked serials,
    another CA, an expired card).  serial: hex text."""
    with open(ca_cert_path, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(ca_key_path, "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), password=None)
    return _make_card(ca.subject, ca_key, serial, days_valid, not_before, key_type)


def make_ca(common_name="madoguchi test rogue card CA"):
    """A self-signed CA (cert, key) of its own: cards chaining to it must be refused."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_card_from(ca_cert, ca_key, serial, days_valid=365, not_before=None, key_type="ec"):
    return _make_card(ca_cert.subject, ca_key, serial, days_valid, not_before, key_type)


def _make_card(issuer, ca_key, serial, days_valid, not_before, key_type):
    if key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    nb = not_before or (now - datetime.timedelta(days=1))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME,
                                                        "madoguchi test card")]))
            .issuer_name(issuer).public_key(key.public_key())
            .serial_number(int(serial, 16))
            .not_valid_before(nb).not_valid_after(nb + datetime.timedelta(days=days_valid))
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return Card(cert, key)


def request_body(certificate="residence", municipality=MUNICIPALITY, request_id=None,
                 requested_at=None, copies=1, options=None, terminal=None, raw=False,
                 **overrides):
    """The body bytes (and, with raw, also the dict) of one request, compact JSON in the
    order of DESIGN §4.  Any member given as DROP is left out; overrides replace members or
    add unknown ones."""
    doc = {
        "request_id": request_id or str(uuid.uuid4()),
        "requested_at": requested_at or utc_text(),
        "municipality": municipality,
        "certificate": certificate,
        "copies": copies,
        "options": options if options is not None else
        {"household": False, "show_my_number": False, "show_domicile": False},
        "terminal": terminal or {"operator": "chain-a", "store": "012345", "kiosk": "01"},
    }
    doc.update(overrides)
    doc = {k: v for k, v in doc.items() if v is not DROP}
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    return (body, doc) if raw else body


class Client:
    """One keep-alive mutual-TLS connection to the store listener."""

    def __init__(self, port, ca, cert, key, host="127.0.0.1", timeout=harness.IO_TIMEOUT):
        self.port = port  # a number, or a callable giving the current one
        self.host = host
        self.timeout = timeout
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.load_verify_locations(ca)
        self.ctx.load_cert_chain(cert, key)
        self.http = None
        self.connections = 0

    @classmethod
    def for_daemon(cls, d, timeout=harness.IO_TIMEOUT):
        """A client of daemon d that follows it to its new port after a restart."""
        return cls(lambda: d.store_port, d.store_ca, d.center_cert, d.center_key,
                   timeout=timeout)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def close(self):
        if self.http is not None:
            self.http.close()
            self.http = None

    def _connect(self):
        port = self.port() if callable(self.port) else self.port
        raw = socket.create_connection((self.host, port), timeout=self.timeout)
        try:
            s = self.ctx.wrap_socket(raw, server_hostname="localhost")
        except BaseException:
            raw.close()
            raise
        s.settimeout(self.timeout)
        self.http = harness.Http(s)
        self.connections += 1

    def request(self, method, path, headers=None, body=b""):
        """One request; a connection the server closed while idle is reopened once (only
        before anything of the answer arrived: never a resend of an answered request)."""
        for attempt in (0, 1):
            fresh = self.http is None
            if fresh:
                self._connect()
            try:
                self.http.send(harness.Http.build(method, path, headers, body))
                r = self.http.read_response()
            except (harness.Closed, BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
                self.close()
                if fresh or attempt == 1:
                    raise
                continue
            if r.closes():
                self.close()
            return r

    def post(self, body, headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return self.request("POST", "/v1/issuances", h, body)

    def issue(self, card, body=None, **kw):
        """Sign body (or request_body(**kw)) with card and post it; returns the Response."""
        if body is None:
            body = request_body(**kw)
        return self.post(body, card.headers(body) if card is not None else None)

    def keys(self):
        r = self.request("GET", "/v1/keys")
        harness.expect(r.status == 200, "GET /v1/keys answered %d" % r.status)
        return Keys(r.json())


def send_together(d, jobs, connections=None, timeout=harness.IO_TIMEOUT):
    """Sends jobs [(card, body)] to daemon d at the same instant; returns [Response or the
    exception] in job order.  Every job is signed (card None: unsigned) and every connection
    opened beforehand, then a barrier releases them together.  With `connections` None each
    job has its own connection; otherwise that many keep-alive connections each take the next
    job when they finish one."""
    signed = [(body, card.headers(body) if card is not None else None) for card, body in jobs]
    results = [RuntimeError("not sent")] * len(jobs)
    n = len(jobs) if connections is None else min(connections, len(jobs))
    gate = threading.Barrier(n)
    lock = threading.Lock()
    nxt = [0]

    def next_job(k, first):
        if connections is None:  # job k on connection k, and nothing else
            return k if first else len(jobs)
        with lock:
            nxt[0] += 1
            return nxt[0] - 1

    def worker(k):
        c = Client.for_daemon(d, timeout=timeout)
        try:
            try:
                c._connect()
                gate.wait(timeout=30)
            except (OSError, threading.BrokenBarrierError):
                gate.abort()  # the others go on; this one connects again when it sends
            first = True
            while True:
                i = next_job(k, first)
                first = False
                if i >= len(jobs):
                    return
                try:
                    results[i] = c.post(*signed[i])
                except Exception as e:  # noqa: BLE001  (reported by the caller)
                    results[i] = e
                    c.close()
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 60)
    return results


class Keys:
    """GET /v1/keys: key_id -> Ed25519 public key."""

    def __init__(self, doc):
        self.doc = doc
        self.by_id = {}
        for k in doc.get("keys", []):
            if k.get("alg") == "ed25519":
                pub = serialization.load_pem_public_key(k["public_key_pem"].encode())
                if isinstance(pub, ed25519.Ed25519PublicKey):
                    self.by_id[k["key_id"]] = pub


def binding_text(doc, card_serial):
    return ("madoguchi-binding-v1\n%s\n%s\n%s\n%s\n%s\n%s\n" % (
        doc["issuance_id"], doc["request_id"], doc["municipality"], doc["certificate"],
        card_serial, doc["document"]["sha256"])).encode()


def verify_201(resp, sent, card, keys):
    """Checks a 201 answer to the request sent (the body dict) by card.  Returns
    (problems, answer dict, pdf bytes); problems is empty when everything holds."""
    problems = []
    try:
        doc = resp.json()
    except ValueError:
        return ["the 201 body is not JSON"], None, None
    ct = (resp.header("content-type") or "").split(";")[0].strip()
    if ct != "application/json":
        problems.append("Content-Type %r" % ct)
    for k in ("issuance_id", "request_id", "municipality", "certificate", "issued_at"):
        if not isinstance(doc.get(k), str):
            problems.append("member %s missing" % k)
    if problems:
        return problems, doc, None
    if doc["request_id"] != sent["request_id"]:
        problems.append("request_id %r, sent %r" % (doc["request_id"], sent["request_id"]))
    for k in ("municipality", "certificate"):
        if doc[k] != sent[k]:
            problems.append("%s %r, sent %r" % (k, doc[k], sent[k]))
    serial = (doc.get("subject") or {}).get("card_serial")
    if serial != card.serial():
        problems.append("subject.card_serial %r, the card's is %r" % (serial, card.serial()))
    document = doc.get("document") or {}
    pdf = None
    try:
        pdf = base64.b64decode(document.get("data", ""), validate=True)
    except (ValueError, TypeError):
        problems.append("document.data is not base64")
    if document.get("media_type") != "application/pdf":
        problems.append("document.media_type %r" % document.get("media_type"))
    if pdf is not None:
        if not pdf.startswith(b"%PDF"):
            problems.append("document.data is not a PDF")
        if hashlib.sha256(pdf).hexdigest() != str(document.get("sha256", "")).lower():
            problems.append("document.sha256 does not match the document")
    binding = doc.get("binding") or {}
    pub = keys.by_id.get(binding.get("key_id"))
    if binding.get("alg") != "ed25519" or pub is None:
        problems.append("binding alg %r / key_id %r not in GET /v1/keys"
                        % (binding.get("alg"), binding.get("key_id")))
    elif "sha256" in document:
        try:
            pub.verify(base64.b64decode(binding.get("signature", "")),
                       binding_text(doc, card.serial()))
        except Exception:
            problems.append("binding.signature does not verify")
    return problems, doc, pdf


def pdf_text(pdf):
    """pdftotext of PDF bytes (UTF-8 text)."""
    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(pdf)
        f.flush()
        p = subprocess.run(["pdftotext", "-enc", "UTF-8", f.name, "-"], capture_output=True,
                           timeout=30)
    return p.stdout.decode("utf-8", "replace")


def squash(text):
    """Text without any white space (names print as "山田 太郎" or "山田　太郎")."""
    return "".join(text.split())


class DemoCity:
    """A demo city (scripts/demo-city) with its truth, and the dev PKI with cards for the first
    `cards` linked residents (scripts/dev-pki; `ministry` names dev ministry keys to make too),
    in a temporary directory that cleanup() removes (kept with MDG_KEEP_TMP=yes)."""

    def __init__(self, residents, cards, ministry=(), prefix="mdg-city-"):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, os.path.join(harness.SRCDIR, "scripts", "demo-city"),
                            "--out", self.dir, "--residents", str(residents)],
                           capture_output=True, text=True, timeout=120)
        harness.expect(p.returncode == 0, "demo-city: %s" % p.stderr)
        self.registry = os.path.join(self.dir, "registry.sqlite")
        self.linkage = os.path.join(self.dir, "demo", "linkage.csv")
        self.residents_path = os.path.join(self.dir, "demo", "residents.jsonl")
        self.pki = os.path.join(self.dir, "pki")
        t1 = time.monotonic()
        args = [harness.DEV_PKI, "--cards", self.linkage, "--card-count", str(cards)]
        for name in ministry:
            args += ["--ministry", name]
        p = subprocess.run(args + [self.pki], capture_output=True, text=True, timeout=300)
        harness.expect(p.returncode == 0, "dev-pki: %s" % p.stderr)
        self.city_seconds = t1 - t0
        self.pki_seconds = time.monotonic() - t1
        self.seconds = self.city_seconds + self.pki_seconds
        self.cards_dir = os.path.join(self.pki, "cards")
        self.document_pub = os.path.join(self.dir, "document.pub")
        p = subprocess.run(["openssl", "pkey", "-in", os.path.join(self.pki, "document.key"),
                            "-pubout", "-out", self.document_pub], capture_output=True,
                           timeout=30)
        harness.expect(p.returncode == 0, "openssl pkey -pubout: %s" % p.stderr)
        with open(self.residents_path, encoding="utf-8") as f:
            self.truth = [json.loads(line) for line in f if line.strip()]
        serials = {n[:-4] for n in os.listdir(self.cards_dir) if n.endswith(".pem")}
        # The residents whose card the test holds, in card serial order.
        self.carded = sorted((r for r in self.truth if r["card_serial"] in serials),
                             key=lambda r: r["card_serial"])
        self.linked_serials = {r["card_serial"] for r in self.truth if r["card_serial"]}
        self._cards = {}

    def card(self, r):
        serial = r if isinstance(r, str) else r["card_serial"]
        if serial not in self._cards:
            self._cards[serial] = Card.from_dir(self.cards_dir, serial)
        return self._cards[serial]

    def pick(self, pred, n=1, exclude=()):
        """The first n carded residents matching pred (deterministic), none of exclude."""
        ex = {x if isinstance(x, str) else x["card_serial"] for x in exclude}
        out = [r for r in self.carded if r["card_serial"] not in ex and pred(r)][:n]
        harness.expect(len(out) == n,
                       "only %d carded residents match, want %d" % (len(out), n))
        return out if n > 1 else out[0]

    def issuable(self, t, n=1):
        """n carded residents for whom type t is issuable."""
        return self.pick(lambda r: r["issuable"][t], n)

    def import_linkage(self, d):
        """Loads the city's linkage table into daemon d (POST /v1/linkage)."""
        with open(self.linkage, "rb") as f:
            body = f.read()
        with d.admin(timeout=60) as h:
            r = h.request("POST", "/v1/linkage", {"Content-Type": "text/csv",
                                                   "Connection": "close"}, body)
        harness.expect(r.status == 200, "POST /v1/linkage: %d %r" % (r.status, r.body[:300]))

    def start_daemon(self, cfg):
        """A daemon on this city's PKI with config cfg, started, its linkage loaded."""
        d = harness.Daemon(cfg, pki_dir=self.pki)
        d.start()
        self.import_linkage(d)
        return d

    def refused_start(self, cfg, timeout=10.0):
        """Starts a daemon with cfg that must refuse to start; returns (exit code, log)."""
        d = harness.Daemon(cfg, pki_dir=self.pki)
        try:
            d.start(wait=False)
            code = d.wait_exit(timeout=timeout)
            return code, d.log_text()
        finally:
            d.cleanup()

    def cleanup(self):
        if os.environ.get("MDG_KEEP_TMP") != "yes":
            shutil.rmtree(self.dir, ignore_errors=True)
