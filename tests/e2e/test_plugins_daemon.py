#!/usr/bin/env python3
"""test_plugins_daemon.py: madoguchid with the shipped plugins, as conf/demo.yaml runs it.

The daemon loads sqlite-registry, fujitsu-like (against the vendor simulator) and the example,
lists them with their versions in /v1/status, and drains and exits 0 on SIGTERM even while
the vendor backend is down and the plugin keeps trying to reconnect.  conf/demo.yaml itself
passes --check-config against a demo layout.  A refused plugin stops the start."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, expect  # noqa: E402

PLUGINS = os.environ.get("MDG_PLUGINS") or os.path.join(harness.BUILDDIR, "plugins", ".libs")
SIM = os.environ.get("MDG_VENDOR_SIM") or os.path.join(harness.BUILDDIR, "tools", "vendor-sim",
                                                       "madoguchi-vendor-sim")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_sim(registry):
    p = subprocess.Popen([SIM, "--registry", registry, "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().strip()
    expect(line.startswith("listening 127.0.0.1:"), "simulator said %r" % line)
    return p, line.split()[1]


def main(tap):
    city = tempfile.mkdtemp(prefix="mdg-city-")
    sim = None
    try:
        subprocess.run([sys.executable, os.path.join(harness.SRCDIR, "scripts", "demo-city"),
                        "--out", city, "--residents", "500"], check=True,
                       stdout=subprocess.DEVNULL, timeout=120)
        registry = os.path.join(city, "registry.sqlite")
        sim, endpoint = start_sim(registry)
        run_plugins(tap, registry, endpoint, sim)
    finally:
        if sim is not None and sim.poll() is None:
            sim.kill()
            sim.wait()
        shutil.rmtree(city, ignore_errors=True)


def plugins_config(registry, endpoint):
    return {"plugin_dir": PLUGINS,
            "plugins": {
                "registry": {"file": "sqlite-registry.so", "config": {"database": registry}},
                "vendor": {"file": "fujitsu-like.so", "config": {"endpoint": endpoint}},
                "example": {"file": "example.so", "config": {
                    "data": os.path.join(harness.SRCDIR, "plugins", "example",
                                         "residents.csv")}}}}


def run_plugins(tap, registry, endpoint, sim):
    d = Daemon(plugins_config(registry, endpoint))

    def loads_all():
        d.start()
        status = d.admin_get("/v1/status").json()
        got = sorted((p["name"], p["plugin"], p["version"]) for p in status["plugins"])
        expect(got == [("example", "example", "1.0.0"), ("registry", "sqlite-registry", "1.0.0"),
                       ("vendor", "fujitsu-like", "1.0.0")], "plugins %r" % got)
        for p in status["plugins"]:
            expect(p["state"] == "serving", "state %r" % p)
    tap.check("madoguchid loads sqlite-registry, fujitsu-like and the example and lists each "
              "with its version", loads_all)

    def stops_with_backend_down():
        sim.kill()
        sim.wait()
        time.sleep(0.5)  # the plugin notices and starts reconnecting
        t0 = time.monotonic()
        d.stop(timeout=10)
        expect(d.exit_code == 0, "exit %r" % d.exit_code)
        expect(time.monotonic() - t0 < 5, "took %.1f s to stop" % (time.monotonic() - t0))
    tap.check("SIGTERM drains and exits 0 promptly while the vendor backend is down",
              stops_with_backend_down)

    def starts_with_backend_down():
        d2 = Daemon(plugins_config(registry, "127.0.0.1:%d" % free_port()))
        d2.start()
        status = d2.admin_get("/v1/status").json()
        expect(len(status["plugins"]) == 3, "plugins %r" % status["plugins"])
        d2.stop(timeout=10)
        expect(d2.exit_code == 0, "exit %r" % d2.exit_code)
    tap.check("an unreachable vendor backend does not stop the start, nor the stop",
              starts_with_backend_down)

    def refused_plugin_stops_start():
        plugdir = tempfile.mkdtemp(prefix="mdg-plugins-")
        os.chmod(plugdir, 0o755)
        try:
            shutil.copy(os.path.join(PLUGINS, "example.so"), os.path.join(plugdir, "example.so"))
            os.chmod(os.path.join(plugdir, "example.so"), 0o666)
            d3 = Daemon({"plugin_dir": plugdir,
                         "plugins": {"example": {"file": "example.so", "config": {
                             "data": os.path.join(harness.SRCDIR, "plugins", "example",
                                                  "residents.csv")}}}})
            d3.start(wait=False)
            code = d3.wait_exit(10)
            expect(code == 1, "exit %r, want 1" % code)
            refused = d3.events("plugin_refused")
            expect(refused and "writable" in refused[0]["reason"], "log %r" % refused)
            expect(not d3.events("listening"), "a listener opened before the refusal")
        finally:
            shutil.rmtree(plugdir, ignore_errors=True)
    tap.check("a refused plugin (world-writable file) stops the start before any listener "
              "opens: exit 1 and a plugin_refused line", refused_plugin_stops_start)

    def demo_yaml_checks():
        # conf/demo.yaml points through ../run and ../build: lay them out in a temp tree.
        top = tempfile.mkdtemp(prefix="mdg-demo-")
        try:
            os.makedirs(os.path.join(top, "conf"))
            os.makedirs(os.path.join(top, "build", "plugins"))
            os.makedirs(os.path.join(top, "plugins", "example"))
            shutil.copy(os.path.join(harness.SRCDIR, "conf", "demo.yaml"),
                        os.path.join(top, "conf", "demo.yaml"))
            harness.make_pki(os.path.join(top, "run", "pki"), ministry=["dev"])
            p = subprocess.run([harness.DAEMON, "--check-config",
                                os.path.join(top, "conf", "demo.yaml")],
                               capture_output=True, text=True, timeout=30)
            expect(p.returncode == 0, "rc %d: %s" % (p.returncode, p.stderr))
        finally:
            shutil.rmtree(top, ignore_errors=True)
    tap.check("conf/demo.yaml passes madoguchid --check-config on a demo layout",
              demo_yaml_checks)


if __name__ == "__main__":
    harness.run(main)
