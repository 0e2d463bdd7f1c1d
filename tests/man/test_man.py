#!/usr/bin/env python3
"""test_man.py: the man pages under man/ render without a single groff or man warning, and they
document what the programs, the config schema and the SDK header really have: every command,
subcommand, option and exit status of `madoguchictl --help`; every option, signal and exit
status of `madoguchid --help`; every key of conf/madoguchi.yaml (first two levels) and of
core/config.c's schema tables; every mdg_/MDG_ name and callback of include/madoguchi/plugin.h.
The lists are read from the programs and files themselves, so a command or key added later
without its documentation fails here.

Needs man-db and groff-base (scripts/install-deps).  Environment: MDG_SRCDIR (default: the
repository root above this file) and MDG_BUILDDIR (default: MDG_SRCDIR/build), as set by
AM_TESTS_ENVIRONMENT; under distcheck the two differ.  Prints TAP."""

import os
import re
import shutil
import subprocess
import sys
import tempfile

SRCDIR = os.environ.get("MDG_SRCDIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILDDIR = os.environ.get("MDG_BUILDDIR") or os.path.join(SRCDIR, "build")
DAEMON = os.path.join(BUILDDIR, "core", "madoguchid")
CTL = os.path.join(BUILDDIR, "ctl", "madoguchictl")

PAGES = {
    "madoguchid": "man/madoguchid.8",
    "madoguchictl": "man/madoguchictl.8",
    "madoguchi.yaml": "man/madoguchi.yaml.5",
    "madoguchi-plugin": "man/madoguchi-plugin.3",
}
SECTIONS = {"madoguchid": "8", "madoguchictl": "8", "madoguchi.yaml": "5",
            "madoguchi-plugin": "3"}


class Tap:
    def __init__(self):
        self.count = 0

    def ok(self, cond, desc, diag=None):
        self.count += 1
        print("%s %d - %s" % ("ok" if cond else "not ok", self.count, desc.replace("#", "\\#")),
              flush=True)
        if not cond and diag:
            for line in str(diag).splitlines():
                print("# " + line, flush=True)
        return cond

    def done(self):
        print("1..%d" % self.count, flush=True)


def render(path):
    """man --warnings on one file, 80 columns, UTF-8.  Returns (exit status, text, stderr)."""
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", LANG="C.UTF-8", MANPAGER="cat",
               PAGER="cat")
    env.pop("MAN_KEEP_FORMATTING", None)
    env.pop("MANOPT", None)
    p = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", path], capture_output=True,
                       env=env, timeout=60)
    text = p.stdout.decode("utf-8", "replace")
    # Plain text whatever the formatter did: no overstrikes, ASCII hyphens (groff writes
    # U+2010 where it hyphenates and U+2212 for \- on some devices).
    text = re.sub(".\b", "", text).replace("\u2010", "-").replace("\u2212", "-")
    return p.returncode, text, p.stderr.decode("utf-8", "replace")


def section(text, name):
    """The body of one top-level section (NAME, OPTIONS, ...) of a rendered page."""
    m = re.search(r"^%s\n(.*?)(?=^[A-Z][A-Z .-]*\n|\Z)" % re.escape(name), text, re.M | re.S)
    return m.group(1) if m else ""


def is_term(text, word):
    """True when word starts an indented line of the rendered text (a .TP tag, a subsection
    heading or an example line), also as the last part of a dotted name (log.level) or one
    of a comma-separated list of terms (opening, closing)."""
    pattern = r"^[ \t]+(?:[\w.-]+, )*(?:[\w-]+\.)*%s(?![\w-])" % re.escape(word)
    return re.search(pattern, text, re.M) is not None


def terms_point(tap, text, name, terms, enough, what):
    """One test point: at least `enough` terms, and each a term (is_term()) in section name of
    the rendered page text; what names the point, %s standing for the terms."""
    body = section(text, name)
    missing = [t for t in terms if not is_term(body, t)]
    tap.ok(len(terms) >= enough and not missing, what % " ".join(terms),
           "missing: %s" % " ".join(missing))


def help_text(program):
    p = subprocess.run([program, "--help"], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError("%s --help exited %d: %s" % (program, p.returncode, p.stderr))
    return p.stdout


def ctl_commands(help_out):
    """(command words, options) of madoguchictl --help: each command line of the Commands
    block as "cmd" or "cmd sub" for each of its |-separated subcommands, and every --option
    and -x of the whole text."""
    block = help_out.split("\nCommands:\n", 1)[1].split("\nOptions:\n", 1)[0]
    commands = []
    for line in block.splitlines():
        m = re.match(r"^  ([a-z][a-z-]*)(.*)$", line)
        if not m:
            continue
        name, rest = m.group(1), m.group(2)
        # The usage part ends where the two-space gap before the description begins.
        usage = "" if re.match(r"\s{2,}|$", rest) else re.split(r"\s{2,}", rest.strip(), 1)[0]
        subs = []
        for alt in usage.split("|"):
            w = re.match(r"\s*([a-z][a-z-]*)(?:\s|$)", alt)
            if w and not alt.strip().startswith("-"):
                subs.append(w.group(1))
        # "--mode immediate|drain" splits into alternatives that are values, not commands.
        subs = [s for s in subs if s not in ("drain", "immediate")]
        commands += ["%s %s" % (name, s) for s in subs] or [name]
    options = sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])(?![\w-])",
                                    help_out)))
    return commands, options


def exit_statuses(help_out):
    m = re.search(r"Exit status:(.*?)(?:\n\n|\Z)", help_out, re.S | re.I)
    return sorted(set(re.findall(r"(?:^|[:;]|\n)\s*(\d)\s", m.group(1)))) if m else []


def yaml_keys(path):
    """Keys of the first two levels of a YAML file written as the shipped example is: two
    spaces per level, keys optionally commented out as "# key: value"."""
    keys = set()
    for line in open(path, encoding="utf-8"):
        m = re.match(r"^( *)(?:# )?([a-z_][a-z0-9_-]*):(?:\s|$)", line)
        if m and len(m.group(1)) in (0, 2):
            keys.add(m.group(2))
    return sorted(keys)


def schema_keys(path):
    src = open(path, encoding="utf-8").read()
    names = set(re.findall(r'\.name = "([a-z_-]+)"', src))
    types = set(re.findall(r'CERTIFICATE_FIELD\("([a-z-]+)"', src))
    return sorted(names), sorted(types)


def header_names(path):
    src = open(path, encoding="utf-8").read()
    code = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    names = set(re.findall(r"\b((?:mdg|MDG)_\w+)\b", code))
    callbacks = set(re.findall(r"\(\*(\w+)\)\s*\(", code))
    return sorted(names), sorted(callbacks)


def main():
    tap = Tap()
    man = shutil.which("man")
    if man is None:
        tap.ok(False, "man is installed", "install man-db and groff-base: scripts/install-deps")
        tap.done()
        return

    # The detector itself: a page with an unknown macro must produce a warning here, or the
    # "no warnings" checks below would pass whatever the pages contain.
    with tempfile.TemporaryDirectory() as tmp:
        bad = os.path.join(tmp, "bad.8")
        with open(bad, "w") as f:
            f.write('.TH BAD 8 2026-11-27 madoguchi\n.SH NAME\nbad \\- bad\n.SH DESCRIPTION\n'
                    '.NOSUCHMACRO x\nText \\*[nosuchstring].\n')
        rc, _, err = render(bad)
        tap.ok(err.strip() != "", "man --warnings reports the warnings of a broken page",
               "no warning for an unknown macro and string (exit %d)" % rc)

    texts = {}
    for name, rel in PAGES.items():
        path = os.path.join(SRCDIR, rel)
        if not os.path.isfile(path):
            tap.ok(False, "%s exists" % rel, "missing: %s" % path)
            continue
        rc, text, err = render(path)
        texts[name] = text
        tap.ok(rc == 0 and err == "" and "NAME" in text and len(text) > 500,
               "%s renders with man --warnings (80 columns, UTF-8): exit 0, no warnings" % rel,
               "exit %d; stderr:\n%s" % (rc, err or "(empty)"))
        src = open(path, encoding="utf-8").read()
        th = re.search(r"^\.TH\s+(\S+)\s+(\S+)", src, re.M)
        tap.ok(th is not None and th.group(1).lower().replace("\\-", "-") == name.lower() and
               th.group(2) == SECTIONS[name] and rel.endswith("." + SECTIONS[name]),
               "%s: .TH names the page and its section %s" % (rel, SECTIONS[name]),
               ".TH line: %s" % (th.group(0) if th else "(none)"))
    if len(texts) != len(PAGES):
        tap.done()
        return

    # Cross-references: each page's SEE ALSO names the three others.
    for name, text in texts.items():
        see = section(text, "SEE ALSO")
        missing = ["%s(%s)" % (o, SECTIONS[o]) for o in PAGES
                   if o != name and "%s(%s)" % (o, SECTIONS[o]) not in see]
        tap.ok(not missing, "%s: SEE ALSO names the other pages" % name,
               "missing: %s" % ", ".join(missing))

    # madoguchid --help: options, signals, exit statuses.
    try:
        dhelp = help_text(DAEMON)
    except Exception as e:  # noqa: BLE001 - reported as a failed test point
        tap.ok(False, "madoguchid --help runs", str(e))
        dhelp = None
    if dhelp is not None:
        text = texts["madoguchid"]
        terms_point(tap, text, "OPTIONS",
                    sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", dhelp))), 1,
                    "madoguchid.8 describes every option of --help under OPTIONS (%s)")
        terms_point(tap, text, "SIGNALS", sorted(set(re.findall(r"\bSIG[A-Z]+\b", dhelp))), 1,
                    "madoguchid.8 describes every signal of --help under SIGNALS (%s)")
        terms_point(tap, text, "EXIT STATUS", exit_statuses(dhelp), 1,
                    "madoguchid.8 lists every exit status of --help (%s)")
        tap.ok("NOTIFY_SOCKET" in text and all(s in text for s in
                                               ("READY=1", "RELOADING=1", "STOPPING=1")),
               "madoguchid.8 documents NOTIFY_SOCKET and READY, RELOADING, STOPPING")

    # madoguchictl --help: commands and subcommands, options, exit statuses.
    try:
        chelp = help_text(CTL)
    except Exception as e:  # noqa: BLE001
        tap.ok(False, "madoguchictl --help runs", str(e))
        chelp = None
    if chelp is not None:
        text = texts["madoguchictl"]
        commands, options = ctl_commands(chelp)
        cmd_text = section(text, "COMMANDS")
        missing = [c for c in commands if not is_term(cmd_text, c)]
        tap.ok(len(commands) >= 10 and not missing,
               "madoguchictl.8 describes every command of --help under COMMANDS (%d: %s)" %
               (len(commands), ", ".join(commands)), "missing: %s" % ", ".join(missing))
        missing = [o for o in options if not re.search(r"(?<![\w-])%s(?![\w-])" %
                                                       re.escape(o), text)]
        tap.ok(len(options) >= 10 and not missing,
               "madoguchictl.8 names every option of --help (%d)" % len(options),
               "missing: %s" % " ".join(missing))
        terms_point(tap, text, "OPTIONS",
                    re.findall(r"^  (?:-\w, )?(--[a-z-]+)", chelp.split("\nOptions:\n", 1)[1],
                               re.M), 1,
                    "madoguchictl.8 describes every global option under OPTIONS (%s)")
        terms_point(tap, text, "EXIT STATUS",
                    sorted(set(re.findall(r"^  (\d)  ", chelp.split("Exit status:", 1)[-1],
                                          re.M))), 3,
                    "madoguchictl.8 lists every exit status of --help (%s)")

    # madoguchi.yaml(5): the example's keys and the schema's.
    text = texts["madoguchi.yaml"]
    keys = yaml_keys(os.path.join(SRCDIR, "conf", "madoguchi.yaml"))
    missing = [k for k in keys if not is_term(text, k)]
    tap.ok(len(keys) >= 30 and not missing,
           "madoguchi.yaml.5 describes every top- and second-level key of conf/madoguchi.yaml "
           "(%d)" % len(keys), "missing: %s" % " ".join(missing))
    names, types = schema_keys(os.path.join(SRCDIR, "core", "config.c"))
    missing = [k for k in names if not is_term(text, k)]
    missing += [t for t in types if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(t), text)]
    tap.ok(len(names) >= 50 and len(types) == 7 and not missing,
           "madoguchi.yaml.5 describes every key of core/config.c's schema (%d keys, %d types)"
           % (len(names), len(types)), "missing: %s" % " ".join(missing))

    # madoguchi-plugin(3): every SDK name and callback of the header.
    text = texts["madoguchi-plugin"]
    names, callbacks = header_names(os.path.join(SRCDIR, "include", "madoguchi", "plugin.h"))
    missing = [n for n in names if not re.search(r"(?<!\w)%s(?!\w)" % re.escape(n), text)]
    tap.ok(len(names) >= 25 and not missing,
           "madoguchi-plugin.3 names every mdg_/MDG_ identifier of plugin.h (%d)" % len(names),
           "missing: %s" % " ".join(missing))
    missing = [c for c in callbacks if not re.search(r"(?<![\w>.])%s\(" % re.escape(c), text)]
    tap.ok(len(callbacks) >= 20 and not missing,
           "madoguchi-plugin.3 describes every host function and plugin callback (%d)" %
           len(callbacks), "missing: %s" % " ".join(missing))
    tap.done()


if __name__ == "__main__":
    main()
    sys.exit(0)
