#!/usr/bin/env python3
"""test_sdk.py: a vendor's view of the plugin SDK.  The SDK installed with `make install`
(DESTDIR) is enough to build the example plugin out of tree with pkg-config alone, and the
plugin so built loads into madoguchid, which then reports it in its status."""

import glob
import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, expect  # noqa: E402


def main(tap):
    work = tempfile.mkdtemp(prefix="mdg-sdk-")
    root = os.path.join(work, "root")
    try:
        run_sdk(tap, work, root)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_sdk(tap, work, root):
    state = {}

    def install():
        p = subprocess.run(["make", "-s", "-C", harness.BUILDDIR, "install", "DESTDIR=" + root],
                           capture_output=True, text=True, timeout=300)
        expect(p.returncode == 0, "make install failed: %s" % p.stderr[-2000:])
        pcs = glob.glob(os.path.join(root, "**", "madoguchi-plugin.pc"), recursive=True)
        expect(len(pcs) == 1, "madoguchi-plugin.pc installed %d times" % len(pcs))
        headers = glob.glob(os.path.join(root, "**", "madoguchi", "plugin.h"), recursive=True)
        expect(len(headers) == 1, "plugin.h installed %d times" % len(headers))
        examples = glob.glob(os.path.join(root, "**", "examples", "plugin", "example.c"),
                             recursive=True)
        expect(len(examples) == 1, "example.c installed %d times" % len(examples))
        state["pc_dir"] = os.path.dirname(pcs[0])
        state["example_dir"] = os.path.dirname(examples[0])
    tap.check("make install DESTDIR=… installs the SDK header, its pkg-config file and the "
              "example plugin's source", install)

    def pkg_env():
        env = dict(os.environ)
        env["PKG_CONFIG_PATH"] = state["pc_dir"]
        env["PKG_CONFIG_LIBDIR"] = state["pc_dir"]
        env["PKG_CONFIG_SYSROOT_DIR"] = root
        return env

    def header_alone():
        p = subprocess.run(["pkg-config", "--cflags", "madoguchi-plugin"], env=pkg_env(),
                           capture_output=True, text=True, timeout=30)
        expect(p.returncode == 0, "pkg-config: %s" % p.stderr)
        cflags = p.stdout.split()
        src = os.path.join(work, "only_header.c")
        with open(src, "w") as f:
            f.write("#include <madoguchi/plugin.h>\nint only_header(void);\n"
                    "int only_header(void) { return MDG_PLUGIN_ABI_MAJOR; }\n")
        p = subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c",
                            src, "-o", os.path.join(work, "only_header.o")] + cflags,
                           capture_output=True, text=True, timeout=60)
        expect(p.returncode == 0, "the header does not build alone: %s" % p.stderr)
    tap.check("the installed header builds alone, -std=c11 -pedantic -Werror, with "
              "pkg-config's flags only", header_alone)

    def build_example():
        src = os.path.join(work, "vendor")
        shutil.copytree(state["example_dir"], src)
        p = subprocess.run(["make", "-f", "Makefile.example"], cwd=src, env=pkg_env(),
                           capture_output=True, text=True, timeout=120)
        expect(p.returncode == 0, "the example did not build: %s %s" % (p.stdout, p.stderr))
        expect(os.path.exists(os.path.join(src, "example.so")), "no example.so")
        state["so"] = os.path.join(src, "example.so")
        state["csv"] = os.path.join(src, "residents.csv")
    tap.check("the example plugin builds out of tree with its Makefile.example and pkg-config",
              build_example)

    def load_it():
        plugins = os.path.join(work, "plugins")
        os.makedirs(plugins)
        os.chmod(plugins, 0o755)
        shutil.copy(state["so"], os.path.join(plugins, "example.so"))
        os.chmod(os.path.join(plugins, "example.so"), 0o755)
        d = Daemon({"plugin_dir": plugins,
                    "plugins": {"vendor-example": {"file": "example.so",
                                                   "config": {"data": state["csv"]}}}})
        try:
            d.start()
            status = d.admin_get("/v1/status").json()
            got = [(p.get("name"), p.get("plugin"), p.get("version"))
                   for p in status.get("plugins", [])]
            expect(got == [("vendor-example", "example", "1.0.0")], "plugins %r" % got)
            loaded = d.events("plugin_loaded")
            expect(len(loaded) == 1 and loaded[0].get("vendor"), "plugin_loaded %r" % loaded)
        finally:
            d.stop()
        expect(d.exit_code == 0, "daemon exit %r" % d.exit_code)
    tap.check("the plugin built from the SDK loads into madoguchid, which lists it in "
              "/v1/status", load_it)


if __name__ == "__main__":
    harness.run(main)
