"""harness.py: shared helpers for the madoguchi end-to-end tests.

Each tests/e2e/test_*.py is a standalone script that starts one or more real madoguchid
processes in temporary directories and prints TAP.  This module provides:

  Tap      a TAP reporter: ok()/check() record test points, done() prints the plan and exits 0
           (failures are counted by the TAP driver); run() turns a crash into "Bail out!".
  Daemon   a madoguchid in a temp dir with a dev PKI (scripts/dev-pki), a generated YAML config,
           its stderr JSON log, ports from the "listening" lines, TLS contexts for the centre
           client, stop()/signal(), and sanitizer checks of its log (MDG_SANITIZERS=yes).
  Http     a minimal HTTP/1.1 client over any connected socket (keep-alive, pipelining).

Environment: MDG_SRCDIR (default: the repository root above this file), MDG_BUILDDIR
(default: MDG_SRCDIR/build), MDG_SANITIZERS ("yes" when the daemon is built with ASan/UBSan).
Every network call is on loopback with a timeout, so no test can hang.
"""

import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

SRCDIR = os.environ.get("MDG_SRCDIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILDDIR = os.environ.get("MDG_BUILDDIR") or os.path.join(SRCDIR, "build")
DAEMON = os.path.join(BUILDDIR, "core", "madoguchid")
CTL = os.path.join(BUILDDIR, "ctl", "madoguchictl")
DEV_PKI = os.path.join(SRCDIR, "scripts", "dev-pki")
VENDOR_SIM = os.environ.get("MDG_VENDOR_SIM") or os.path.join(BUILDDIR, "tools", "vendor-sim",
                                                              "madoguchi-vendor-sim")
SANITIZERS = os.environ.get("MDG_SANITIZERS", "no") == "yes"
# ASan keeps freed memory in a quarantine, to catch a use after free, before reusing it; a
# daemon's resident size under ASan includes up to this much of it.  Set explicitly (it is
# ASan's default on x86-64) so that tests bounding memory can allow for it.
ASAN_QUARANTINE_MB = 256
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
PLUGINS = os.environ.get("MDG_PLUGINS") or os.path.join(BUILDDIR, "plugins", ".libs")
TEST_PLUGINS = os.environ.get("MDG_TEST_PLUGINS") or os.path.join(BUILDDIR, "tests", "plugins",
                                                                  ".libs")

STARTUP_TIMEOUT = 10.0
IO_TIMEOUT = 5.0


# --------------------------------------------------------------------------------------- TAP

class Tap:
    """TAP reporter; the plan is printed at the end (done())."""

    def __init__(self):
        self.count = 0
        self.failed = 0

    def ok(self, cond, desc, diag=None):
        self.count += 1
        desc = desc.replace("#", "\\#")
        if cond:
            print("ok %d - %s" % (self.count, desc), flush=True)
        else:
            self.failed += 1
            print("not ok %d - %s" % (self.count, desc), flush=True)
            if diag:
                self.diag(diag)
        return bool(cond)

    def skip(self, desc, reason):
        """A test point that could not run here (TAP "# SKIP"): counted, never a failure."""
        self.count += 1
        print("ok %d - %s # SKIP %s" % (self.count, desc.replace("#", "\\#"),
                                         reason.replace("\n", " ")), flush=True)

    def diag(self, text):
        for line in str(text).splitlines() or [""]:
            print("# " + line, flush=True)

    def check(self, desc, fn, *args, **kw):
        """Run fn(); a test point passes when fn returns without raising.  fn may raise
        AssertionError (or anything else) with a message that becomes the diagnostic."""
        try:
            fn(*args, **kw)
        except Exception as e:  # a failed expectation, not a crash of the script
            return self.ok(False, desc, "%s: %s" % (type(e).__name__, e))
        return self.ok(True, desc)

    def done(self):
        print("1..%d" % self.count, flush=True)
        sys.exit(0)


def run(main):
    """Run main(tap); on an unexpected exception print "Bail out!" and exit 1."""
    tap = Tap()
    try:
        main(tap)
    except SystemExit:
        raise
    except BaseException as e:
        tap.diag(traceback.format_exc())
        print("Bail out! %s: %s" % (type(e).__name__, e), flush=True)
        Daemon.cleanup_all()
        sys.exit(1)
    Daemon.cleanup_all(tap)
    tap.done()


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


# -------------------------------------------------------------------------------------- YAML

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _yaml_scalar(v):
    if isinstance(v, (list, tuple)):
        # A flow sequence of scalars: ["141003"], ["12-29..01-03", "05-03"].
        return "[" + ", ".join(_yaml_scalar(x) if isinstance(x, (bool, int))
                               else json.dumps(str(x)) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    s = str(v)
    # Sizes and durations ("4KiB", "10s") are written plain, like a person would.
    if re.match(r"^[0-9]+(ms|s|m|h|KiB|MiB|GiB)$", s) or re.match(r"^\d+(\.\d+){3}$", s):
        return s
    if _PLAIN.match(s) and s.lower() not in _RESERVED:
        return s
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    """Block-style YAML for nested dicts of scalars and lists of scalars (the shape of
    madoguchi.yaml)."""
    out = []
    pad = "  " * indent
    for k, v in obj.items():
        if isinstance(v, dict):
            out.append("%s%s:\n" % (pad, k))
            out.append(to_yaml(v, indent + 1))
        else:
            out.append("%s%s: %s\n" % (pad, k, _yaml_scalar(v)))
    return "".join(out)


def default_config():
    return {
        "data_dir": "data",
        "listeners": {
            "store": {
                "address": "127.0.0.1",
                "port": 0,
                "tls": {
                    "certificate": "pki/server.pem",
                    "key": "pki/server.key",
                    "client_ca": "pki/store-ca.pem",
                    "min_version": "1.2",
                },
            },
            "admin": {"unix": "admin.sock"},
            "metrics": {"address": "127.0.0.1", "port": 0},
        },
        "log": {"level": "info", "access": True},
        "shutdown": {"drain_timeout": "10s"},
    }


def merge(base, over):
    """Deep-merge dict over into base (in place); a value None deletes the key."""
    for k, v in over.items():
        if v is None:
            base.pop(k, None)
        elif isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


def make_pki(directory, force=False, ministry=()):
    """scripts/dev-pki into directory; ministry names dev ministry keys to make too."""
    args = [DEV_PKI] + (["--force"] if force else [])
    for name in ministry:
        args += ["--ministry", name]
    args.append(directory)
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("dev-pki failed (%d): %s" % (p.returncode, p.stderr))


# ------------------------------------------------------------------------------------ Daemon

class Daemon:
    """One madoguchid in its own temporary directory."""

    _all = []

    def __init__(self, config=None, pki=True, pki_dir=None, wrapper=None):
        """pki: make a dev PKI in DIR/pki; pki_dir: use that existing PKI instead (linked as
        DIR/pki, so several daemons of one test share its cards); wrapper: a command the
        daemon runs under, e.g. ["valgrind", "--log-file=…"] (every start, restarts too)."""
        self.wrapper = list(wrapper or [])
        self.dir = tempfile.mkdtemp(prefix="mdg-e2e-")
        self.pki = os.path.join(self.dir, "pki")
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        if pki_dir is not None:
            os.symlink(os.path.abspath(pki_dir), self.pki)
        elif pki:
            make_pki(self.pki)
        self.config = merge(default_config(), config or {})
        self.config_path = os.path.join(self.dir, "madoguchi.yaml")
        self.write_config()
        self.proc = None
        self.log_path = None
        self.store_port = self.metrics_port = self.admin_sock = None
        self.exit_code = None
        self.running_at_stop = None
        self._logs_seen = []  # every stderr log path of this daemon's runs
        Daemon._all.append(self)

    # paths
    def path(self, name):
        return os.path.join(self.dir, name)

    @property
    def center_cert(self):
        return os.path.join(self.pki, "center.pem")

    @property
    def center_key(self):
        return os.path.join(self.pki, "center.key")

    @property
    def store_ca(self):
        return os.path.join(self.pki, "store-ca.pem")

    def write_config(self, text=None):
        with open(self.config_path, "w") as f:
            f.write(text if text is not None else to_yaml(self.config))

    # process
    def env(self):
        env = dict(os.environ)
        if SANITIZERS:
            env["ASAN_OPTIONS"] = ("detect_leaks=1:abort_on_error=0:quarantine_size_mb=%d"
                                   % ASAN_QUARANTINE_MB)
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        return env

    def start(self, wait=True, args=None):
        """Start madoguchid; with wait, block until the listening/started lines appear."""
        n = len(self._logs_seen)
        self.log_path = self.path("stderr-%d.log" % n)
        self._logs_seen.append(self.log_path)
        self._log_file = open(self.log_path, "wb")
        argv = self.wrapper + [DAEMON] + (args if args is not None
                                          else ["--config", self.config_path])
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=self._log_file, cwd=self.dir, env=self.env())
        self.exit_code = None
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=STARTUP_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            store = metrics = admin = started = None
            for e in self.logs():
                if e.get("event") == "listening":
                    if e.get("listener") == "store":
                        store = e.get("port")
                    elif e.get("listener") == "metrics":
                        metrics = e.get("port")
                    elif e.get("listener") == "admin":
                        admin = e.get("path")
                elif e.get("event") == "started":
                    started = True
            want_metrics = "metrics" in self.config.get("listeners", {})
            if store and admin and started and (metrics or not want_metrics):
                self.store_port, self.metrics_port, self.admin_sock = store, metrics, admin
                return
            if self.proc.poll() is not None:
                raise RuntimeError("madoguchid exited with %s before it was ready; log:\n%s"
                                   % (self.proc.returncode, self.log_text()))
            time.sleep(0.02)
        raise RuntimeError("madoguchid not ready after %.0fs; log:\n%s"
                           % (timeout, self.log_text()))

    def wait_exit(self, timeout=10.0):
        """Wait for the process to exit on its own; returns the exit code (None on timeout)."""
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._log_file.close()
        return self.exit_code

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=10.0):
        """SIGTERM, wait up to timeout, then SIGKILL.  Returns the exit code (negative when
        killed by a signal)."""
        if self.proc is None:
            return None
        self.running_at_stop = self.proc.poll() is None
        if self.running_at_stop:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.exit_code = self.proc.returncode
        if not self._log_file.closed:
            self._log_file.close()
        return self.exit_code

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if os.environ.get("MDG_KEEP_TMP") != "yes":
            shutil.rmtree(self.dir, ignore_errors=True)

    @classmethod
    def cleanup_all(cls, tap=None):
        for n, d in enumerate(cls._all):
            if tap is not None and tap.failed:
                d.dump_log(tap, n)
            d.cleanup()
        cls._all = []

    def dump_log(self, tap, n, limit=40):
        """Diagnostics after a failure: the daemon's non-access log lines (all its runs)."""
        lines = [l for l in self.log_text(all_runs=True).splitlines()
                 if '"event":"access"' not in l]
        tap.diag("daemon #%d (%s) log, %d non-access lines%s:" % (
            n, self.dir, len(lines), ", last %d" % limit if len(lines) > limit else ""))
        for l in lines[-limit:]:
            tap.diag("  " + l)

    # logs
    def log_text(self, all_runs=False):
        paths = self._logs_seen if all_runs else [self.log_path]
        out = []
        for p in paths:
            if p and os.path.exists(p):
                with open(p, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
        return "".join(out)

    def logs(self):
        """The JSON log lines of the current run, parsed (non-JSON lines are skipped)."""
        out = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def events(self, name):
        return [e for e in self.logs() if e.get("event") == name]

    def wait_event(self, name, count=1, timeout=5.0, pred=None):
        """Wait until at least count log lines with event name (matching pred) exist."""
        deadline = time.monotonic() + timeout
        while True:
            evs = [e for e in self.events(name) if pred is None or pred(e)]
            if len(evs) >= count:
                return evs[count - 1]
            if time.monotonic() >= deadline:
                raise AssertionError("no %r log line (#%d) within %.1fs" % (name, count, timeout))
            time.sleep(0.02)

    def sanitizer_findings(self):
        text = self.log_text(all_runs=True)
        return [line for line in text.splitlines() if any(m in line for m in SANITIZER_MARKERS)]

    # TLS
    def client_context(self, cert=None, key=None, ca=None, min_version=None, max_version=None,
                       client_cert=True):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(ca or self.store_ca)
        if client_cert:
            ctx.load_cert_chain(cert or self.center_cert, key or self.center_key)
        if min_version is not None:
            ctx.minimum_version = min_version
        if max_version is not None:
            ctx.maximum_version = max_version
        return ctx

    def connect_store(self, ctx=None, timeout=IO_TIMEOUT):
        """A TLS connection to the store listener, handshake done (and, for TLS 1.3, the
        server's verdict on the client certificate is not yet known)."""
        ctx = ctx or self.client_context()
        raw = socket.create_connection(("127.0.0.1", self.store_port), timeout=timeout)
        try:
            s = ctx.wrap_socket(raw, server_hostname="localhost")
        except BaseException:
            raw.close()
            raise
        s.settimeout(timeout)
        return s

    def store(self, ctx=None, timeout=IO_TIMEOUT):
        return Http(self.connect_store(ctx, timeout))

    def metrics(self, timeout=IO_TIMEOUT):
        return Http(socket.create_connection(("127.0.0.1", self.metrics_port), timeout=timeout))

    def admin(self, timeout=IO_TIMEOUT):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.admin_sock)
        return Http(s)

    def admin_get(self, path):
        with self.admin() as h:
            return h.request("GET", path, headers={"Connection": "close"})

    def metrics_text(self):
        with self.metrics() as h:
            r = h.request("GET", "/metrics", headers={"Connection": "close"})
        expect(r.status == 200, "GET /metrics answered %d" % r.status)
        return r.text()

    def metric(self, name, labels=None):
        return metric_value(self.metrics_text(), name, labels)

    def run_ctl(self, *args, env=None, timeout=10):
        e = dict(os.environ)
        e.pop("MADOGUCHI_SOCKET", None)
        if env:
            e.update(env)
        return subprocess.run([CTL] + list(args), capture_output=True, text=True, env=e,
                              timeout=timeout)


def metric_sum(text, name, labels=None):
    """The sum of every series of metric name in Prometheus text whose labels include labels
    (0 when there is none)."""
    total = 0.0
    labels = labels or {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                               m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
    return total


def metric_value(text, name, labels=None):
    """Value of the series name{labels} in Prometheus text (labels must match exactly the
    given subset); None when absent."""
    labels = labels or {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None


def stop_point(tap, d, what="daemon exits 0 on SIGTERM"):
    """Stop d and make a test point of it: it was still running (did not die or stop on its
    own earlier), exits 0, and logged exactly one signal line."""
    rc = d.stop()
    sigs = d.events("signal")
    return tap.ok(d.running_at_stop and rc == 0 and len(sigs) == 1, what,
                  "running before SIGTERM: %r, exit code %r, signal lines %r"
                  % (d.running_at_stop, rc, sigs))


def sanitizer_point(tap, *daemons):
    """The test point every file ends with: no sanitizer report in any daemon's stderr."""
    findings = []
    for d in daemons:
        findings += d.sanitizer_findings()
    tap.ok(not findings,
           "no sanitizer reports in the daemon logs%s" % ("" if SANITIZERS else
                                                          " (sanitizers not enabled)"),
           "\n".join(findings[:20]))


# -------------------------------------------------------------------------------------- HTTP

class Response:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case name -> value (last wins)
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def closes(self):
        return "close" in (self.header("connection") or "").lower()

    def __repr__(self):
        return "<Response %d %s %r>" % (self.status, self.headers, self.body[:200])


class Closed(Exception):
    """The peer closed the connection before a complete response."""


class Http:
    """Minimal HTTP/1.1 client over a connected (TLS or plain) socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    @staticmethod
    def build(method, path, headers=None, body=b"", host="localhost"):
        h = {"Host": host}
        if body:
            h["Content-Length"] = str(len(body))
        h.update(headers or {})
        lines = ["%s %s HTTP/1.1" % (method, path)] + ["%s: %s" % kv for kv in h.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def request(self, method, path, headers=None, body=b""):
        self.send(self.build(method, path, headers, body))
        return self.read_response()

    def _fill(self):
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError):
            data = b""
        except ssl.SSLError as e:
            if "EOF" in str(e) or "ALERT" in str(e).upper():
                data = b""
            else:
                raise
        if not data:
            raise Closed("connection closed by peer (%d bytes unparsed)" % len(self.buf))
        self.buf += data

    def read_response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"^HTTP/1\.[01] (\d{3}) ?(.*)$", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked()
        elif "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            body = self.buf
            self.buf = b""
            try:
                while True:
                    self._fill()
            except Closed:
                body += self.buf
                self.buf = b""
        return Response(int(m.group(1)), m.group(2), headers, body, head)

    def _read_chunked(self):
        body = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, self.buf = self.buf.split(b"\r\n", 1)
            n = int(line.split(b";")[0], 16)
            while len(self.buf) < n + 2:
                self._fill()
            body += self.buf[:n]
            self.buf = self.buf[n + 2:]
            if n == 0:
                return body

    def wait_closed(self, timeout):
        """Read until the peer closes (EOF or reset); returns (closed, seconds, extra_bytes).
        Data received meanwhile is kept in extra_bytes (e.g. a 408 answer)."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        extra = self.buf
        self.buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, time.monotonic() - t0, extra
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False, time.monotonic() - t0, extra
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                return True, time.monotonic() - t0, extra
            if not data:
                return True, time.monotonic() - t0, extra
            extra += data


PROBLEMS = []  # (status, document) of every problem checked with request_id=False


def problem_ok(resp, status, code=None, request_id=True):
    """Assert resp is an RFC 9457 problem with the members DESIGN §4 requires (type, title,
    status, code, request_id).  With request_id=False that member is not checked here but the
    document is recorded in PROBLEMS, so a separate test point can report on it."""
    expect(resp.status == status, "status %d, want %d; %r" % (resp.status, status, resp))
    ct = resp.header("content-type", "")
    expect(ct.split(";")[0].strip() == "application/problem+json",
           "Content-Type %r, want application/problem+json" % ct)
    doc = resp.json()
    members = ("type", "title", "status", "code") + (("request_id",) if request_id else ())
    for member in members:
        expect(member in doc, "problem lacks member %r: %r" % (member, doc))
    if not request_id:
        PROBLEMS.append((status, doc))
    expect(doc["status"] == status, "problem status %r, want %d" % (doc["status"], status))
    if code is not None:
        expect(doc["code"] == code, "problem code %r, want %r" % (doc["code"], code))
    return doc


def peer_closed_quickly(sock, timeout):
    """True when a socket becomes readable with EOF/reset within timeout."""
    r, _, _ = select.select([sock], [], [], timeout)
    if not r:
        return False
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


class Guard:
    """Test points against one daemon.  A point during which the daemon dies fails, naming
    the exit status, and the daemon is started again on its data_dir, so that the points
    after it still test their own behaviour instead of failing with "connection refused"."""

    def __init__(self, tap, d, clients=()):
        self.tap = tap
        self.d = d
        self.clients = list(clients)

    def probe(self):
        """None while the daemon answers on its admin socket, else what happened to it."""
        if self.d.running():
            try:
                with self.d.admin(timeout=3) as h:
                    r = h.request("GET", "/healthz", headers={"Connection": "close"})
                if r.status == 200:
                    return None
            except (OSError, Closed):
                pass
        try:
            code = self.d.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            return "running, but its admin socket does not answer"
        name = ""
        if code < 0:
            try:
                name = " (%s)" % signal.Signals(-code).name
            except ValueError:
                pass
        return "exit status %d%s" % (code, name)

    def check(self, desc, fn):
        state = {}

        def run():
            err = None
            try:
                fn()
            except Exception as e:  # noqa: BLE001  (re-raised below)
                err = e
            died = self.probe()
            state["died"] = died
            if died is not None:
                raise AssertionError("madoguchid died during this point: %s%s"
                                     % (died, "; then: %s" % err if err else ""))
            if err is not None:
                raise err
        ok = self.tap.check(desc, run)
        if state.get("died") is not None:
            for c in self.clients:
                c.close()
            if self.d.running():
                self.d.proc.kill()
            self.d.proc.wait(timeout=10)
            if not self.d._log_file.closed:
                self.d._log_file.close()
            self.d.start()
            self.tap.diag("madoguchid started again on its data_dir after dying")
        return ok


class VendorSim:
    """madoguchi-vendor-sim (fujitsu-like's backend) on a registry file, with a control
    socket for its fault modes; .endpoint is host:port for the plugin's config."""

    def __init__(self, registry, args=(), port=0, stderr_path=None):
        """stderr_path: append the simulator's stderr there (default: discarded)."""
        self.registry = registry
        self.stderr_path = stderr_path
        self.control_path = os.path.join(tempfile.mkdtemp(prefix="mdg-sim-"), "control.sock")
        self.args = list(args)
        self.proc = None
        self.start(port)

    def start(self, port=0):
        if os.path.exists(self.control_path):
            os.unlink(self.control_path)
        err = open(self.stderr_path, "ab") if self.stderr_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [VENDOR_SIM, "--registry", self.registry, "--listen", "127.0.0.1:%d" % port,
                 "--control", self.control_path] + self.args,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True)
        finally:
            if self.stderr_path:
                err.close()
        line = self.proc.stdout.readline().strip()
        expect(line.startswith("listening 127.0.0.1:"), "vendor simulator said %r" % line)
        self.endpoint = line.split()[1]
        self.port = int(self.endpoint.rsplit(":", 1)[1])

    def control(self, command):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(IO_TIMEOUT)
        try:
            s.connect(self.control_path)
            s.sendall((command + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        answer = data.decode().strip()
        expect(answer.startswith("ok"), "simulator control %r answered %r" % (command, answer))
        return answer

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(os.path.dirname(self.control_path), ignore_errors=True)


def plugin_dir_with(*files):
    """A private plugin_dir holding copies of the named .so files (from the shipped plugins or
    the test plugins), so one daemon can load both kinds (plugin_dir refuses files outside
    it).  The caller removes it."""
    tmp = tempfile.mkdtemp(prefix="mdg-plugins-")
    for name in files:
        for base in (PLUGINS, TEST_PLUGINS):
            src = os.path.join(base, name)
            if os.path.exists(src):
                shutil.copy(src, os.path.join(tmp, name))
                os.chmod(os.path.join(tmp, name), 0o755)
                break
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileNotFoundError("%s in neither %s nor %s" % (name, PLUGINS, TEST_PLUGINS))
    return tmp


def fill_disk(path):
    """Writes zeros to the file path until its file system has no byte left (1 MiB writes,
    then 4 KiB, then 512 bytes)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 512):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
