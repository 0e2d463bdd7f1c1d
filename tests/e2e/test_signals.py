#!/usr/bin/env python3
"""test_signals.py: SIGHUP reloads the config and TLS material (a broken config keeps the
running one, DESIGN §9), and SIGTERM drains: no new connections, in-flight requests finish
with Connection: close, stalled ones are cut at shutdown.drain_timeout, exit 0."""

import os
import re
import signal
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, Http, expect, to_yaml  # noqa: E402


def get_ok(d, ctx=None):
    with d.store(ctx) as h:
        r = h.request("GET", "/healthz")
    expect(r.status == 200, "GET /healthz answered %r" % r)


def post_status(d, size):
    with d.store() as h:
        h.send(Http.build("POST", "/healthz", body=b"p" * size))
        return h.read_response()


def main(tap):
    d = Daemon({"shutdown": {"drain_timeout": "10s"}}).start()
    try:
        run_reload(tap, d)
        run_drain(tap, d)
    finally:
        d.stop()

    d2 = Daemon({"shutdown": {"drain_timeout": "1s"}}).start()
    try:
        run_drain_timeout(tap, d2)
    finally:
        d2.stop()
    harness.sanitizer_point(tap, d, d2)


def run_reload(tap, d):
    good_text = to_yaml(d.config)

    def broken_reload():
        lines = good_text.splitlines(keepends=True)
        # An unknown key under log:, at a known line and column.
        i = next(n for n, l in enumerate(lines) if l.startswith("log:"))
        lines.insert(i + 1, "  no_such_key: 1\n")
        d.write_config("".join(lines))
        want_pos = ":%d:3:" % (i + 2)
        d.signal(signal.SIGHUP)
        ev = d.wait_event("reload_failed")
        err = ev.get("error", "")
        expect(re.search(r"^\S+:\d+:\d+: ", err), "error %r is not file:line:column: ..." % err)
        expect(want_pos in err and "madoguchi.yaml" in err,
               "error %r does not name madoguchi.yaml%s" % (err, want_pos))
        expect(d.running(), "daemon exited after a failed reload")
        get_ok(d)
        st = d.admin_get("/v1/status").json()
        expect(st.get("state") == "serving", "state %r" % st.get("state"))
    tap.check("SIGHUP with a broken config logs reload_failed with file:line:column: and keeps"
              " serving", broken_reload)

    def rejected_counted():
        v = d.metric("madoguchi_config_reloads_total", {"result": "rejected"})
        expect(v == 1, "rejected reloads %r, want 1" % v)
    tap.check('madoguchi_config_reloads_total{result="rejected"} counts it', rejected_counted)

    def valid_reload():
        r = post_status(d, 2048)
        expect(r.status == 405, "before the reload a 2 KiB POST got %d, want 405" % r.status)
        d.config["listeners"]["store"]["limits"] = {"max_body_bytes": "1KiB"}
        d.write_config()
        d.signal(signal.SIGHUP)
        d.wait_event("reloaded")
        r = post_status(d, 2048)
        harness.problem_ok(r, 413, "BODY_TOO_LARGE", request_id=False)
        r = post_status(d, 512)
        expect(r.status == 405, "a 512 byte POST got %d, want 405" % r.status)
    tap.check("SIGHUP with a changed max_body_bytes logs reloaded and the new limit applies to a"
              " new request", valid_reload)

    def tls_reload():
        old_ctx = d.client_context()  # reads the old CA and centre certificate now
        keep = d.store(old_ctx)
        try:
            r = keep.request("GET", "/healthz")
            expect(r.status == 200, "before: %r" % r)
            with open(os.path.join(d.pki, "server.pem")) as f:
                old_server = f.read()
            harness.make_pki(d.pki, force=True)
            with open(os.path.join(d.pki, "server.pem")) as f:
                expect(f.read() != old_server, "dev-pki --force did not change server.pem")
            n = len(d.events("reloaded"))
            d.signal(signal.SIGHUP)
            d.wait_event("reloaded", count=n + 1)
            get_ok(d, d.client_context())  # trusts the new CA, presents the new centre cert
            try:
                get_ok(d, old_ctx)
            except (AssertionError, OSError, harness.Closed):
                pass
            else:
                raise AssertionError("a new connection with the old CA and client certificate"
                                     " still works: the new TLS material is not in use")
            r = keep.request("GET", "/healthz")
            expect(r.status == 200, "the keep-alive connection opened before the reload: %r" % r)
        finally:
            keep.close()
    tap.check("SIGHUP with new TLS material: new connections use it, an open keep-alive"
              " connection keeps working", tls_reload)

    def applied_counted():
        v = d.metric("madoguchi_config_reloads_total", {"result": "applied"})
        expect(v == 2, "applied reloads %r, want 2" % v)
    tap.check('madoguchi_config_reloads_total{result="applied"} counts both reloads',
              applied_counted)

    def start_only_reported():
        expect(not d.events("reload_restart_required"),
               "reloads of limits and TLS material reported %r"
               % d.events("reload_restart_required"))
        d.config["plugin_dir"] = d.path("data")
        d.config["listeners"]["admin"]["mode"] = "0600"
        d.write_config()
        n = len(d.events("reloaded"))
        d.signal(signal.SIGHUP)
        d.wait_event("reloaded", count=n + 1)
        keys = sorted(e.get("key") for e in d.events("reload_restart_required"))
        expect(keys == ["listeners.admin.mode", "plugin_dir"],
               "reload_restart_required for %r, want the admin mode and plugin_dir" % keys)
        mode = os.stat(d.admin_sock).st_mode & 0o777
        expect(mode == 0o660, "the socket's mode changed to %o without a restart" % mode)
        # Compared with what runs (the start's values): a second reload warns again ...
        d.signal(signal.SIGHUP)
        d.wait_event("reloaded", count=n + 2)
        expect(len(d.events("reload_restart_required")) == 4,
               "a second reload of the changed file: %r" % d.events("reload_restart_required"))
        # ... and the file changed back to what runs warns no more.
        del d.config["plugin_dir"]
        del d.config["listeners"]["admin"]["mode"]
        d.write_config()
        d.signal(signal.SIGHUP)
        d.wait_event("reloaded", count=n + 3)
        expect(len(d.events("reload_restart_required")) == 4,
               "the file changed back: %r" % d.events("reload_restart_required"))
    tap.check("SIGHUP with a changed plugin_dir and admin socket mode: reload_restart_required "
              "names exactly those two (applied at start only), again on the next reload, not "
              "once the file says what runs; the socket keeps its mode", start_only_reported)


def run_drain(tap, d):
    h = d.store()
    try:
        def drain():
            h.send(b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n"
                   + b"h" * 50)
            time.sleep(0.3)
            d.signal(signal.SIGTERM)
            d.wait_event("draining")
            try:
                s = socket.create_connection(("127.0.0.1", d.store_port), timeout=2)
            except ConnectionRefusedError:
                pass
            else:
                s.close()
                raise AssertionError("a new connection was accepted while draining")
            expect(d.running(), "daemon exited before the in-flight request finished")
            h.send(b"h" * 50)
            r = h.read_response()
            expect(r.status in (404, 405), "in-flight answer %r" % r)
            expect(r.closes(), "in-flight answer lacks Connection: close: %r" % r.raw_head)
            closed, secs, _ = h.wait_closed(3)
            expect(closed, "connection still open after the answer")
            rc = d.wait_exit(5)
            expect(rc == 0, "exit code %r, want 0" % rc)
            d.wait_event("stopped", timeout=0.5)
        tap.check("SIGTERM drains: new connections refused, the in-flight request is answered"
                  " with Connection: close, exit 0", drain)
    finally:
        h.close()


def run_drain_timeout(tap, d):
    h = d.store()
    try:
        def stalled():
            h.send(b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n"
                   + b"s" * 50)
            time.sleep(0.3)
            t0 = time.monotonic()
            d.signal(signal.SIGTERM)
            rc = d.wait_exit(6)
            secs = time.monotonic() - t0
            expect(rc is not None, "still running 6s after SIGTERM (drain_timeout 1s)")
            expect(rc == 0, "exit code %r, want 0" % rc)
            expect(0.8 <= secs <= 2.5, "exited %.2fs after SIGTERM, want about 1s" % secs)
        tap.check("a drain with a stalled client ends at shutdown.drain_timeout (1s) with exit 0",
                  stalled)
    finally:
        h.close()


if __name__ == "__main__":
    harness.run(main)
