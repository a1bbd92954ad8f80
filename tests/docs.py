#!/usr/bin/env python3
"""The documentation is kept honest by make check and meson test:

1. docs/api.md equals what scripts/gen-api.py makes of the headers, and every
   public declaration has a doc comment (gen-api.py --check).
2. Every ```c block of README.md and docs/*.md (api.md aside: it is the
   headers) compiles: warning-free, C11, pedantic, against <cachekit.h>.

A block is compiled on its own, after the includes any host would write
(<cachekit.h>, <jansson.h>, the standard headers). A block made of
statements only (no function of its own) is compiled as the body of a
function. Names a block takes from its surroundings are declared in a
comment on its first line, which the test turns into declarations:

    /* given: ck_client *client; ck_cache *users; */

Environment: CC (default cc), CFLAGS_EXTRA (e.g. pkg-config's flags for
jansson and hiredis), run from anywhere.
"""
import os
import re
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRELUDE = """#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <cachekit.h>
"""


def blocks(path):
    text = open(path).read()
    for m in re.finditer(r"^```c[ \t]*\n(.*?)^```", text, re.S | re.M):
        line = text.count("\n", 0, m.start()) + 1
        yield line, m.group(1)


def normalized(code):
    code = re.sub(r"/\*.*?\*/", " ", code, flags=re.S)
    return re.sub(r"\s+", " ", code).replace(" ;", ";").strip()


def header_text():
    out = []
    for d, _, fs in os.walk(os.path.join(ROOT, "include")):
        for f in fs:
            out.append(normalized(open(os.path.join(d, f)).read()))
    return "\n".join(out)


def unit(code):
    given = ""
    includes = "".join(l + "\n" for l in code.split("\n") if l.startswith("#include"))
    code = "\n".join(l for l in code.split("\n") if not l.startswith("#include"))
    m = re.match(r"\s*/\*\s*given:(.*?)\*/", code, re.S)
    if m:
        # variables static, functions extern (declared, defined elsewhere)
        given = "\n".join(("" if "(" in d else "static ") + d.strip() + ";"
                          for d in m.group(1).split(";") if d.strip())
    given = includes + given
    # a function definition of its own: a line at column 0 ending in ')' or
    # '{' that opens a body
    has_function = re.search(r"^(?!(?:if|for|while|switch|return|else)\b)[A-Za-z_][\w \t\*]*"
                             r"\([^;]*\)\s*\n?\{", code, re.M) is not None
    if has_function:
        return PRELUDE + given + "\n" + code
    return PRELUDE + given + "\nvoid ck_doc_snippet(void);\nvoid ck_doc_snippet(void)\n{\n" + code + "\n}\n"


def main():
    failures = 0
    cc = os.environ.get("CC", "cc")
    extra = shlex.split(os.environ.get("CFLAGS_EXTRA", ""))
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen-api.py"), "--check"])
    failures += r.returncode != 0
    files = [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(ROOT, "docs", f) for f in os.listdir(os.path.join(ROOT, "docs"))
        if f.endswith(".md") and f != "api.md")
    n = 0
    headers = header_text()
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            for line, code in blocks(path):
                n += 1
                if code.lstrip().startswith("typedef"):
                    # a declaration quoted from a public header: it must be
                    # the header's, word for word (comments aside)
                    if normalized(code) not in headers:
                        failures += 1
                        print("doc-snippets: %s:%d quotes a declaration the headers do not "
                              "have (any more)" % (os.path.relpath(path, ROOT), line))
                    continue
                src = os.path.join(tmp, "snippet%d.c" % n)
                with open(src, "w") as f:
                    f.write(unit(code))
                cmd = [cc, "-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror",
                       "-Wno-unused-function", "-Wno-unused-variable",
                       "-Wno-unused-but-set-variable", "-Wno-unused-parameter",
                       "-D_POSIX_C_SOURCE=200809L", "-I" + os.path.join(ROOT, "include"),
                       "-fsyntax-only", src] + extra
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    failures += 1
                    print("doc-snippets: %s:%d does not compile:" % (os.path.relpath(path, ROOT), line))
                    print(r.stderr.replace(src, "snippet"))
    print("doc-snippets: %d C blocks in README.md and docs/*.md, %d failed" % (n, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
