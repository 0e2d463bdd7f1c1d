#!/usr/bin/env python3
"""test_http_limits.py: the store listener enforces its configured limits (header and body
size, header/body/idle timeouts, requests per connection, connections at once), answers
pipelined requests in order, and refuses malformed requests with problem+json (DESIGN §4, §9)."""

import os
import socket
import ssl
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, Http, expect, problem_ok  # noqa: E402

LIMITS = {
    "max_header_bytes": "4KiB",
    "max_body_bytes": "1KiB",
    "header_timeout": "1s",
    "body_timeout": "1s",
    "idle_timeout": "2s",
    "max_requests_per_connection": 5,
}


def expect_closed(h, timeout, what="connection"):
    closed, secs, extra = h.wait_closed(timeout)
    expect(closed, "%s still open after %.1fs (received %r)" % (what, secs, extra[:200]))
    return secs, extra


def main(tap):
    d = Daemon({"listeners": {"store": {"limits": dict(LIMITS)}}}).start()
    try:
        run_limits(tap, d)
    finally:
        harness.stop_point(tap, d, "daemon exits 0 on SIGTERM")

    d2 = Daemon({"listeners": {"store": {"limits": {"max_connections": 20}}}}).start()
    try:
        run_max_connections(tap, d2)
    finally:
        d2.stop()
    harness.sanitizer_point(tap, d, d2)


def run_limits(tap, d):
    def headers_too_large():
        with d.store() as h:
            r = h.request("GET", "/healthz", headers={"X-Filler": "a" * 5000})
            problem_ok(r, 431, "HEADERS_TOO_LARGE", request_id=False)
            expect_closed(h, 3)
    tap.check("headers over max_header_bytes answer 431 problem+json and close the connection",
              headers_too_large)

    def headers_just_under():
        with d.store() as h:
            r = h.request("GET", "/healthz", headers={"X-Filler": "a" * 3000})
            expect(r.status == 200, "answer %r" % r)
    tap.check("headers under max_header_bytes are served (200)", headers_just_under)

    def body_too_large_early():
        with d.store() as h:
            # Headers only: the 413 must come without waiting for the body (body_timeout is 1s,
            # so waiting would produce a 408 instead).
            t0 = time.monotonic()
            h.send(b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
                   b"\r\nContent-Length: 2048\r\n\r\n")
            r = h.read_response()
            secs = time.monotonic() - t0
            problem_ok(r, 413, "BODY_TOO_LARGE", request_id=False)
            expect(secs < 0.9, "413 came after %.2fs, not before the body" % secs)
    tap.check("Content-Length over max_body_bytes answers 413 BODY_TOO_LARGE before the body is"
              " sent", body_too_large_early)

    def body_at_limit():
        with d.store() as h:
            r = h.request("POST", "/healthz", body=b"x" * 1024)
            problem_ok(r, 405, "METHOD_NOT_ALLOWED", request_id=False)
    tap.check("a body of exactly max_body_bytes is read (405 on POST /healthz, not 413)",
              body_at_limit)

    def chunked_too_large():
        with d.store() as h:
            chunk = b"200\r\n" + b"y" * 512 + b"\r\n"
            h.send(b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                   b"\r\n" + chunk * 4 + b"0\r\n\r\n")
            r = h.read_response()
            problem_ok(r, 413, "BODY_TOO_LARGE", request_id=False)
    tap.check("a chunked body over max_body_bytes answers 413 BODY_TOO_LARGE", chunked_too_large)

    def slow_loris():
        with d.store() as h:
            req = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"z" * 200
            t0 = time.monotonic()
            got = b""
            closed = False
            for i in range(len(req)):
                try:
                    h.sock.sendall(req[i:i + 1])
                except (OSError, ssl.SSLError):
                    closed = True
                    break
                c, _, extra = h.wait_closed(0.2)
                got += extra
                if c:
                    closed = True
                    break
                if time.monotonic() - t0 > 5:
                    break
            secs = time.monotonic() - t0
            expect(closed, "still open after %.1fs of one byte per 200 ms" % secs)
            expect(secs <= 2.0, "cut off after %.2fs, want <= header_timeout + 1s = 2s" % secs)
            if got:
                r = Http(None)
                r.buf = got
                resp = r.read_response()
                problem_ok(resp, 408, "REQUEST_TIMEOUT", request_id=False)
    tap.check("a slow-loris client (one header byte per 200 ms) is cut off within"
              " header_timeout + 1s", slow_loris)

    def body_stall():
        with d.store() as h:
            h.send(b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n"
                   + b"b" * 10)
            secs, extra = expect_closed(h, 4)
            expect(secs <= 2.0, "cut after %.2fs, want <= body_timeout + 1s" % secs)
            expect(secs >= 0.5, "cut after only %.2fs, body_timeout is 1s" % secs)
            if extra:
                r = Http(None)
                r.buf = extra
                problem_ok(r.read_response(), 408, "REQUEST_TIMEOUT", request_id=False)
    tap.check("a client that stalls its body is cut at body_timeout", body_stall)

    def idle():
        with d.store() as h:
            r = h.request("GET", "/healthz")
            expect(r.status == 200, "answer %r" % r)
            secs, extra = expect_closed(h, 5, "idle keep-alive connection")
            expect(1.5 <= secs <= 3.5, "closed after %.2fs idle, want about 2s" % secs)
            expect(not extra, "unexpected bytes on the idle connection: %r" % extra[:200])
    tap.check("an idle keep-alive connection is closed after idle_timeout", idle)

    def idle_counts_from_the_last_answer():
        # Each request arrives in one read and its answer is written at once: the idle timer
        # must still start again after every answer, not run from the first one.
        with d.store() as h:
            for i in range(4):
                if i:
                    time.sleep(0.8)
                try:
                    r = h.request("GET", "/healthz")
                except Exception as e:  # noqa: BLE001  (a close is the failure)
                    raise AssertionError("request %d (%.1f s after the first answer): %s"
                                         % (i + 1, 0.8 * i, e))
                expect(r.status == 200 and not r.closes(), "request %d: %r" % (i + 1, r))
            secs, _ = expect_closed(h, 5, "keep-alive connection after its last answer")
            expect(1.5 <= secs <= 3.5, "closed %.2fs after the last answer, want about 2s"
                   % secs)
    tap.check("a keep-alive connection in use (a request every 0.8 s for 2.4 s, idle_timeout "
              "2 s) is not closed; idle time counts from the last answer",
              idle_counts_from_the_last_answer)

    def max_requests():
        with d.store() as h:
            for i in range(1, 6):
                r = h.request("GET", "/healthz")
                expect(r.status == 200, "request %d: %r" % (i, r))
                if i < 5:
                    expect(not r.closes(), "request %d already carries Connection: close" % i)
            expect(r.closes(), "5th answer lacks Connection: close: %r" % r.raw_head)
            expect_closed(h, 2)
    tap.check("after max_requests_per_connection (5) the 5th answer carries Connection: close"
              " and the socket closes", max_requests)

    def pipelining():
        with d.store() as h:
            h.send(Http.build("GET", "/healthz") + Http.build("GET", "/nope")
                   + Http.build("GET", "/healthz"))
            got = [h.read_response() for _ in range(3)]
            statuses = [r.status for r in got]
            expect(statuses == [200, 404, 200], "statuses %r" % statuses)
            problem_ok(got[1], 404, "NOT_FOUND", request_id=False)
            expect(got[0].body == b"ok\n" and got[2].body == b"ok\n", "bodies %r" % got)
    tap.check("three pipelined requests in one write are answered in order (200, 404, 200)",
              pipelining)

    def malformed():
        with d.store() as h:
            h.send(b"THIS IS NOT HTTP\r\n\r\n")
            r = h.read_response()
            problem_ok(r, 400, "INVALID_REQUEST", request_id=False)
    tap.check("a malformed request line answers 400 problem+json INVALID_REQUEST", malformed)

    def bad_content_length():
        with d.store() as h:
            h.send(b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: -5\r\n\r\n")
            r = h.read_response()
            problem_ok(r, 400, "INVALID_REQUEST", request_id=False)
    tap.check("a negative Content-Length answers 400 problem+json INVALID_REQUEST",
              bad_content_length)

    def request_ids():
        expect(harness.PROBLEMS, "no problem answers were collected")
        missing = sorted({st for st, doc in harness.PROBLEMS
                          if not isinstance(doc.get("request_id"), str) or not doc["request_id"]})
        expect(not missing, "problem answers without request_id (DESIGN §4): statuses %r"
               % missing)
    tap.check("every problem answer above (400, 404, 405, 408, 413, 431) carries request_id",
              request_ids)

    def access_fields():
        acc = [e for e in d.events("access") if e.get("listener") == "store"]
        statuses = {e.get("status") for e in acc}
        expect({400, 408, 413, 431} <= statuses, "store access statuses %r" % sorted(statuses))
        bad = sorted({e.get("status") for e in acc
                      if not all(k in e for k in ("request_id", "duration_ms"))})
        expect(not bad, "access lines without request_id/duration_ms for statuses %r" % bad)
    tap.check("the access lines of rejected requests (400, 408, 413, 431) carry request_id and"
              " duration_ms like the others", access_fields)


def run_max_connections(tap, d):
    conns = []
    try:
        def open20():
            for i in range(20):
                h = d.store()
                conns.append(h)
            # TLS 1.3: the server's verdict comes after the client's handshake ends; one
            # request on each proves all 20 are accepted and served.
            r = conns[0].request("GET", "/healthz")
            expect(r.status == 200, "first connection: %r" % r)
        tap.check("20 concurrent connections are accepted (max_connections 20)", open20)

        def the_21st():
            time.sleep(0.2)
            raw = socket.create_connection(("127.0.0.1", d.store_port), timeout=3)
            t0 = time.monotonic()
            try:
                ctx = d.client_context()
                try:
                    s = ctx.wrap_socket(raw, server_hostname="localhost")
                except (ssl.SSLError, OSError):
                    secs = time.monotonic() - t0
                    expect(secs < 1.0, "handshake failed only after %.2fs" % secs)
                    return
                h = Http(s)
                try:
                    r = h.request("GET", "/healthz")
                except (harness.Closed, OSError):
                    return
                raise AssertionError("the 21st connection was served: %r" % r)
            finally:
                raw.close()
        tap.check("the 21st concurrent connection is closed at once", the_21st)

        def the_20_work():
            bad = []
            for i, h in enumerate(conns):
                try:
                    r = h.request("GET", "/healthz")
                    if r.status != 200:
                        bad.append((i, r.status))
                except Exception as e:
                    bad.append((i, repr(e)))
            expect(not bad, "failed connections: %r" % bad)
        tap.check("the 20 open connections keep working", the_20_work)

        def rejected_counted():
            v = d.metric("madoguchi_connections_rejected_total", {"listener": "store"})
            expect(v is not None and v >= 1, "rejected counter %r" % v)
        tap.check('madoguchi_connections_rejected_total{listener="store"} counts the refusal',
                  rejected_counted)
    finally:
        for h in conns:
            h.close()


if __name__ == "__main__":
    harness.run(main)
