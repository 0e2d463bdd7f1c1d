#!/usr/bin/env python3
"""test_ctl_killswitch.py: madoguchictl's kill-switch commands (docs/kill-switch.md, "Operating
the kill switch with madoguchictl"; DESIGN §6, §7), against a private daemon with a tiny demo
city (scripts/demo-city), the dev PKI with two dev ministry keys (scripts/dev-pki --ministry dev
--ministry second; only dev.pub is configured), sqlite-registry (instance "registry": residence,
residence-record, seal, tax-income) and fujitsu-like (instance "vendor": the koseki types)
talking to the vendor simulator.

What must hold:
  1. ministry keygen (offline): writes PREFIX.key (PKCS#8, mode 0600) and PREFIX.pub (SPKI), an
     Ed25519 pair; prints the key id, the first 16 hex of SHA-256 of the raw public key; never
     overwrites an existing file; without --out it is a usage error (exit 2);
  2. ministry sign (offline): the envelope {payload, signatures[{key_id, alg, sig}]}, the payload
     with its members in the order type, sequence, issued_at, expires_at, suspensions and the
     YAML's entries; each signature verifies with `openssl pkeyutl` over the payload bytes;
     --expires as a duration from now; the full u64 sequence; refusals: an unknown YAML key and
     a bad value at file:line:column (exit 1), --expires not after --issued-at (exit 2), a key
     that is not Ed25519 (exit 1), and no output file after a refusal;
  3. ministry apply: a list signed with a configured key is applied (the one-line summary); the
     same file again is SEQUENCE_NOT_NEWER with both sequences (exit 1); a list signed by an
     unconfigured key is LIST_SIGNATURE_INVALID; a malformed one is LIST_MALFORMED naming the
     field (envelope, and payload after verification); a daemon without a ministry section is
     MINISTRY_NOT_CONFIGURED (local suspensions work there regardless); a refused list changes
     nothing; sequence 2^64-1 is applied and shown unsigned;
  4. suspend / resume / suspensions on plugin instances: the one-line summaries, exit 0; the
     table (local rows name the instance, ministry rows the plugin as its vendor ships it;
     per-type local suspensions merged into one row) and its ministry line; --json is the
     daemon's answer; resume of a plugin held by a ministry list exits 1 and says it cannot be
     lifted locally (and still lifts the city's own suspensions); unknown plugin exits 1 with
     the problem; a missing --reason is a usage error (exit 2) that changes nothing;
  5. a daemon that cannot be reached (bad --socket) is exit 3 for every online command;
     MADOGUCHI_SOCKET is honoured.

Environment: MDG_SRCDIR, MDG_BUILDDIR, MDG_SANITIZERS, MDG_PLUGINS, MDG_VENDOR_SIM.  Loopback
only; every call has a timeout.
"""

import base64
import datetime
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import CTL, SANITIZERS, Daemon, expect  # noqa: E402

PLUGINS = os.environ.get("MDG_PLUGINS") or os.path.join(harness.BUILDDIR, "plugins", ".libs")
RESIDENTS = 20   # the registry only has to open; no issuance is made here
SLACK = 3.0 if SANITIZERS else 1.0
CTL_TIMEOUT = 10 * SLACK
TYPES = ("residence", "residence-record", "seal", "tax-income",
         "koseki-full", "koseki-individual", "koseki-attachment")
KOSEKI = TYPES[4:]
U64_MAX = 2 ** 64 - 1
UTC_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
KEY_ID_RE = r"[0-9a-f]{16}"
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
TABLE_HEADS = ["SOURCE", "PLUGIN", "ID", "CERTIFICATES", "VERSIONS", "MUNICIPALITIES", "MODE",
               "SINCE", "REASON"]

R_DRAIN = "ctl check: registry upgrade"
R_ALL = "ctl check: every type"
R_MINISTRY = "ベンダー障害 vendor incident 2026-11"

CTL_FINDINGS = []  # sanitizer lines in madoguchictl's stderr (it is built with them too)


def utc(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


# ------------------------------------------------------------------------------ helpers

class Work:
    """The fixture: a demo city, the dev PKI with two ministry keys, a scratch directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mdg-ctl-ks-")
        self.scratch = os.path.join(self.dir, "work")
        os.makedirs(self.scratch)
        p = subprocess.run([sys.executable, os.path.join(harness.SRCDIR, "scripts", "demo-city"),
                            "--out", os.path.join(self.dir, "city"), "--residents",
                            str(RESIDENTS)], capture_output=True, text=True, timeout=120)
        expect(p.returncode == 0, "demo-city: %s" % p.stderr)
        self.registry = os.path.join(self.dir, "city", "registry.sqlite")
        self.pki = os.path.join(self.dir, "pki")
        p = subprocess.run([harness.DEV_PKI, "--ministry", "dev", "--ministry", "second",
                            self.pki], capture_output=True, text=True, timeout=120)
        expect(p.returncode == 0, "dev-pki: %s" % p.stderr)
        self.dev_key = os.path.join(self.pki, "ministry", "dev.key")
        self.dev_pub = os.path.join(self.pki, "ministry", "dev.pub")
        self.second_key = os.path.join(self.pki, "ministry", "second.key")
        self.second_pub = os.path.join(self.pki, "ministry", "second.pub")
        self.p256_key = os.path.join(self.pki, "server.key")

    def path(self, name):
        return os.path.join(self.scratch, name)

    def write(self, name, text):
        path = self.path(name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def cleanup(self):
        if os.environ.get("MDG_KEEP_TMP") != "yes":
            shutil.rmtree(self.dir, ignore_errors=True)


def ctl(*args, sock=None, env=None, cwd=None):
    """madoguchictl [--socket sock] args..., without MADOGUCHI_SOCKET unless env sets it."""
    e = dict(os.environ)
    e.pop("MADOGUCHI_SOCKET", None)
    if SANITIZERS:
        e["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    if env:
        e.update(env)
    argv = [CTL] + (["--socket", sock] if sock else []) + [str(a) for a in args]
    p = subprocess.run(argv, capture_output=True, text=True, encoding="utf-8", errors="replace",
                       env=e, cwd=cwd, timeout=CTL_TIMEOUT)
    CTL_FINDINGS.extend("%s: %s" % (" ".join(argv[1:]), line)
                        for line in p.stderr.splitlines()
                        if any(m in line for m in harness.SANITIZER_MARKERS))
    return p


def shown(p):
    return "exit %d; stdout %r; stderr %r" % (p.returncode, p.stdout[-1500:], p.stderr[-1500:])


def expect_exit(p, rc, what=""):
    expect(p.returncode == rc, "%sexit %d, want %d; %s" % (what and what + ": ", p.returncode,
                                                          rc, shown(p)))


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def raw_public_key(pub_path):
    """The raw 32-byte Ed25519 public key of an SPKI PEM file (openssl CLI)."""
    p = subprocess.run(["openssl", "pkey", "-pubin", "-in", pub_path, "-outform", "DER"],
                       capture_output=True, timeout=30)
    expect(p.returncode == 0, "openssl pkey -pubin %s: %s" % (pub_path, p.stderr))
    der = p.stdout
    expect(len(der) == 44 and der.startswith(ED25519_SPKI_PREFIX),
           "%s is not an Ed25519 SPKI key (DER %s)" % (pub_path, der.hex()))
    return der[-32:]


def key_id_of(pub_path):
    return hashlib.sha256(raw_public_key(pub_path)).hexdigest()[:16]


def openssl_verify(pub_path, data_path, sig_path):
    return subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub_path,
                           "-rawin", "-in", data_path, "-sigfile", sig_path],
                          capture_output=True, text=True, timeout=30)


def openssl_sign(key_path, data_path):
    p = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", key_path, "-rawin", "-in",
                        data_path], capture_output=True, timeout=30)
    expect(p.returncode == 0, "openssl pkeyutl -sign: %s" % p.stderr)
    return p.stdout


def decode_envelope(text):
    env = json.loads(text)
    payload = base64.b64decode(env["payload"], validate=True)
    return env, payload, json.loads(payload)


def sign_list(w, yaml_name, out_name, *keys, sequence, expires="30d", issued_at=None):
    """ministry sign with the given keys; returns the path of the signed list."""
    out = w.path(out_name)
    args = ["ministry", "sign", w.path(yaml_name)]
    for k in keys:
        args += ["--key", k]
    args += ["--sequence", str(sequence), "--expires", expires, "-o", out]
    if issued_at is not None:
        args += ["--issued-at", issued_at]
    p = ctl(*args)
    expect_exit(p, 0, "ministry sign %s" % yaml_name)
    return out


def table(stdout):
    """The suspensions table: (rows as dicts of the documented columns, the other lines)."""
    lines = stdout.splitlines()
    expect(lines and lines[0].split() == TABLE_HEADS, "table heading %r, want %r"
           % (lines[0] if lines else None, TABLE_HEADS))
    rows, rest = [], []
    for line in lines[1:]:
        if re.match(r"(local|ministry|auto)\s{2}", line):
            cells = re.split(r"\s{2,}", line.rstrip(), maxsplit=len(TABLE_HEADS) - 1)
            expect(len(cells) == len(TABLE_HEADS), "row %r has %d cells" % (line, len(cells)))
            rows.append(dict(zip(TABLE_HEADS, cells)))
        else:
            rest.append(line)
    return rows, rest


def api_suspensions(d):
    r = d.admin_get("/v1/suspensions")
    expect(r.status == 200, "GET /v1/suspensions: %r" % r)
    return r.json()


def api_plugin(d, name):
    r = d.admin_get("/v1/plugins")
    expect(r.status == 200, "GET /v1/plugins: %r" % r)
    for p in r.json()["plugins"]:
        if p["name"] == name:
            return p
    raise AssertionError("no plugin instance %r in GET /v1/plugins" % name)


def local_entries(d, plugin=None):
    return [s for s in api_suspensions(d)["suspensions"]
            if s["source"] == "local" and (plugin is None or s["plugin"] == plugin)]


def ministry_sequence(d):
    lst = api_suspensions(d)["ministry_list"]
    if lst is None:
        return None
    seq = lst["sequence"]
    return int(seq) % 2 ** 64 if isinstance(seq, (int, str)) else seq


def config(w, sim, ministry=True):
    plug = {"registry": {"file": "sqlite-registry.so", "timeout": "2s",
                         "config": {"database": w.registry}},
            "vendor": {"file": "fujitsu-like.so", "timeout": "2s",
                       "config": {"endpoint": sim.endpoint}}}
    cfg = {"plugin_dir": PLUGINS, "plugins": plug,
           "issuance": {"municipalities": ["141003"], "municipality_name": "横浜市中区",
                        "document_key": "pki/document.key",
                        "card_proof": {"ca": "pki/card-ca.pem", "max_skew": "5m"},
                        "certificates": {t: {"plugin": "vendor" if t in KOSEKI else "registry",
                                             "always_open": True} for t in TYPES}},
           "log": {"level": "info", "access": False}}
    if ministry:
        cfg["ministry"] = {"keys": [w.dev_pub], "threshold": 1}
    return cfg


# ================================================================================= offline

def offline_keygen(tap, w):
    """ministry keygen: returns the prefix of a pair nobody configured (or None)."""
    k1 = w.path("k1")
    out = {}

    def writes_pair():
        p = ctl("ministry", "keygen", "--out", k1)
        expect_exit(p, 0)
        m = re.search(r"^key id (%s)$" % KEY_ID_RE, p.stdout, re.M)
        expect(m, "no 'key id HEX16' line: %s" % shown(p))
        out["id"] = m.group(1)
        for suffix in (".key", ".pub"):
            expect("wrote %s%s " % (k1, suffix) in p.stdout, "no 'wrote %s%s' line: %s"
                   % (k1, suffix, shown(p)))
        key, pub = file_bytes(k1 + ".key"), file_bytes(k1 + ".pub")
        expect(key.startswith(b"-----BEGIN PRIVATE KEY-----\n"), "PREFIX.key is not PKCS#8 "
               "PEM: %r" % key[:40])
        expect(pub.startswith(b"-----BEGIN PUBLIC KEY-----\n"), "PREFIX.pub is not SPKI "
               "PEM: %r" % pub[:40])
        raw_public_key(k1 + ".pub")  # an Ed25519 SPKI
        # The private half belongs to the public half: its derived public key is the same.
        q = subprocess.run(["openssl", "pkey", "-in", k1 + ".key", "-pubout"],
                           capture_output=True, timeout=30)
        expect(q.returncode == 0 and q.stdout == pub,
               "the public key derived from PREFIX.key differs from PREFIX.pub: %r" % q.stderr)
    tap.check("ministry keygen --out PREFIX writes an Ed25519 pair (PKCS8 PREFIX.key, SPKI "
              "PREFIX.pub) and exits 0", writes_pair)

    def mode_0600():
        m = stat.S_IMODE(os.stat(k1 + ".key").st_mode)
        expect(m == 0o600, "PREFIX.key mode %o, want 600" % m)
        # also when the umask would allow more
        k = w.path("k-umask")
        old = os.umask(0)
        try:
            p = ctl("ministry", "keygen", "--out", k)
        finally:
            os.umask(old)
        expect_exit(p, 0)
        m = stat.S_IMODE(os.stat(k + ".key").st_mode)
        expect(m == 0o600, "PREFIX.key mode %o under umask 0, want 600" % m)
    tap.check("ministry keygen: the private key is mode 0600 (whatever the umask)", mode_0600)

    def key_id():
        want = key_id_of(k1 + ".pub")
        expect(out.get("id") == want, "printed key id %r, want %r (SHA-256 of the raw public "
               "key)" % (out.get("id"), want))
        k2 = w.path("k2")
        p = ctl("--json", "ministry", "keygen", "--out", k2)
        expect_exit(p, 0, "--json ministry keygen")
        doc = json.loads(p.stdout)
        expect(doc.get("key_id") == key_id_of(k2 + ".pub"), "--json key_id %r, want %r"
               % (doc.get("key_id"), key_id_of(k2 + ".pub")))
        expect(doc.get("private_key") == k2 + ".key" and doc.get("public_key") == k2 + ".pub",
               "--json paths %r" % doc)
    tap.check("ministry keygen: the key id (text and --json) is the first 16 hex of SHA-256 of "
              "the raw 32-byte public key", key_id)

    def no_overwrite():
        before = (file_bytes(k1 + ".key"), file_bytes(k1 + ".pub"))
        p = ctl("ministry", "keygen", "--out", k1)
        expect_exit(p, 1)
        expect("%s.key already exists; refusing to overwrite" % k1 in p.stderr,
               "no 'already exists; refusing to overwrite': %s" % shown(p))
        expect((file_bytes(k1 + ".key"), file_bytes(k1 + ".pub")) == before,
               "the existing pair changed")
        # Only the .pub exists: still refused, and no .key is left behind.
        k3 = w.path("k3")
        w.write("k3.pub", "not a key, but mine\n")
        p = ctl("ministry", "keygen", "--out", k3)
        expect_exit(p, 1, "PREFIX.pub exists")
        expect("%s.pub already exists" % k3 in p.stderr, "stderr %r" % p.stderr)
        expect(not os.path.exists(k3 + ".key"), "PREFIX.key was created although PREFIX.pub "
               "exists")
        expect(file_bytes(k3 + ".pub") == b"not a key, but mine\n", "PREFIX.pub changed")
    tap.check("ministry keygen refuses to overwrite an existing PREFIX.key or PREFIX.pub (exit "
              "1, files untouched)", no_overwrite)

    def needs_out():
        for argv in (["ministry", "keygen"], ["ministry", "keygen", "--out"]):
            p = ctl(*argv, cwd=w.scratch)
            expect_exit(p, 2, " ".join(argv))
            expect("needs --out PREFIX" in p.stderr or "unexpected '--out'" in p.stderr,
                   "%s: stderr %r" % (argv, p.stderr))
            expect(p.stdout == "", "stdout %r" % p.stdout)
    tap.check("ministry keygen without --out PREFIX is a usage error (exit 2)", needs_out)
    return k1


LIST_YAML = """\
# the ministry's list, as an operator writes it
suspensions:
  - id: s-1
    plugin: fujitsu-like
    versions: "<2.3.1"
    certificates: ["*"]
    mode: immediate
    reason: %s
  - id: s-2
    plugin: sqlite-registry
    versions: ">=9"
    certificates: seal
    municipalities: ["011002", "131016"]
    mode: drain
""" % R_MINISTRY

LIST_ENTRIES = [
    {"id": "s-1", "plugin": "fujitsu-like", "versions": "<2.3.1", "certificates": ["*"],
     "mode": "immediate", "reason": R_MINISTRY},
    {"id": "s-2", "plugin": "sqlite-registry", "versions": ">=9", "certificates": ["seal"],
     "municipalities": ["011002", "131016"], "mode": "drain"},
]


def offline_sign(tap, w, k1):
    w.write("list.yaml", LIST_YAML)
    issued = now_utc() - datetime.timedelta(hours=1)
    expires = now_utc() + datetime.timedelta(days=30)
    signed = w.path("signed-2keys.json")
    st = {}

    def two_keys():
        p = ctl("ministry", "sign", w.path("list.yaml"), "--key", w.dev_key, "--key",
                w.second_key, "--sequence", 900, "--issued-at", utc(issued), "--expires",
                utc(expires), "-o", signed)
        expect_exit(p, 0)
        want = ("signed suspension list sequence 900: 2 suspensions, issued %s, expires %s; "
                "keys %s %s -> %s\n" % (utc(issued), utc(expires), key_id_of(w.dev_pub),
                                         key_id_of(w.second_pub), signed))
        expect(p.stdout == want, "stdout %r, want %r" % (p.stdout, want))
        text = open(signed, encoding="utf-8").read()
        expect(text.endswith("\n") and "\n" not in text[:-1], "not one line and a newline")
        env, payload, doc = decode_envelope(text)
        st.update(env=env, payload=payload, doc=doc)
        expect(list(env) == ["payload", "signatures"], "envelope members %r" % list(env))
        expect(len(env["signatures"]) == 2, "signatures %r" % env["signatures"])
        for s, pub in zip(env["signatures"], (w.dev_pub, w.second_pub)):
            expect(sorted(s) == ["alg", "key_id", "sig"], "signature members %r" % list(s))
            expect(s["alg"] == "ed25519", "alg %r" % s["alg"])
            expect(s["key_id"] == key_id_of(pub), "key_id %r, want %r" % (s["key_id"],
                                                                          key_id_of(pub)))
            expect(len(base64.b64decode(s["sig"], validate=True)) == 64, "sig is not 64 bytes")
    tap.check("ministry sign with two keys: exit 0, the summary line, an envelope of one line "
              "with payload and one {key_id, alg: ed25519, sig} per key", two_keys)

    def payload_fields():
        doc = st["doc"]
        expect(list(doc) == ["type", "sequence", "issued_at", "expires_at", "suspensions"],
               "payload members %r, want type, sequence, issued_at, expires_at, suspensions"
               % list(doc))
        expect(doc["type"] == "madoguchi-suspension-list", "type %r" % doc["type"])
        expect(doc["sequence"] == 900 and isinstance(doc["sequence"], int),
               "sequence %r" % doc["sequence"])
        expect(doc["issued_at"] == utc(issued), "issued_at %r, want %r" % (doc["issued_at"],
                                                                           utc(issued)))
        expect(doc["expires_at"] == utc(expires), "expires_at %r, want %r"
               % (doc["expires_at"], utc(expires)))
        expect(doc["suspensions"] == LIST_ENTRIES, "suspensions %r, want %r (one type given "
               "alone becomes a list)" % (doc["suspensions"], LIST_ENTRIES))
    tap.check("ministry sign: the payload has type, sequence, issued_at, expires_at, "
              "suspensions in that order, and the YAML's entries", payload_fields)

    def openssl_verifies():
        data = w.path("payload.bin")
        with open(data, "wb") as f:
            f.write(st["payload"])
        for i, pub in enumerate((w.dev_pub, w.second_pub)):
            sig = w.path("sig-%d.bin" % i)
            with open(sig, "wb") as f:
                f.write(base64.b64decode(st["env"]["signatures"][i]["sig"]))
            p = openssl_verify(pub, data, sig)
            expect(p.returncode == 0 and "Signature Verified Successfully" in p.stdout,
                   "openssl pkeyutl -verify with %s: %s" % (pub, shown(p)))
        # The control: one byte changed does not verify.
        bad = w.path("payload-bad.bin")
        with open(bad, "wb") as f:
            f.write(st["payload"].replace(b"900", b"901", 1))
        p = openssl_verify(w.dev_pub, bad, w.path("sig-0.bin"))
        expect(p.returncode != 0, "a changed payload verifies: %s" % shown(p))
    tap.check("openssl pkeyutl -verify -rawin accepts each signature over the decoded payload "
              "bytes (and refuses a changed byte)", openssl_verifies)

    def to_stdout_u64():
        p = ctl("ministry", "sign", w.path("list.yaml"), "--key", w.dev_key, "--sequence",
                U64_MAX, "--expires", "2w")
        expect_exit(p, 0)
        expect(p.stderr.startswith("signed suspension list sequence %d: 2 suspensions, " %
                                   U64_MAX), "summary not on stderr: %s" % shown(p))
        _, payload, doc = decode_envelope(p.stdout)
        expect(b'"sequence":%d,' % U64_MAX in payload, "payload %r lacks the u64 sequence"
               % payload[:120])
        t0 = datetime.datetime.strptime(doc["issued_at"], "%Y-%m-%dT%H:%M:%SZ")
        t1 = datetime.datetime.strptime(doc["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
        lag = abs((now_utc().replace(tzinfo=None) - t0).total_seconds())
        expect(lag < 60 * SLACK, "issued_at %s is not now" % doc["issued_at"])
        expect(t1 - t0 == datetime.timedelta(weeks=2), "expires_at - issued_at = %s for 2w"
               % (t1 - t0))
        for span, delta in (("90m", datetime.timedelta(minutes=90)),
                            ("12h", datetime.timedelta(hours=12)),
                            ("30d", datetime.timedelta(days=30))):
            q = ctl("ministry", "sign", w.path("list.yaml"), "--key", w.dev_key, "--sequence",
                    1, "--expires", span)
            expect_exit(q, 0, "--expires %s" % span)
            d = decode_envelope(q.stdout)[2]
            got = (datetime.datetime.strptime(d["expires_at"], "%Y-%m-%dT%H:%M:%SZ") -
                   datetime.datetime.strptime(d["issued_at"], "%Y-%m-%dT%H:%M:%SZ"))
            expect(got == delta, "--expires %s: expires_at - issued_at = %s" % (span, got))
    tap.check("ministry sign without -o: the envelope on stdout, the summary on stderr; "
              "sequence 2^64-1 written as digits; --issued-at defaults to now; --expires "
              "90m/12h/30d/2w from now", to_stdout_u64)

    def unknown_key():
        y = w.write("unknown.yaml", "suspensions:\n  - id: a\n    plugin: fujitsu-like\n"
                                    "    vesions: \"<1\"\n")
        out = w.path("unknown.json")
        p = ctl("ministry", "sign", y, "--key", w.dev_key, "--sequence", 1, "--expires", "1d",
                "-o", out)
        expect_exit(p, 1)
        expect("%s:4:5: unknown key 'vesions'" % y in p.stderr, "want %s:4:5: unknown key "
               "'vesions': %s" % (y, shown(p)))
        expect(not os.path.exists(out), "an output file was written")
    tap.check("ministry sign: an unknown YAML key is refused at file:line:column (exit 1), "
              "nothing written", unknown_key)

    def bad_value():
        y = w.write("muni.yaml", "suspensions:\n  - id: a\n    plugin: fujitsu-like\n"
                                 "    municipalities: [\"131016\", \"12345\"]\n")
        out = w.path("muni.json")
        p = ctl("ministry", "sign", y, "--key", w.dev_key, "--sequence", 1, "--expires", "1d",
                "-o", out)
        expect_exit(p, 1)
        expect("%s:4:32: suspensions[0].municipalities[1]" % y in p.stderr,
               "want %s:4:32: suspensions[0].municipalities[1]: %s" % (y, shown(p)))
        expect(not os.path.exists(out), "an output file was written")
    tap.check("ministry sign: a value the appliance would refuse (a 5-digit municipality) is "
              "reported at its file:line:column with the field path (exit 1)", bad_value)

    def expires_before_issued():
        out = w.path("backwards.json")
        for exp in ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"):
            p = ctl("ministry", "sign", w.path("list.yaml"), "--key", w.dev_key, "--sequence",
                    1, "--issued-at", "2026-12-01T00:00:00Z", "--expires", exp, "-o", out)
            expect_exit(p, 2, "--expires %s" % exp)
            expect("--expires must be later than the issue time" in p.stderr,
                   "stderr %r" % p.stderr)
        expect(not os.path.exists(out), "an output file was written")
    tap.check("ministry sign: --expires not after --issued-at is a usage error (exit 2), "
              "nothing written", expires_before_issued)

    def not_ed25519():
        out = w.path("p256.json")
        p = ctl("ministry", "sign", w.path("list.yaml"), "--key", w.p256_key, "--sequence", 1,
                "--expires", "1d", "-o", out)
        expect_exit(p, 1)
        expect("%s is not an Ed25519 key" % w.p256_key in p.stderr, "stderr %r" % p.stderr)
        expect(not os.path.exists(out), "an output file was written")
    tap.check("ministry sign with a P-256 key is refused: not an Ed25519 key (exit 1), nothing "
              "written", not_ed25519)


# ================================================================================== online

def online(tap, w, d, k1):
    sock = d.admin_sock

    def fresh():
        p = ctl("suspensions", sock=sock)
        expect_exit(p, 0)
        expect(p.stdout == "no suspensions in force: every plugin instance may serve\n"
               "ministry list: none applied yet\n", "stdout %r" % p.stdout)
    tap.check("suspensions on a fresh daemon: nothing in force, no ministry list (exit 0)",
              fresh)

    def suspend_seal():
        p = ctl("suspend", "registry", "--certificates", "seal", "--mode", "drain", "--reason",
                R_DRAIN, sock=sock)
        expect_exit(p, 0)
        expect(p.stdout == "registry: suspended (seal; local, drain)\n", "stdout %r"
               % p.stdout)
        loc = local_entries(d, "registry")
        expect(len(loc) == 1 and loc[0]["scope"]["certificates"] == ["seal"] and
               loc[0]["mode"] == "drain" and loc[0]["reason"] == R_DRAIN,
               "GET /v1/suspensions local entries %r" % loc)
    tap.check("suspend registry --certificates seal --mode drain --reason R: exit 0, "
              "'registry: suspended (seal; local, drain)', in force", suspend_seal)

    def table_local():
        p = ctl("suspensions", sock=sock)
        expect_exit(p, 0)
        rows, rest = table(p.stdout)
        expect(len(rows) == 1, "rows %r" % rows)
        r = rows[0]
        want = {"SOURCE": "local", "PLUGIN": "registry", "ID": "-", "CERTIFICATES": "seal",
                "VERSIONS": "*", "MUNICIPALITIES": "*", "MODE": "drain", "REASON": R_DRAIN}
        got = {k: r[k] for k in want}
        expect(got == want, "row %r, want %r" % (r, want))
        expect(re.fullmatch(UTC_RE, r["SINCE"]), "SINCE %r" % r["SINCE"])
        expect(rest == ["ministry list: none applied yet"], "after the table: %r" % rest)
    tap.check("suspensions: the table's heading and the local row (registry, seal, drain, "
              "reason), then the ministry line", table_local)

    def json_raw():
        p = ctl("suspensions", "--json", sock=sock)
        expect_exit(p, 0)
        doc = json.loads(p.stdout)
        expect(doc == api_suspensions(d), "--json %r differs from GET /v1/suspensions" % doc)
        q = ctl("--json", "suspensions", sock=sock)
        expect_exit(q, 0, "--json suspensions")
        expect(json.loads(q.stdout) == doc, "global --json differs")
    tap.check("suspensions --json (and --json suspensions) prints the daemon's answer as it "
              "is", json_raw)

    def suspend_again():
        seal_since = local_entries(d, "registry")[0]["since"]
        p = ctl("suspend", "registry", "--reason", R_ALL, sock=sock)
        expect_exit(p, 0)
        # seal keeps its "since" (only its reason and mode are replaced), the other six are
        # new; when a second boundary lies between the two calls the line shows two groups,
        # "(residence,…; local, immediate) (seal; local, immediate)", else one "(*; …)".
        m = re.fullmatch(r"registry: suspended((?: \([^;()]+; local, immediate\))+)\n", p.stdout)
        expect(m, "stdout %r" % p.stdout)
        shown_types = set()
        for g in re.findall(r"\(([^;()]+);", m.group(1)):
            shown_types |= set(TYPES) if g == "*" else set(g.split(","))
        expect(shown_types == set(TYPES), "the line covers %r" % sorted(shown_types))
        loc = local_entries(d, "registry")
        expect(sorted(c for e in loc for c in e["scope"]["certificates"]) == sorted(TYPES),
               "local entries cover %r" % [e["scope"]["certificates"] for e in loc])
        expect(all(e["mode"] == "immediate" and e["reason"] == R_ALL for e in loc),
               "seal kept its old mode or reason: %r" % loc)
        seal = [e for e in loc if e["scope"]["certificates"] == ["seal"]]
        expect(seal and seal[0]["since"] == seal_since, "seal's since %r, was %r"
               % (seal and seal[0]["since"], seal_since))
    tap.check("suspend registry without --certificates over a seal drain suspension: exit 0, "
              "every type local immediate, seal's reason and mode replaced (its since kept)",
              suspend_again)

    def resume_partial_then_all():
        p = ctl("resume", "registry", "--certificates", "seal", sock=sock)
        expect_exit(p, 0, "resume --certificates seal")
        rest = ",".join(t for t in TYPES if t != "seal")
        want = "registry: suspended (%s; local, immediate); lifted 1 local suspension\n" % rest
        expect(p.stdout == want, "stdout %r, want %r" % (p.stdout, want))
        p = ctl("resume", "registry", sock=sock)
        expect_exit(p, 0, "resume")
        expect(p.stdout == "registry: serving; lifted 6 local suspensions\n", "stdout %r"
               % p.stdout)
        expect(local_entries(d) == [], "local suspensions left: %r" % local_entries(d))
        p = ctl("resume", "registry", sock=sock)
        expect_exit(p, 0, "resume again")
        expect(p.stdout == "registry: serving; nothing lifted (no local suspension was in "
               "force)\n", "stdout %r" % p.stdout)
    tap.check("resume registry --certificates seal lifts seal only, resume lifts the rest "
              "('registry: serving; lifted 6 local suspensions'), again lifts nothing (exit 0)",
              resume_partial_then_all)

    def suspend_all_merged():
        p = ctl("suspend", "registry", "--reason", R_ALL, sock=sock)
        expect_exit(p, 0)
        expect(p.stdout == "registry: suspended (*; local, immediate)\n", "stdout %r"
               % p.stdout)
        rows, rest = table(ctl("suspensions", sock=sock).stdout)
        expect(len(rows) == 1 and rows[0]["PLUGIN"] == "registry" and
               rows[0]["CERTIFICATES"] == "*" and rows[0]["MODE"] == "immediate" and
               rows[0]["REASON"] == R_ALL, "rows %r, want one merged row (*, immediate)" % rows)
        p = ctl("resume", "registry", sock=sock)
        expect_exit(p, 0, "resume")
        expect(p.stdout == "registry: serving; lifted 7 local suspensions\n", "stdout %r"
               % p.stdout)
    tap.check("suspend registry without --certificates: 'registry: suspended (*; local, "
              "immediate)', one table row '*' for the 7 per-type suspensions; resume lifts 7",
              suspend_all_merged)

    # ---------------------------------------------------------------- ministry apply
    issued = now_utc() - datetime.timedelta(hours=1)
    expires = now_utc() + datetime.timedelta(days=30)
    dev_list = sign_list(w, "list.yaml", "applied-10.json", w.dev_key, sequence=10,
                         issued_at=utc(issued), expires=utc(expires))

    def apply_ok():
        p = ctl("ministry", "apply", dev_list, sock=sock)
        expect_exit(p, 0)
        want = ("applied suspension list sequence 10: 2 suspension(s) in force, expires %s\n"
                % utc(expires))
        expect(p.stdout == want, "stdout %r, want %r" % (p.stdout, want))
        expect(p.stderr == "", "stderr %r" % p.stderr)
        doc = api_suspensions(d)
        lst = doc["ministry_list"]
        expect(lst and lst["sequence"] == 10 and lst["expired"] is False,
               "ministry_list %r" % lst)
        vendor = api_plugin(d, "vendor")
        expect(vendor["state"] != "serving" and
               any(s["source"] == "ministry" for s in vendor["suspensions"]),
               "vendor %r is not suspended by the ministry" % vendor)
        registry = api_plugin(d, "registry")
        expect(registry["state"] == "serving", "registry (version %s, entry >=9) %r"
               % (registry.get("version"), registry))
    tap.check("ministry apply FILE (signed with the configured key): exit 0, 'applied "
              "suspension list sequence 10: 2 suspension(s) in force, expires …'; fujitsu-like "
              "suspended, sqlite-registry 1.0.0 outside >=9 not", apply_ok)

    def table_ministry():
        p = ctl("suspensions", sock=sock)
        expect_exit(p, 0)
        rows, rest = table(p.stdout)
        mrows = [r for r in rows if r["SOURCE"] == "ministry"]
        want = {"PLUGIN": "fujitsu-like", "ID": "s-1", "CERTIFICATES": "*",
                "VERSIONS": "<2.3.1", "MUNICIPALITIES": "*", "MODE": "immediate",
                "REASON": R_MINISTRY}
        expect(any({k: r[k] for k in want} == want for r in mrows),
               "no ministry row %r in %r" % (want, rows))
        expect(not any(r["PLUGIN"] in ("vendor", "registry") for r in mrows),
               "a ministry row names an instance: %r" % mrows)
        line = ("ministry list: sequence 10, issued %s, expires %s, received %s, "
                "2 suspensions" % (utc(issued), utc(expires), UTC_RE))
        expect(len(rest) == 1 and re.fullmatch(line, rest[0]), "ministry line %r, want %r"
               % (rest, line))
    tap.check("suspensions: the ministry row names the plugin as shipped (fujitsu-like, s-1, "
              "<2.3.1), the ministry line its sequence, times and count", table_ministry)

    def replay():
        p = ctl("ministry", "apply", dev_list, sock=sock)
        expect_exit(p, 1)
        expect("(SEQUENCE_NOT_NEWER)" in p.stderr, "no SEQUENCE_NOT_NEWER: %s" % shown(p))
        expect("the list has sequence 10; the appliance holds sequence 10" in p.stderr,
               "both sequences not shown: %s" % shown(p))
        older = sign_list(w, "list.yaml", "older-9.json", w.dev_key, sequence=9)
        p = ctl("ministry", "apply", older, sock=sock)
        expect_exit(p, 1, "sequence 9")
        expect("the list has sequence 9; the appliance holds sequence 10" in p.stderr,
               "stderr %r" % p.stderr)
        expect(ministry_sequence(d) == 10, "sequence now %r" % ministry_sequence(d))
    tap.check("ministry apply of the same file again (and of an older list): "
              "SEQUENCE_NOT_NEWER, both sequences shown, exit 1, nothing changed", replay)

    def untrusted():
        rogue = sign_list(w, "list.yaml", "rogue-11.json", k1 + ".key", sequence=11)
        p = ctl("ministry", "apply", rogue, sock=sock)
        expect_exit(p, 1)
        expect("(LIST_SIGNATURE_INVALID)" in p.stderr, "no LIST_SIGNATURE_INVALID: %s"
               % shown(p))
        expect("ministry.keys" in p.stderr, "no hint at ministry.keys: %r" % p.stderr)
        expect(ministry_sequence(d) == 10, "sequence now %r" % ministry_sequence(d))
    tap.check("ministry apply of a list signed by an unconfigured key (from keygen): "
              "LIST_SIGNATURE_INVALID, exit 1, nothing changed", untrusted)

    def malformed():
        junk = w.write("junk.json", '{"payload":"!!","signatures":[]}')
        p = ctl("ministry", "apply", junk, sock=sock)
        expect_exit(p, 1, "bad envelope")
        expect("(LIST_MALFORMED)" in p.stderr and "field: payload" in p.stderr,
               "want LIST_MALFORMED and 'field: payload': %s" % shown(p))
        # Well signed by the configured key, but its payload breaks a rule: named after the
        # signatures verified.
        payload = json.dumps({
            "type": "madoguchi-suspension-list", "sequence": 12,
            "issued_at": utc(issued), "expires_at": utc(expires),
            "suspensions": [{"id": "x", "plugin": "fujitsu-like", "versions": "not-a-range"}]},
            separators=(",", ":")).encode()
        data = w.path("bad-payload.bin")
        with open(data, "wb") as f:
            f.write(payload)
        sig = openssl_sign(w.dev_key, data)
        env = json.dumps({"payload": base64.b64encode(payload).decode(),
                          "signatures": [{"key_id": key_id_of(w.dev_pub), "alg": "ed25519",
                                          "sig": base64.b64encode(sig).decode()}]})
        bad = w.write("bad-payload.json", env)
        p = ctl("ministry", "apply", bad, sock=sock)
        expect_exit(p, 1, "bad payload")
        expect("(LIST_MALFORMED)" in p.stderr and
               "field: suspensions[0].versions" in p.stderr,
               "want LIST_MALFORMED and 'field: suspensions[0].versions': %s" % shown(p))
        expect(ministry_sequence(d) == 10, "sequence now %r" % ministry_sequence(d))
        p = ctl("ministry", "apply", w.path("no-such-list.json"), sock=sock)
        expect_exit(p, 1, "missing file")
        expect("cannot read" in p.stderr, "stderr %r" % p.stderr)
    tap.check("ministry apply of a malformed list: LIST_MALFORMED with the field (payload; "
              "suspensions[0].versions once verified), exit 1; an unreadable file exit 1",
              malformed)

    # ---------------------------------------------------------------- resume refused
    def held():
        p = ctl("resume", "vendor", sock=sock)
        expect_exit(p, 1)
        expect("(SUSPENSION_HELD)" in p.stderr, "no SUSPENSION_HELD: %s" % shown(p))
        expect(re.search(r"vendor stays suspended: held by a ministry suspension since %s, "
                         r"reason: %s" % (UTC_RE, re.escape(R_MINISTRY)), p.stderr),
               "no 'held by a ministry suspension since …, reason: …': %s" % shown(p))
        expect("cannot be lifted locally" in p.stderr, "no 'cannot be lifted locally': %s"
               % shown(p))
        expect(p.stdout == "", "stdout %r" % p.stdout)
        vendor = api_plugin(d, "vendor")
        expect(any(s["source"] == "ministry" for s in vendor["suspensions"]),
               "the ministry suspension is gone: %r" % vendor)
    tap.check("resume vendor (held by the ministry's fujitsu-like entry): exit 1, "
              "SUSPENSION_HELD, says who holds it and that it cannot be lifted locally", held)

    def held_lifts_local():
        p = ctl("suspend", "vendor", "--reason", "ctl check: local on top", sock=sock)
        expect_exit(p, 0, "suspend vendor")
        groups = re.findall(r" \(([^()]*)\)", p.stdout)
        expect(p.stdout.startswith("vendor: suspended (") and p.stdout.endswith(")\n") and
               sorted(groups) == ["*; local, immediate",
                                  "*; ministry, immediate, versions <2.3.1, id s-1"],
               "stdout %r" % p.stdout)
        p = ctl("resume", "vendor", sock=sock)
        expect_exit(p, 1, "resume vendor")
        expect("(SUSPENSION_HELD)" in p.stderr and
               "Done all the same: 7 local suspensions of those types lifted." in p.stderr,
               "stderr %r" % p.stderr)
        expect(local_entries(d, "vendor") == [], "local suspensions of vendor left: %r"
               % local_entries(d, "vendor"))
    tap.check("resume vendor with a local suspension on top of the ministry's: exit 1, yet "
              "the city's own 7 suspensions are lifted and it says so", held_lifts_local)

    def unknown_plugin():
        before = api_suspensions(d)
        for argv in (["suspend", "nosuch", "--reason", "x"], ["resume", "nosuch"]):
            p = ctl(*argv, sock=sock)
            expect_exit(p, 1, " ".join(argv))
            expect("(PLUGIN_NOT_FOUND)" in p.stderr, "%s: %s" % (argv, shown(p)))
        # A ministry entry names the plugin as shipped; it is no instance name.
        p = ctl("suspend", "fujitsu-like", "--reason", "x", sock=sock)
        expect_exit(p, 1, "suspend fujitsu-like")
        expect("(PLUGIN_NOT_FOUND)" in p.stderr, shown(p))
        expect(api_suspensions(d) == before, "suspensions changed")
    tap.check("suspend/resume of an unknown instance (and of a shipped plugin name): exit 1 "
              "with PLUGIN_NOT_FOUND, nothing changed", unknown_plugin)

    def no_reason():
        before = api_suspensions(d)
        for argv in (["suspend", "registry"], ["suspend", "registry", "--reason", ""],
                     ["suspend", "registry", "--certificates", "seal", "--reason"]):
            p = ctl(*argv, sock=sock)
            expect_exit(p, 2, repr(argv))
            expect("--reason" in p.stderr, "%r: stderr %r" % (argv, p.stderr))
        expect(api_suspensions(d) == before, "suspensions changed")
        expect(api_plugin(d, "registry")["state"] == "serving", "registry not serving")
    tap.check("suspend without --reason (or an empty one, or no value): usage error, exit 2, "
              "nothing changed", no_reason)

    def env_socket():
        p = ctl("suspensions", env={"MADOGUCHI_SOCKET": sock})
        expect_exit(p, 0)
        expect("ministry list: sequence 10," in p.stdout, "stdout %r" % p.stdout)
    tap.check("suspensions finds the daemon through MADOGUCHI_SOCKET", env_socket)

    # ---------------------------------------------------------------- newer lists lift
    def newer_lifts():
        w.write("empty.yaml", "suspensions: []\n")
        lst = sign_list(w, "empty.yaml", "empty-13.json", w.dev_key, sequence=13)
        p = ctl("ministry", "apply", lst, sock=sock)
        expect_exit(p, 0)
        expect(p.stdout.startswith("applied suspension list sequence 13: 0 suspension(s) in "
                                   "force, expires "), "stdout %r" % p.stdout)
        expect(api_plugin(d, "vendor")["state"] == "serving", "vendor %r"
               % api_plugin(d, "vendor"))
        p = ctl("resume", "vendor", sock=sock)
        expect_exit(p, 0, "resume vendor")
    tap.check("a newer list without the entry ('suspensions: []', sequence 13) lifts it; "
              "resume vendor then exits 0", newer_lifts)

    def u64_apply():
        t_issued = now_utc() - datetime.timedelta(minutes=5)
        t_expires = now_utc() + datetime.timedelta(days=7)
        lst = sign_list(w, "list.yaml", "max.json", w.dev_key, w.second_key,
                        sequence=U64_MAX, issued_at=utc(t_issued), expires=utc(t_expires))
        p = ctl("ministry", "apply", lst, sock=sock)
        expect_exit(p, 0)
        want = ("applied suspension list sequence %d: 2 suspension(s) in force, expires %s\n"
                % (U64_MAX, utc(t_expires)))
        expect(p.stdout == want, "stdout %r, want %r" % (p.stdout, want))
        q = ctl("suspensions", sock=sock)
        expect_exit(q, 0, "suspensions")
        expect("ministry list: sequence %d, issued %s" % (U64_MAX, utc(t_issued)) in q.stdout,
               "stdout %r" % q.stdout)
        seq = api_suspensions(d)["ministry_list"]["sequence"]
        expect(seq == str(U64_MAX), "GET /v1/suspensions gives sequence %r, want the decimal "
               "string above 2^63-1" % (seq,))
        p = ctl("ministry", "apply", lst, sock=sock)
        expect_exit(p, 1, "again")
        expect("the list has sequence %d; the appliance holds sequence %d" % (U64_MAX, U64_MAX)
               in p.stderr, "stderr %r" % p.stderr)
    tap.check("ministry apply of sequence 2^64-1 (two signatures, one key unconfigured): "
              "applied, shown unsigned by apply, suspensions and the replay refusal",
              u64_apply)


def not_configured(tap, w, sim):
    d = Daemon(config(w, sim, ministry=False), pki_dir=w.pki).start()
    try:
        def refused():
            p = ctl("ministry", "apply", w.path("applied-10.json"), sock=d.admin_sock)
            expect_exit(p, 1)
            expect("(MINISTRY_NOT_CONFIGURED)" in p.stderr, shown(p))
        tap.check("ministry apply to a daemon without a ministry section: "
                  "MINISTRY_NOT_CONFIGURED, exit 1", refused)

        def local_regardless():
            p = ctl("suspend", "registry", "--certificates", "seal", "--reason", R_DRAIN,
                    sock=d.admin_sock)
            expect_exit(p, 0, "suspend")
            expect(p.stdout == "registry: suspended (seal; local, immediate)\n", shown(p))
            p = ctl("suspensions", sock=d.admin_sock)
            expect_exit(p, 0, "suspensions")
            rows, rest = table(p.stdout)
            expect(len(rows) == 1 and rows[0]["CERTIFICATES"] == "seal", "rows %r" % rows)
            expect(rest == ["ministry list: none applied yet"], "after the table: %r" % rest)
            p = ctl("resume", "registry", sock=d.admin_sock)
            expect_exit(p, 0, "resume")
            expect(p.stdout == "registry: serving; lifted 1 local suspension\n", shown(p))
        tap.check("without a ministry section local suspend / suspensions / resume still work",
                  local_regardless)
    finally:
        harness.stop_point(tap, d, "the daemon without a ministry section exits 0 on SIGTERM")


def unreachable(tap, w):
    def exit3():
        bad = w.path("no-such.sock")
        cmds = (["suspend", "registry", "--reason", "x"], ["resume", "registry"],
                ["suspensions"], ["suspensions", "--json"],
                ["ministry", "apply", w.path("applied-10.json")])
        for argv in cmds:
            p = ctl(*argv, sock=bad)
            expect_exit(p, 3, " ".join(argv))
            expect(p.stderr.strip(), "%s: no message on stderr" % argv)
    tap.check("suspend, resume, suspensions (--json), ministry apply against a missing socket "
              "exit 3 with a message", exit3)


# ==================================================================================== main

def main(tap):
    t0 = time.monotonic()
    w = Work()
    sim = None
    d = None
    try:
        tap.diag("fixture (demo city of %d, dev PKI) in %.1f s" % (RESIDENTS,
                                                                  time.monotonic() - t0))
        k1 = offline_keygen(tap, w)
        offline_sign(tap, w, k1)
        sim = harness.VendorSim(w.registry)
        d = Daemon(config(w, sim), pki_dir=w.pki).start()
        try:
            online(tap, w, d, k1)
        finally:
            harness.stop_point(tap, d, "daemon exits 0 on SIGTERM")
        not_configured(tap, w, sim)
        unreachable(tap, w)
    finally:
        if sim is not None:
            sim.cleanup()
        findings = CTL_FINDINGS[:]
        for dm in Daemon._all:
            findings += dm.sanitizer_findings()
        tap.ok(not findings, "no sanitizer reports from the daemons or madoguchictl%s"
               % ("" if SANITIZERS else " (sanitizers not enabled)"), "\n".join(findings[:20]))
        w.cleanup()
        tap.diag("%.1f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    harness.run(main)
