#!/usr/bin/env python3
"""test_systemd.py: madoguchid under systemd (docs/systemd.md, packaging/systemd).

1. The notification protocol (Type=notify): with NOTIFY_SOCKET set to a datagram socket this
   test binds, READY=1 arrives only once the store and admin listeners accept connections;
   SIGHUP gives RELOADING=1 then READY=1, also when the new config is refused (the daemon
   keeps serving and its STATUS= says the reload was refused); SIGTERM gives STOPPING=1.  Each
   message comes from the daemon's own pid (NotifyAccess=main).  A NOTIFY_SOCKET nobody
   listens on is logged once and does not stop the daemon.
2. The built unit rates 2.0 or lower in `systemd-analyze security --offline=true`.
3. `systemd-analyze verify` of the built unit finds nothing to complain about (ExecStart
   pointed at this build's daemon, which /usr/sbin may not hold on a build machine).
Checks 2 and 3 are skipped only when systemd-analyze is not installed.
"""

import array
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, expect, to_yaml  # noqa: E402

UNIT = os.path.join(harness.BUILDDIR, "packaging", "systemd", "madoguchid.service")
MAX_EXPOSURE = 2.0


class Notifications:
    """The service manager's end of NOTIFY_SOCKET: a Unix datagram socket that receives the
    daemon's messages with the sender's credentials (SO_PASSCRED), as systemd does."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.received = []  # (pid, {key: value}) in arrival order

    def next(self, timeout=5.0):
        """The next message as (sender pid, {key: value}); AssertionError on timeout."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        except socket.timeout:
            raise AssertionError("no notification within %.1fs (so far: %r)"
                                 % (timeout, self.received))
        pid = None
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = array.array("i", cdata[:struct.calcsize("3i")])[0]
        fields = {}
        for line in data.decode("utf-8", "replace").split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                fields[k] = v
        self.received.append((pid, fields))
        return pid, fields

    def expect_none(self, wait=0.3):
        """Nothing more arrives within wait seconds."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return
        raise AssertionError("unexpected notification %r" % data)

    def close(self):
        self.sock.close()


class NotifiedDaemon(Daemon):
    """A Daemon started with NOTIFY_SOCKET in its environment, as systemd starts it."""

    def __init__(self, notify_socket, *a, **kw):
        self.notify_socket = notify_socket
        super().__init__(*a, **kw)

    def env(self):
        env = super().env()
        env["NOTIFY_SOCKET"] = self.notify_socket
        return env


def expect_state(d, note, key, status_re=None):
    """The next message is key=1 from the daemon's pid, with a STATUS= matching status_re."""
    pid, fields = note.next()
    expect(fields.get(key) == "1", "got %r, want %s=1" % (fields, key))
    expect(pid == d.proc.pid, "sent by pid %r, not by the daemon (%d)" % (pid, d.proc.pid))
    if status_re is not None:
        expect(re.search(status_re, fields.get("STATUS", "")),
               "STATUS=%r does not match %r" % (fields.get("STATUS"), status_re))
    return fields


def healthz(d):
    with d.store() as h:
        r = h.request("GET", "/healthz")
    expect(r.status == 200, "GET /healthz answered %r" % r)


def run_protocol(tap, d, note):
    def ready_after_listeners():
        d.start(wait=False)
        fields = expect_state(d, note, "READY", r"^Serving on 127\.0\.0\.1:\d+; started$")
        # At READY=1 the log already names the bound listeners, and both accept connections.
        d.wait_ready(timeout=1)
        expect("RELOADING" not in fields and "STOPPING" not in fields, "fields %r" % fields)
        expect(fields["STATUS"].endswith(":%d; started" % d.store_port),
               "STATUS=%r does not name the store port %d" % (fields["STATUS"], d.store_port))
        healthz(d)
        st = d.admin_get("/v1/status")
        expect(st.status == 200, "admin /v1/status answered %r" % st)
        note.expect_none()
    tap.check("READY=1 (STATUS=Serving on ADDR:PORT) comes from the daemon's pid once the store"
              " and admin listeners accept connections, and only once", ready_after_listeners)

    def reload_applied():
        d.config["listeners"]["store"]["limits"] = {"max_body_bytes": "2KiB"}
        d.write_config()
        d.signal(signal.SIGHUP)
        f = expect_state(d, note, "RELOADING")
        expect(re.match(r"^\d+$", f.get("MONOTONIC_USEC", "")), "MONOTONIC_USEC %r" % f)
        expect_state(d, note, "READY", r"; configuration reloaded$")
        d.wait_event("reloaded")
        healthz(d)
    tap.check("SIGHUP with a valid config: RELOADING=1 (with MONOTONIC_USEC), then READY=1 with"
              " STATUS ...configuration reloaded", reload_applied)

    def reload_refused():
        text = to_yaml(d.config).replace("log:\n", "log:\n  no_such_key: 1\n", 1)
        d.write_config(text)
        d.signal(signal.SIGHUP)
        expect_state(d, note, "RELOADING")
        f = expect_state(d, note, "READY", r"; reload refused, the running configuration stays: "
                         r"\S*madoguchi\.yaml:\d+:\d+: ")
        expect("\n" not in f["STATUS"], "STATUS spans lines")
        d.wait_event("reload_failed")
        expect(d.running(), "the daemon exited after a refused reload")
        healthz(d)
        d.write_config()
    tap.check("SIGHUP with a broken config: RELOADING=1, then READY=1 with STATUS saying the"
              " reload was refused (file:line:column), and the daemon keeps serving",
              reload_refused)

    def stopping():
        d.signal(signal.SIGTERM)
        expect_state(d, note, "STOPPING", r"^Draining \d+ open connections")
        rc = d.wait_exit(10)
        expect(rc == 0, "exit code %r, want 0" % rc)
        note.expect_none(0.1)
    tap.check("SIGTERM: STOPPING=1 with STATUS Draining..., then exit 0 with nothing more",
              stopping)


def run_unreachable(tap, directory):
    d = NotifiedDaemon(os.path.join(directory, "nobody-listens.sock"))
    try:
        def still_serves():
            d.start()
            healthz(d)
            d.signal(signal.SIGHUP)
            d.wait_event("reloaded")
            warned = d.events("sd_notify_failed")
            expect(len(warned) == 1, "sd_notify_failed lines %r, want exactly one" % warned)
            expect("Type=notify" in warned[0].get("detail", ""), "detail %r" % warned[0])
        tap.check("a NOTIFY_SOCKET nobody listens on: the daemon serves and reloads, and logs"
                  " sd_notify_failed once", still_serves)
    finally:
        harness.stop_point(tap, d, "that daemon exits 0 on SIGTERM")
    return d


def analyze():
    return shutil.which("systemd-analyze")


def run_security(tap):
    desc = "systemd-analyze security --offline=true rates the unit %.1f or lower" % MAX_EXPOSURE
    if analyze() is None:
        tap.skip(desc, "systemd-analyze is not installed")
        return

    def exposure():
        # --threshold is in tenths: the exit status is non-zero above 2.0.
        p = subprocess.run([analyze(), "security", "--offline=true",
                            "--threshold=%d" % int(MAX_EXPOSURE * 10), "--no-pager", UNIT],
                           capture_output=True, text=True, timeout=60)
        out = p.stdout + p.stderr
        m = re.search(r"Overall exposure level for madoguchid\.service: (\d+\.\d+)", out)
        expect(m, "no overall exposure level in:\n%s" % out)
        level = float(m.group(1))
        tap.diag("exposure level %.1f" % level)
        expect(level <= MAX_EXPOSURE, "exposure %.1f > %.1f:\n%s"
               % (level, MAX_EXPOSURE, "\n".join(l for l in out.splitlines() if "✗" in l)))
        expect(p.returncode == 0, "exit status %d with --threshold:\n%s" % (p.returncode, out))
    tap.check(desc, exposure)


def run_verify(tap, directory):
    desc = "systemd-analyze verify finds no unknown or invalid directive in the unit"
    if analyze() is None:
        tap.skip(desc, "systemd-analyze is not installed")
        return

    def verify():
        with open(UNIT) as f:
            text = f.read()
        m = re.search(r"^ExecStart=(\S+)/madoguchid ", text, re.M)
        expect(m, "no ExecStart=.../madoguchid line")
        # The installed path (sbindir) need not exist here; the build's daemon does.
        text = text.replace(m.group(1) + "/madoguchid ", harness.DAEMON + " ")
        copy = os.path.join(directory, "madoguchid.service")
        with open(copy, "w") as f:
            f.write(text)
        p = subprocess.run([analyze(), "verify", "--man=no", copy], capture_output=True,
                           text=True, timeout=60)
        out = (p.stdout + p.stderr).strip()
        expect(p.returncode == 0 and out == "", "exit %d:\n%s" % (p.returncode, out))
    tap.check(desc, verify)


def main(tap):
    directory = tempfile.mkdtemp(prefix="mdg-sd-")
    try:
        note = Notifications(directory)
        d = NotifiedDaemon(note.path)
        try:
            run_protocol(tap, d, note)
        finally:
            d.stop()
            note.close()
        d2 = run_unreachable(tap, directory)
        harness.sanitizer_point(tap, d, d2)
        run_security(tap)
        run_verify(tap, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    harness.run(main)
