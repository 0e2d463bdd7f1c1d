#!/usr/bin/env python3
"""test_plugin_check.py: `madoguchictl plugin check`, the conformance check a vendor runs on a
plugin and attaches to its delivery (docs/plugin-sdk.md, "Conformance check").

The shipped plugins pass all six checks: the example (its residents.csv named relative to its
--config file), sqlite-registry on a demo city's registry, and fujitsu-like against the vendor
simulator, both answering at once and slowly (every short deadline missed: the plugin still
passes, since it times out as it should).  The well-made mock passes too, and each of its
deliberately broken variants fails exactly the check named after its defect under the same
settings: answers crossed under concurrency, cancel ignored, deadline ignored.  A plugin the
host refuses fails the abi check; usage errors exit 2 without a report; no report, text or
JSON, holds a resident code or a name."""

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect  # noqa: E402

PLUGINS = os.environ.get("MDG_PLUGINS") or os.path.join(harness.BUILDDIR, "plugins", ".libs")
TEST_PLUGINS = os.environ.get("MDG_TEST_PLUGINS") or os.path.join(harness.BUILDDIR, "tests",
                                                                  "plugins", ".libs")
CHECKS = ["abi", "fetch", "concurrency", "deadline", "cancel", "shutdown"]
LINE = re.compile(r"^  (PASS|FAIL|SKIP)  ([a-z]+) +(.*)$")
RUN_TIMEOUT = 60
# Runs at once: each mostly waits on timers and backends, so a few overlap well on two cores
# (every bound the check applies is far above what a busy machine adds).
PARALLEL = 3


class Run:
    """One `madoguchictl plugin check` and what it printed."""

    def __init__(self, args, env=None):
        t0 = time.monotonic()
        p = subprocess.run([harness.CTL, "plugin", "check"] + args, capture_output=True,
                           text=True, timeout=RUN_TIMEOUT, env=env)
        self.seconds = time.monotonic() - t0
        self.code = p.returncode
        self.out = p.stdout
        self.err = p.stderr
        self.results = {}
        for line in self.out.splitlines():
            m = LINE.match(line)
            if m:
                self.results[m.group(2)] = (m.group(1), m.group(3))

    def describe(self):
        return "exit %d after %.1f s\n%s\n%s" % (self.code, self.seconds, self.out,
                                                 self.err[-3000:])

    def expect_verdict(self, failing=()):
        """Exit 1 with exactly the checks in failing FAILed, 0 when none; the rest PASS."""
        expect(self.code == (1 if failing else 0), self.describe())
        expect(list(self.results) == CHECKS, "checks %r\n%s" % (list(self.results),
                                                                 self.describe()))
        for name in CHECKS:
            want = "FAIL" if name in failing else "PASS"
            expect(self.results[name][0] == want,
                   "%s is %s, want %s\n%s" % (name, self.results[name][0], want,
                                              self.describe()))
        verdict = "FAIL" if failing else "PASS"
        expect(re.search(r"^  verdict +%s \(%d of 6 checks passed\)$" % (verdict,
                                                                       6 - len(failing)),
                         self.out, re.M), self.describe())

    def expect_clean(self):
        if harness.SANITIZERS:
            found = [m for m in harness.SANITIZER_MARKERS if m in self.err]
            expect(not found, "sanitizer findings %r:\n%s" % (found, self.err[-4000:]))


def private_values(rows):
    """Resident codes and names (with their parts) that no report may contain."""
    values = set()
    for code, name in rows:
        values.add(code)
        values.add(name)
        values.update(part for part in name.split() if len(part) >= 2)
    return values


def expect_private(run, values):
    leaked = sorted(v for v in values if v and v in run.out + run.err)
    expect(not leaked, "the report holds personal data %r\n%s" % (leaked, run.out))


def residents_args(codes):
    out = []
    for c in codes:
        out += ["--resident", c]
    return out


def start_sim(registry, *args):
    p = subprocess.Popen([harness.VENDOR_SIM, "--registry", registry, "--listen", "127.0.0.1:0"]
                         + list(args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True)
    line = p.stdout.readline().strip()
    expect(line.startswith("listening 127.0.0.1:"), "simulator said %r" % line)
    return p, line.split()[1]


def stop_sim(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main(tap):
    work = tempfile.mkdtemp(prefix="mdg-pcheck-")
    t0 = time.monotonic()
    sims = []
    try:
        with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
            run_all(tap, work, pool, sims)
    finally:
        for p in sims:
            stop_sim(p)
        shutil.rmtree(work, ignore_errors=True)
    tap.diag("test_plugin_check took %.1f s" % (time.monotonic() - t0))


def run_all(tap, work, pool, sims):
    """Starts every run (they are independent), then judges them in order."""
    city = os.path.join(work, "city")
    gen = subprocess.Popen([sys.executable, os.path.join(harness.SRCDIR, "scripts", "demo-city"),
                            "--out", city, "--residents", "60"], stdout=subprocess.DEVNULL)
    judge = [example_checks(work, pool), broken_checks(work, pool), usage_checks(work, pool)]
    expect(gen.wait(120) == 0, "scripts/demo-city failed")
    registry = os.path.join(city, "registry.sqlite")
    rows = [json.loads(line) for line in open(os.path.join(city, "demo", "residents.jsonl"),
                                               encoding="utf-8")]
    # Residents with a record of every type (refusals other than NO_RECORD still are
    # records) and no stale history, so that every backend answers every fetch.
    full = [r for r in rows
            if all(v != "NO_RECORD" for v in r["refusal"].values()) and r["stale"] is None]
    expect(len(full) >= 4, "the demo city has %d residents with every record" % len(full))
    chosen = full[:4]
    private = private_values((r["resident_code"], r["name"]) for r in chosen)
    codes = [r["resident_code"] for r in chosen]
    judge.insert(1, registry_checks(work, pool, registry, codes, private))
    judge.insert(2, vendor_checks(work, pool, registry, codes, private, sims))
    for fn in judge:
        fn(tap)


def example_checks(work, pool):
    # The config block names its data file relative to itself, as a vendor's would.
    ex = os.path.join(work, "example")
    os.makedirs(ex)
    shutil.copy(os.path.join(harness.SRCDIR, "plugins", "example", "residents.csv"), ex)
    conf = os.path.join(ex, "example.yaml")
    with open(conf, "w") as f:
        f.write("# the example plugin's settings, as under plugins.NAME.config\n"
                "data: residents.csv\nlatency: 5ms\n")
    rows = []
    with open(os.path.join(ex, "residents.csv"), encoding="utf-8") as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                cells = line.rstrip("\n").split(",")
                rows.append((cells[0], cells[3]))
    codes = [c for c, _ in rows[:3]]
    private = private_values(rows[:3])
    so = os.path.join(PLUGINS, "example.so")
    args = [so, "--config", conf] + residents_args(codes)
    text_f = pool.submit(Run, args)
    js_f = pool.submit(Run, args + ["--json"])
    return lambda tap: judge_example(tap, text_f.result(), js_f.result(), private)


def judge_example(tap, text, js, private):
    def passes():
        text.expect_verdict()
        text.expect_clean()
        expect(re.search(r"^  declared +example 1\.0\.0 by \"madoguchi project\", plugin ABI "
                         r"1\.0, non-blocking, with cancel\(\)$", text.out, re.M),
               text.describe())
        expect(re.search(r"^  host +madoguchictl \S+, plugin ABI 1\.0$", text.out, re.M),
               text.describe())
        expect(re.search(r"^  date +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", text.out, re.M),
               text.describe())
        expect(re.search(r"^  plugin file +example\.so \(\d+ bytes, sha256 [0-9a-f]{64}\)$",
                         text.out, re.M), text.describe())
        expect(re.search(r"^  figures +\d+ fetches", text.out, re.M), text.describe())
    tap.check("the example plugin passes all six checks (exit 0); the report names the "
              "plugin, its declared name, version and ABI, the host and the date (%.1f s)"
              % text.seconds, passes)

    def json_report():
        expect(js.code == 0, js.describe())
        doc = json.loads(js.out)
        expect(doc["report"] == "madoguchi-plugin-check" and doc["verdict"] == "PASS", doc)
        expect(doc["plugin"]["name"] == "example" and doc["plugin"]["version"] == "1.0.0"
               and doc["plugin"]["abi"] == "1.0" and doc["plugin"]["file"] == "example.so",
               doc["plugin"])
        expect(doc["host"]["abi"] == "1.0" and doc["host"]["version"], doc["host"])
        expect([c["name"] for c in doc["checks"]] == CHECKS, doc["checks"])
        for c in doc["checks"]:
            expect(c["result"] == "PASS" and c["reason"], c)
        concurrency = doc["checks"][CHECKS.index("concurrency")]["figures"]
        expect(concurrency["fetches"] == 64 and concurrency["crossed"] == 0, concurrency)
        expect(doc["settings"]["residents"] == 3 and doc["settings"]["concurrency"] == 64,
               doc["settings"])
        expect(doc["figures"]["fetches"] > 0 and doc["figures"]["records"] > 0,
               doc["figures"])
    tap.check("--json prints the same report as one JSON document (checks in order, "
              "figures, verdict)", json_report)

    def private_example():
        expect_private(text, private)
        expect_private(js, private)
    tap.check("the example's reports hold no resident code or name (residents are #1-#3)",
              private_example)


def registry_checks(work, pool, registry, codes, private):
    conf = os.path.join(work, "registry.yaml")
    with open(conf, "w") as f:
        f.write("database: %s\n" % registry)
    run_f = pool.submit(Run, [os.path.join(PLUGINS, "sqlite-registry.so"), "--config", conf]
                        + residents_args(codes))
    return lambda tap: judge_registry(tap, run_f.result(), private)


def judge_registry(tap, run, private):
    def passes():
        run.expect_verdict()
        run.expect_clean()
        expect("7 types" in run.results["fetch"][1], run.describe())
        expect_private(run, private)
    tap.check("sqlite-registry (blocking, no cancel()) passes all six checks on a demo "
              "registry, every declared type fetched; no resident code or name in the report "
              "(%.1f s)" % run.seconds, passes)


def vendor_checks(work, pool, registry, codes, private, sims):
    so = os.path.join(PLUGINS, "fujitsu-like.so")
    sim, endpoint = start_sim(registry)
    sims.append(sim)
    conf = os.path.join(work, "vendor.yaml")
    with open(conf, "w") as f:
        f.write("endpoint: %s\npool_size: 2\n" % endpoint)
    run_f = pool.submit(Run, [so, "--config", conf] + residents_args(codes))
    # Every answer takes 200 ms: each 1 and 100 ms deadline is missed, and the plugin must
    # still pass by timing out properly (the late answers are dropped by the host).
    sim, endpoint = start_sim(registry, "--mode", "slow", "--latency-ms", "200")
    sims.append(sim)
    slow_conf = os.path.join(work, "vendor-slow.yaml")
    with open(slow_conf, "w") as f:
        f.write("endpoint: %s\n" % endpoint)
    slow_f = pool.submit(Run, [so, "--config", slow_conf, "--certificate", "residence",
                               "--concurrency", "16", "--json"] + residents_args(codes[:2]))
    return lambda tap: judge_vendor(tap, run_f.result(), slow_f.result(), private)


def judge_vendor(tap, run, slow, private):
    def passes():
        run.expect_verdict()
        run.expect_clean()
        expect_private(run, private)
    tap.check("fujitsu-like passes all six checks against the vendor simulator (%.1f s)"
              % run.seconds, passes)

    def passes_slow():
        expect(slow.code == 0, slow.describe())
        doc = json.loads(slow.out)
        results = {c["name"]: c for c in doc["checks"]}
        expect(all(c["result"] == "PASS" for c in results.values()), slow.out)
        deadline = results["deadline"]["figures"]
        expect(deadline["timed_out"] == deadline["fetches"] == 8, deadline)
        expect(deadline["answered_in_time"] == 0, deadline)
        expect(doc["figures"]["late_completions"] > 0, doc["figures"])
        slow.expect_clean()
        expect_private(slow, private)
    tap.check("fujitsu-like against a slow backend (200 ms): every short deadline is missed, "
              "the plugin times out properly and passes all six checks (%.1f s)"
              % slow.seconds, passes_slow)


def broken_checks(work, pool):
    fast = os.path.join(work, "hold-fast.yaml")
    with open(fast, "w") as f:
        f.write("mode: hold\ndelay_ms: 50\ncapacity: 16\n")
    # Later than 1 ms + the check's 250 ms tolerance, so that ignoring a deadline shows.
    slow = os.path.join(work, "hold-slow.yaml")
    with open(slow, "w") as f:
        f.write("mode: hold\ndelay_ms: 300\n")
    codes = ["80000000001", "80000000002", "80000000003"]
    common = ["--certificate", "residence", "--concurrency", "16"] + residents_args(codes)

    def mock(name, conf):
        return pool.submit(Run, [os.path.join(TEST_PLUGINS, name + ".so"), "--config", conf]
                           + common)
    good = [(mock("mock", fast), "answers in 50 ms, holds at most 16"),
            (mock("mock", slow), "answers in 300 ms")]
    cases = (
        (mock("cross_answers", fast), "concurrency",
         "answers crossed under concurrency (incident I2)", "another resident"),
        (mock("ignore_cancel", fast), "cancel", "cancel() that releases nothing",
         "still hold the plugin's capacity"),
        (mock("ignore_deadline", slow), "deadline", "deadline ignored and no cancel()",
         "has no cancel() and had not completed"),
    )
    refused = pool.submit(Run, [os.path.join(TEST_PLUGINS, "bad_major.so")]
                          + residents_args(codes))
    leaky_conf = os.path.join(work, "leaky.yaml")
    with open(leaky_conf, "w") as f:
        f.write("mode: leaky\n")
    leaky = mock("mock", leaky_conf)
    overflow = mock("stack_overflow", fast)
    private = set(codes) | {"見本", "太郎"}
    return lambda tap: judge_broken(tap, good, cases, refused.result(), private, leaky.result(),
                                    overflow.result())


def judge_broken(tap, good, cases, refused, private, leaky, overflow):
    def crashed():
        expect(overflow.code == 1, overflow.describe())
        expect(re.search(r"^  FAIL  fetch +the plugin crashed \(signal 11\) during this check$",
                         overflow.out, re.M) and "verdict        FAIL" in overflow.out,
               overflow.describe())
    tap.check("a plugin that overflows the loop thread's stack still gets a report: FAIL in the "
              "fetch check, the plugin crashed (signal 11), exit 1", crashed)

    def scrubbed():
        expect(leaky.code == 1 and leaky.results.get("fetch", ("",))[0] == "FAIL",
               leaky.describe())
        expect("rcresident #" in leaky.out, "the glued code was not replaced:\n" + leaky.out)
        expect_private(leaky, private)
        for code in private:  # the code cut at the end: its first five characters
            expect(code[:5] not in leaky.out + leaky.err,
                   "a cut-off resident code reached the report:\n" + leaky.out)
    tap.check("a plugin whose reasons carry resident codes (glued to letters, cut off at the "
              "end) fails, and the report and stderr name them only as resident #N", scrubbed)

    for run_f, label in good:
        run = run_f.result()

        def passes(run=run):
            run.expect_verdict()
            run.expect_clean()
            expect_private(run, private)
        tap.check("the well-made mock (%s) passes all six checks (%.1f s)"
                  % (label, run.seconds), passes)

    for run_f, check, what, reason in cases:
        run = run_f.result()

        def fails(run=run, check=check, reason=reason):
            run.expect_verdict(failing=(check,))
            expect(reason in run.results[check][1], run.describe())
            run.expect_clean()
            expect_private(run, private)
        tap.check("a plugin with %s fails the %s check, and only it: exit 1 (%.1f s)"
                  % (what, check, run.seconds), fails)

    def abi_fails():
        expect(refused.code == 1, refused.describe())
        expect(refused.results.get("abi", ("",))[0] == "FAIL", refused.describe())
        expect("ABI 2.0" in refused.results["abi"][1], refused.describe())
        expect(all(refused.results[c][0] == "SKIP" for c in CHECKS[1:]), refused.describe())
        expect("verdict        FAIL" in refused.out, refused.describe())
    tap.check("a plugin built for another ABI major fails the abi check with the host's "
              "reason; the other checks are not run (exit 1)", abi_fails)


def usage_checks(work, pool):
    so = os.path.join(PLUGINS, "example.so")
    conf = os.path.join(work, "example", "example.yaml")
    two = residents_args(["90000000001", "90000000002"])
    cases = [
        ([], "which plugin"),
        ([so, "--config", conf], "--resident CODE"),
        ([so, "--config", conf, "--resident", "90000000001"], "at least two"),
        ([so, "--config", conf, "--concurrency", "0"] + two, "--concurrency"),
        ([so, "--config", conf, "--frobnicate"] + two, "unknown option"),
        ([so, "--config", conf, "--certificate", "passport"] + two, "unknown type"),
        ([so, "--config", conf, "--certificate", "seal"] + two, "does not serve"),
        ([so, "--config", os.path.join(work, "absent.yaml")] + two, "absent.yaml"),
        ([os.path.join(work, "absent.so")] + two, "absent.so"),
        ([so, "--config", conf, "--municipality", "14100"] + two, "six-digit"),
    ]

    runs = [(args, message, pool.submit(Run, args)) for args, message in cases]
    bad = os.path.join(work, "example", "bad.yaml")
    with open(bad, "w") as f:
        f.write("data: residents.csv\nlatency: soon\n")
    bad_f = pool.submit(Run, [so, "--config", bad] + two)
    return lambda tap: judge_usage(tap, runs, bad, bad_f.result())


def judge_usage(tap, runs, bad, bad_run):
    def usage():
        for args, message, run_f in runs:
            run = run_f.result()
            expect(run.code == 2, "%r: %s" % (args, run.describe()))
            expect(run.out == "", "%r printed a report: %s" % (args, run.out))
            expect(message in run.err, "%r: stderr %r lacks %r" % (args, run.err, message))
            run.expect_clean()
    tap.check("usage errors exit 2 with a message saying what to pass, and print no report",
              usage)

    def bad_block():
        run = bad_run
        expect(run.code == 1 and run.results["abi"][0] == "FAIL", run.describe())
        # The position is the vendor's own file's, not the check's scratch config's.
        expect("%s:2:10: plugins.check.config.latency" % bad in run.results["abi"][1],
               run.describe())
    tap.check("a bad value in the --config block fails the abi check at its line and column "
              "in that file", bad_block)


if __name__ == "__main__":
    harness.run(main)
