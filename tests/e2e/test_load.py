#!/usr/bin/env python3
"""test_load.py: the store listener keeps one TLS connection alive for many requests and
serves many connections at once (the default max_connections, 1024, admits 200)."""

import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, Http, expect  # noqa: E402

ACCEPTED = ("madoguchi_connections_accepted_total", {"listener": "store"})


def rss_kib(pid):
    """Resident set size of pid in KiB, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main(tap):
    d = Daemon().start()
    try:
        run_load(tap, d)
    finally:
        harness.stop_point(tap, d, "daemon exits 0 on SIGTERM after the load")
    harness.sanitizer_point(tap, d)


def run_load(tap, d):
    def thousand_on_one():
        before = d.metric(*ACCEPTED)
        bad = []
        with d.store(timeout=10) as h:
            for i in range(1000):
                r = h.request("GET", "/healthz")
                if r.status != 200 or r.body != b"ok\n" or r.closes():
                    bad.append((i, r.status, r.header("connection")))
                    break
        after = d.metric(*ACCEPTED)
        expect(not bad, "request failed: %r" % bad)
        expect(before is not None and after is not None, "accepted counter missing")
        expect(after - before == 1, "accepted store connections grew by %r, want exactly 1"
               % (after - before))
    tap.check("1000 requests over one keep-alive TLS connection all answer 200 on exactly one"
              " accepted connection", thousand_on_one)

    conns = []
    try:
        def open200():
            t0 = time.monotonic()
            for i in range(200):
                conns.append(d.store(timeout=15))
            expect(len(conns) == 200, "opened %d" % len(conns))
            expect(time.monotonic() - t0 < 30, "opening took too long")
        tap.check("200 concurrent TLS connections are opened (handshakes complete)", open200)

        def all200():
            for h in conns:
                h.send(Http.build("GET", "/healthz"))
            bad = []
            for i, h in enumerate(conns):
                try:
                    r = h.read_response()
                    if r.status != 200:
                        bad.append((i, r.status))
                except Exception as e:
                    bad.append((i, repr(e)))
            expect(not bad, "%d of 200 failed, first: %r" % (len(bad), bad[:5]))
        tap.check("each of the 200 concurrent connections then gets 200", all200)

        def open_gauge():
            v = d.metric("madoguchi_connections_open", {"listener": "store"})
            expect(v == 200, "madoguchi_connections_open{listener=store} = %r, want 200" % v)
        tap.check("madoguchi_connections_open shows the 200 open store connections", open_gauge)
    finally:
        for h in conns:
            h.close()

    def curl_reuse():
        url = "https://localhost:%d/healthz" % d.store_port
        args = ["curl", "-sS", "--max-time", "30", "--cacert", d.store_ca, "--cert",
                d.center_cert, "--key", d.center_key, "-w", "%{http_code} %{num_connects}\\n"]
        for _ in range(100):
            args += ["-o", "/dev/null", url]
        p = subprocess.run(args, capture_output=True, text=True, timeout=60)
        expect(p.returncode == 0, "curl rc=%d stderr=%r" % (p.returncode, p.stderr[-500:]))
        rows = [line.split() for line in p.stdout.splitlines() if line.strip()]
        expect(len(rows) == 100, "got %d result lines" % len(rows))
        codes = {r[0] for r in rows}
        expect(codes == {"200"}, "status codes %r" % codes)
        connects = sum(int(r[1]) for r in rows)
        expect(connects == 1, "sum of num_connects is %d, want 1" % connects)
    tap.check("curl with 100 URLs in one invocation reuses one connection (num_connects sums"
              " to 1)", curl_reuse)

    def pipelining_client_that_does_not_read():
        # The admin socket runs the same connection code as the store listener, without TLS,
        # so one thread can send while another reads.  Requests alternate between two routes
        # with different bodies, so the order of the answers is checked too.
        total = 50000
        reqs = [b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
                b"GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n"]
        payload = b"".join(reqs[i % 2] for i in range(total))
        rss_before = rss_kib(d.proc.pid)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(d.admin_sock)
        sent = [0]

        def sender():
            view = memoryview(payload)
            try:
                while sent[0] < len(payload):
                    sent[0] += sock.send(view[sent[0]:sent[0] + 65536])
            except OSError:
                pass
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        time.sleep(1.5)
        stalled_at = sent[0]
        rss_during = rss_kib(d.proc.pid)
        data = bytearray()
        pos = 0
        answers = 0
        order_ok = True
        head = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r]*\r\n((?:[^\r]+\r\n)*)\r\n")
        deadline = time.monotonic() + 60
        while answers < total and time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
            while True:
                m = head.match(data, pos)
                if not m:
                    break
                n = int(re.search(rb"Content-Length: (\d+)", m.group(2)).group(1))
                if len(data) < m.end() + n:
                    break
                body = bytes(data[m.end():m.end() + n])
                want = b"ok\n" if answers % 2 == 0 else b"ready\n"
                if m.group(1) != b"200" or body != want:
                    order_ok = False
                answers += 1
                pos = m.end() + n
            if pos > 1 << 20:
                del data[:pos]
                pos = 0
        t.join(10)
        sock.close()
        expect(stalled_at < len(payload), "the daemon read all %d bytes while no answer was "
               "read: nothing held the client back" % len(payload))
        expect(answers == total, "got %d answers of %d" % (answers, total))
        expect(order_ok, "answers out of order or wrong")
        if not harness.SANITIZERS and rss_before and rss_during:
            grew = rss_during - rss_before
            expect(grew < 16 * 1024, "RSS grew by %d KiB while the client did not read" % grew)
    tap.check("a client pipelining 50,000 requests without reading is held back (the daemon "
              "stops reading; memory stays bounded) and then gets every answer in order",
              pipelining_client_that_does_not_read)

    def healthy_after():
        with d.store() as h:
            r = h.request("GET", "/healthz")
            expect(r.status == 200, "answer %r" % r)
    tap.check("the daemon still serves after the load", healthy_after)


if __name__ == "__main__":
    harness.run(main)
