#!/usr/bin/env python3
"""test_admin_metrics.py: madoguchictl and the admin API on the Unix socket (DESIGN §7), the
metrics listener and its Prometheus text, the socket's file mode, and the access log (which
never carries a raw unknown path, §10)."""

import json
import grp
import os
import stat
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, expect  # noqa: E402

SECRET = "secret-name-yamada"


def main(tap):
    d = Daemon().start()
    try:
        run_main(tap, d)
    finally:
        harness.stop_point(tap, d, "daemon exits 0 on SIGTERM")

    def no_secret():
        text = d.log_text()
        expect(text.strip(), "empty log")
        expect(SECRET not in text, "the raw path %r appears in the log" % SECRET)
    tap.check("the raw path of an unknown route appears nowhere in the log", no_secret)

    # "daemon" is a group every Debian system has (gid 1), unlike the service's own group.
    d2 = Daemon({"listeners": {"admin": {"mode": "0600", "group": "daemon"}}}).start()
    try:
        def mode0600():
            m = stat.S_IMODE(os.stat(d2.admin_sock).st_mode)
            expect(stat.S_ISSOCK(os.stat(d2.admin_sock).st_mode), "not a socket")
            expect(m == 0o600, "mode %o, want 600" % m)
        tap.check('admin socket has the configured mode ("0600")', mode0600)

        def group_daemon():
            gid = os.stat(d2.admin_sock).st_gid
            expect(gid == grp.getgrnam("daemon").gr_gid, "socket group id %d, want daemon's" % gid)
        tap.check('admin socket belongs to the configured group ("daemon")', group_daemon)
    finally:
        d2.stop()

    def ctl_unreachable_after_stop():
        p = d2.run_ctl("--socket", d2.admin_sock, "status")
        expect(p.returncode == 3, "exit %d, want 3; stderr %r" % (p.returncode, p.stderr))
    tap.check("madoguchictl status against a stopped daemon's socket exits 3",
              ctl_unreachable_after_stop)
    harness.sanitizer_point(tap, d, d2)


def run_main(tap, d):
    # Some store traffic first, so the per-code request counter exists.
    with d.store() as h:
        r = h.request("GET", "/healthz")
        expect(r.status == 200, "warm-up %r" % r)
        r = h.request("GET", "/" + SECRET)
        expect(r.status == 404, "unknown route %r" % r)

    def ctl_status():
        p = d.run_ctl("--socket", d.admin_sock, "status")
        expect(p.returncode == 0, "exit %d; stderr %r" % (p.returncode, p.stderr))
        expect("serving" in p.stdout, "no 'serving' in %r" % p.stdout)
    tap.check('madoguchictl --socket SOCK status exits 0 and prints "serving"', ctl_status)

    def ctl_json():
        p = d.run_ctl("--socket", d.admin_sock, "--json", "status")
        expect(p.returncode == 0, "exit %d; stderr %r" % (p.returncode, p.stderr))
        doc = json.loads(p.stdout)
        for k in ("version", "state", "listeners"):
            expect(k in doc, "no %r in %r" % (k, doc))
        expect(doc["state"] == "serving", "state %r" % doc["state"])
    tap.check("madoguchictl --json status prints JSON with version, state, listeners", ctl_json)

    def ctl_env():
        p = d.run_ctl("status", env={"MADOGUCHI_SOCKET": d.admin_sock})
        expect(p.returncode == 0, "exit %d; stderr %r" % (p.returncode, p.stderr))
        expect("serving" in p.stdout, "no 'serving' in %r" % p.stdout)
    tap.check("madoguchictl finds the socket through MADOGUCHI_SOCKET", ctl_env)

    def ctl_missing():
        p = d.run_ctl("--socket", d.path("no-such.sock"), "status")
        expect(p.returncode == 3, "exit %d, want 3; stderr %r" % (p.returncode, p.stderr))
        expect(p.stderr.strip(), "no message on stderr")
    tap.check("madoguchictl with a missing socket exits 3 with a message", ctl_missing)

    def ctl_usage():
        for argv in (["--socket", d.admin_sock, "no-such-command"], ["--no-such-option"], []):
            p = d.run_ctl(*argv)
            expect(p.returncode == 2, "%r: exit %d, want 2" % (argv, p.returncode))
    tap.check("madoguchictl bad usage (unknown command, unknown option, no command) exits 2",
              ctl_usage)

    def status_fields():
        r = d.admin_get("/v1/status")
        expect(r.status == 200, "answer %r" % r)
        expect(r.header("content-type", "").startswith("application/json"),
               "Content-Type %r" % r.header("content-type"))
        doc = r.json()
        expect(doc.get("state") == "serving", "state %r" % doc.get("state"))
        expect(isinstance(doc.get("version"), str) and doc["version"], "version %r"
               % doc.get("version"))
        expect(doc.get("pid") == d.proc.pid, "pid %r, want %d" % (doc.get("pid"), d.proc.pid))
        expect(isinstance(doc.get("uptime_seconds"), int), "uptime_seconds %r"
               % doc.get("uptime_seconds"))
        expect(doc.get("config") == d.config_path, "config %r, want %r"
               % (doc.get("config"), d.config_path))
        names = {l.get("name"): l for l in doc.get("listeners", [])}
        expect(set(names) == {"store", "admin", "metrics"}, "listeners %r" % list(names))
        expect(names["store"].get("address") == "127.0.0.1:%d" % d.store_port,
               "store address %r" % names["store"].get("address"))
        expect(names["store"].get("tls") is True, "store tls %r" % names["store"].get("tls"))
        expect(names["admin"].get("address") == d.admin_sock, "admin address %r"
               % names["admin"].get("address"))
        expect(names["metrics"].get("address") == "127.0.0.1:%d" % d.metrics_port,
               "metrics address %r" % names["metrics"].get("address"))
    tap.check("admin GET /v1/status gives state, version, pid, uptime, config and the three"
              " listeners", status_fields)

    for path in ("/healthz", "/readyz"):
        def admin_probe(path=path):
            r = d.admin_get(path)
            expect(r.status == 200, "answer %r" % r)
        tap.check("admin socket GET %s answers 200" % path, admin_probe)

        def metrics_probe(path=path):
            with d.metrics() as h:
                r = h.request("GET", path)
            expect(r.status == 200, "answer %r" % r)
        tap.check("metrics listener GET %s answers 200" % path, metrics_probe)

    def metrics_unknown():
        with d.metrics() as h:
            r = h.request("GET", "/v1/status")
        harness.problem_ok(r, 404, "NOT_FOUND")
    tap.check("the metrics listener does not serve the admin API (/v1/status is 404)",
              metrics_unknown)

    text = d.metrics_text()

    def promtool():
        p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=20)
        expect(p.returncode == 0, "promtool rc=%d: %s%s" % (p.returncode, p.stdout, p.stderr))
    tap.check("/metrics passes promtool check metrics", promtool)

    def series():
        want = [("madoguchi_build_info", None),
                ("madoguchi_http_requests_total", {"listener": "store", "code": "200"}),
                ("madoguchi_connections_open", None),
                ("madoguchi_tls_handshake_failures_total", None)]
        missing = [n for n, lab in want if harness.metric_value(text, n, lab) is None]
        expect(not missing, "missing series: %r" % missing)
        v = harness.metric_value(text, "madoguchi_http_requests_total",
                                 {"listener": "store", "code": "200"})
        expect(v >= 1, "store 200 count %r" % v)
    tap.check("/metrics has madoguchi_build_info, http_requests_total{listener=store,code=200},"
              " connections_open, tls_handshake_failures_total", series)

    def admin_metrics():
        r = d.admin_get("/metrics")
        expect(r.status == 200, "answer %r" % r)
        expect("madoguchi_build_info" in r.text(), "no build_info in admin /metrics")
    tap.check("admin socket GET /metrics serves the same metrics", admin_metrics)

    def mode0660():
        st = os.stat(d.admin_sock)
        expect(stat.S_ISSOCK(st.st_mode), "not a socket")
        m = stat.S_IMODE(st.st_mode)
        expect(m == 0o660, "mode %o, want 660" % m)
    tap.check("admin socket has mode 0660 by default", mode0660)

    def access_lines():
        acc = d.events("access")
        store = [e for e in acc if e.get("listener") == "store"]
        expect(len(store) >= 2, "store access lines: %r" % store)
        for e in acc:
            for k in ("listener", "status", "duration_ms", "request_id"):
                expect(k in e, "access line lacks %r: %r" % (k, e))
            expect(isinstance(e["status"], int), "status not a number: %r" % e)
            expect(isinstance(e["duration_ms"], (int, float)), "duration_ms: %r" % e)
        statuses = sorted(e["status"] for e in store)
        expect(200 in statuses and 404 in statuses, "store statuses %r" % statuses)
        listeners = {e["listener"] for e in acc}
        expect({"store", "admin", "metrics"} <= listeners, "listeners in access log %r"
               % listeners)
    tap.check("access log lines are JSON with event access, listener, status, duration_ms,"
              " request_id", access_lines)

    def request_id_matches():
        with d.store() as h:
            r = h.request("GET", "/also-unknown")
        rid = r.json().get("request_id")
        expect(rid, "no request_id in %r" % r)
        # The access line is written after the answer is sent: wait for it.
        ev = d.wait_event("access", pred=lambda e: e.get("request_id") == rid)
        expect(ev.get("status") == 404, "access line %r" % ev)
        acc = [e for e in d.events("access") if e.get("request_id") == rid]
        expect(len(acc) == 1, "access lines with that request_id: %r" % acc)
    tap.check("a problem's request_id matches its access log line", request_id_matches)


if __name__ == "__main__":
    harness.run(main)
