#!/usr/bin/env python3
"""test_config_cli.py: madoguchid's command line and config validation (DESIGN §9): problems
are reported as FILE:LINE:COL: message, a bad config exits 2 (check or start), a listener that
cannot bind exits 1, and --version/--help work."""

import os
import re
import socket
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DAEMON, Daemon, expect, to_yaml  # noqa: E402


def daemon_cli(*args, env=None):
    return subprocess.run([DAEMON] + list(args), capture_output=True, text=True, timeout=20,
                          env=env)


def insert_after(text, anchor, new_line):
    """Insert new_line after the first line starting with anchor; returns (text, lineno of
    the new line, 1-based)."""
    lines = text.splitlines(keepends=True)
    i = next(n for n, l in enumerate(lines) if l.startswith(anchor))
    lines.insert(i + 1, new_line)
    return "".join(lines), i + 2


def main(tap):
    d = Daemon()  # prepared, not started
    good = to_yaml(d.config)
    cfg = d.config_path

    def check_good():
        p = daemon_cli("--check-config", cfg, env=d.env())
        expect(p.returncode == 0, "exit %d; %s%s" % (p.returncode, p.stdout, p.stderr))
    tap.check("--check-config on a good config exits 0", check_good)

    # An unknown key under listeners.store.limits (indent 6, so column 7).
    text = good.replace("    tls:\n", "    limits:\n      no_such_limit: 5\n    tls:\n", 1)
    line = text.splitlines().index("      no_such_limit: 5") + 1
    col = 7
    bad_path = d.path("bad.yaml")
    with open(bad_path, "w") as f:
        f.write(text)
    pos = "%s:%d:%d:" % (bad_path, line, col)

    def check_unknown():
        p = daemon_cli("--check-config", bad_path, env=d.env())
        out = p.stdout + p.stderr
        expect(p.returncode == 2, "exit %d, want 2; %s" % (p.returncode, out))
        expect(pos in out, "output %r lacks %r" % (out, pos))
        expect("no_such_limit" in out, "message does not name the key: %r" % out)
    tap.check("--check-config on an unknown key exits 2 and prints FILE:LINE:COL: at the key",
              check_unknown)

    def check_top_level():
        t, ln = insert_after(good, "data_dir:", "bogus_top: 1\n")
        path = d.path("bad-top.yaml")
        with open(path, "w") as f:
            f.write(t)
        p = daemon_cli("--check-config", path, env=d.env())
        out = p.stdout + p.stderr
        want = "%s:%d:1:" % (path, ln)
        expect(p.returncode == 2, "exit %d, want 2; %s" % (p.returncode, out))
        expect(want in out, "output %r lacks %r" % (out, want))
    tap.check("--check-config on an unknown top-level key reports its line, column 1",
              check_top_level)

    def check_bad_value():
        t = good.replace("    port: 0\n", "    port: 70000\n", 1)
        ln = t.splitlines().index("    port: 70000") + 1
        path = d.path("bad-port.yaml")
        with open(path, "w") as f:
            f.write(t)
        p = daemon_cli("--check-config", path, env=d.env())
        out = p.stdout + p.stderr
        expect(p.returncode == 2, "exit %d, want 2; %s" % (p.returncode, out))
        m = re.search(re.escape(path) + r":(\d+):(\d+): ", out)
        expect(m and int(m.group(1)) == ln and int(m.group(2)) in (5, 11),
               "output %r lacks %s:%d:(5|11):" % (out, path, ln))
    tap.check("--check-config on an out-of-range port exits 2 with its line and column",
              check_bad_value)

    def check_missing_required():
        t = good.replace("    address: 127.0.0.1\n", "", 1)  # store address
        path = d.path("bad-missing.yaml")
        with open(path, "w") as f:
            f.write(t)
        p = daemon_cli("--check-config", path, env=d.env())
        out = p.stdout + p.stderr
        expect(p.returncode == 2, "exit %d, want 2; %s" % (p.returncode, out))
        expect(re.search(re.escape(path) + r":\d+:\d+: .*address", out),
               "output %r does not report the missing address as FILE:LINE:COL:" % out)
    tap.check("--check-config on a missing required key (store address) exits 2 and names it",
              check_missing_required)

    def check_decimal_size():
        t = good.replace("    tls:\n", "    limits:\n      max_body_bytes: 4KB\n    tls:\n", 1)
        path = d.path("bad-size.yaml")
        with open(path, "w") as f:
            f.write(t)
        p = daemon_cli("--check-config", path, env=d.env())
        out = p.stdout + p.stderr
        expect(p.returncode == 2, "exit %d, want 2; %s" % (p.returncode, out))
    tap.check("--check-config refuses a decimal size suffix (4KB) with exit 2",
              check_decimal_size)

    def check_missing_file():
        p = daemon_cli("--check-config", d.path("absent.yaml"), env=d.env())
        expect(p.returncode == 2, "exit %d, want 2; %s%s" % (p.returncode, p.stdout, p.stderr))
    tap.check("--check-config on a missing file exits 2", check_missing_file)

    def start_bad():
        d.start(wait=False, args=["--config", bad_path])
        rc = d.wait_exit(10)
        expect(rc == 2, "exit %r, want 2; log %r" % (rc, d.log_text()))
        evs = d.events("config_invalid")
        expect(evs, "no config_invalid log line; log %r" % d.log_text())
        err = evs[0].get("error", "")
        expect(pos in err, "error %r lacks %r" % (err, pos))
        expect(not d.events("listening"), "it listened before refusing the config")
    tap.check("starting with the bad config exits 2 and logs config_invalid with the position",
              start_bad)

    for opt in ("--version", "--help"):
        def simple(opt=opt):
            p = daemon_cli(opt, env=d.env())
            expect(p.returncode == 0, "exit %d; %s" % (p.returncode, p.stderr))
            expect(p.stdout.strip(), "nothing on stdout")
            if opt == "--version":
                expect(re.search(r"\d+\.\d+\.\d+", p.stdout), "no version in %r" % p.stdout)
        tap.check("madoguchid %s exits 0 and prints to stdout" % opt, simple)

    def bad_usage():
        p = daemon_cli("--no-such-option", env=d.env())
        expect(p.returncode == 2, "exit %d, want 2" % p.returncode)
    tap.check("madoguchid with an unknown option exits 2", bad_usage)

    def port_in_use():
        blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        try:
            port = blocker.getsockname()[1]
            harness.merge(d.config, {"listeners": {"store": {"port": port}}})
            d.write_config()
            d.start(wait=False)
            rc = d.wait_exit(10)
            expect(rc == 1, "exit %r, want 1; log %r" % (rc, d.log_text()))
            evs = d.events("start_failed")
            expect(evs and evs[0].get("error"), "no start_failed line with an error; log %r"
                   % d.log_text())
            expect(str(port) in evs[0]["error"], "error %r does not name the port %d"
                   % (evs[0]["error"], port))
        finally:
            blocker.close()
    tap.check("a store port already in use exits 1 with a start_failed log line naming it",
              port_in_use)

    def good_start():
        harness.merge(d.config, {"listeners": {"store": {"port": 0}}})
        d.write_config()
        d.start()
        get = d.admin_get("/healthz")
        expect(get.status == 200, "admin healthz %r" % get)
        rc = d.stop()
        expect(rc == 0, "exit %r" % rc)
    tap.check("the good config starts, serves and stops with exit 0", good_start)
    harness.sanitizer_point(tap, d)


if __name__ == "__main__":
    harness.run(main)
