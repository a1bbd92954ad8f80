#!/usr/bin/env python3
"""Generate docs/api.md from the doc comments of the public headers.

    python3 scripts/gen-api.py            print docs/api.md to stdout
    python3 scripts/gen-api.py --check    exit 1 (saying why) when docs/api.md
                                          differs from the headers, or when a
                                          public declaration lacks a doc comment
                                          or a function's comment names no
                                          return value

A doc comment is a block comment opening with two stars, placed right above
a declaration; the declaration runs to the first semicolon outside braces
(or is one #define line). Trailing member comments stay in the declaration.
"""
import os
import re
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UMBRELLA = os.path.join(ROOT, "include", "cachekit.h")


def headers():
    out = [UMBRELLA]
    with open(UMBRELLA) as f:
        for line in f:
            m = re.match(r'#include "(cachekit/[a-z_]+\.h)"', line)
            if m:
                out.append(os.path.join(ROOT, "include", m.group(1)))
    return out


def comment_text(raw):
    """The words of a /* */ or /** */ comment, without the stars."""
    body = raw[3:-2] if raw.startswith("/**") else raw[2:-2]
    lines = [re.sub(r"^\s*\* ?", "", l).rstrip() for l in body.split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if lines:
        lines[0] = lines[0].lstrip()  # "/** Text" and "/**\n * Text" alike
        rest = textwrap.dedent("\n".join(lines[1:])).split("\n") if len(lines) > 1 else []
        lines = lines[:1] + rest
    return "\n".join(lines)


def declaration_end(text, i):
    """Index just past the declaration starting at i."""
    if text.startswith("#define", i):
        j = text.find("\n", i)
        return len(text) if j < 0 else j
    depth = 0
    j = i
    while j < len(text):
        c = text[j]
        if text.startswith("/*", j):
            j = text.find("*/", j) + 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == ";" and depth == 0:
            return j + 1
        j += 1
    return len(text)


def decl_name(decl):
    if decl.startswith("#define"):
        return decl.split()[1].split("(")[0]
    flat = re.sub(r"/\*.*?\*/", "", decl, flags=re.S)
    m = re.match(r"enum\s*\{\s*(\w+)", flat)  # an anonymous enum: its first name
    if m:
        return m.group(1)
    flat = re.sub(r"\{.*\}", "{}", flat, flags=re.S)
    m = re.search(r"(\w+)\s*\((?:[^()]|\([^()]*\))*\)\s*;\s*$", flat)
    if m and "typedef" not in flat.split("(")[0]:
        return m.group(1)
    m = re.search(r"\(\s*\*\s*(\w+)\s*\)", flat)  # function pointer typedef
    if m:
        return m.group(1)
    m = re.search(r"(\w+)\s*;\s*$", flat)
    return m.group(1) if m else "?"


def depths(text):
    """Brace depth at every offset, comments skipped. The braces of the
    C++ guard (extern "C" { ... }) do not count."""
    text = re.sub(r'extern "C" \{', lambda m: " " * len(m.group(0)), text)
    text = re.sub(r"(#ifdef __cplusplus\n)\}(\n#endif)", r"\1 \2", text)
    d = [0] * (len(text) + 1)
    depth = 0
    i = 0
    while i < len(text):
        skip = None
        if text.startswith("/*", i):
            skip = text.find("*/", i) + 2
        elif text[i] == "#" and text[text.rfind("\n", 0, i) + 1:i].strip() == "":
            skip = text.find("\n", i)  # a preprocessor line: extern "C" { is one
            skip = len(text) if skip < 0 else skip
        if skip is not None:
            for k in range(i, skip):
                d[k] = depth
            i = skip
            continue
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
        d[i] = depth
        i += 1
    d[len(text)] = depth
    return d


def parse(path):
    text = open(path).read()
    intro = ""
    m = re.match(r"\s*(/\*.*?\*/)", text, re.S)
    if m:
        intro = comment_text(m.group(1))
    items = []
    documented = []  # spans of documented declarations
    depth = depths(text)
    for m in re.finditer(r"/\*\*(?!<).*?\*/", text, re.S):
        if depth[m.start()] != 0:
            continue  # a member's comment: part of its struct's declaration
        i = m.end()
        while i < len(text) and text[i] in " \t\n":
            i += 1
        end = declaration_end(text, i)
        decl = text[i:end].strip()
        if not decl or decl.startswith("/*"):
            continue
        items.append((decl_name(decl), decl, comment_text(m.group(0))))
        documented.append((i, end))
    problems = []
    for m in re.finditer(r"\bCACHEKIT_API\b", text):
        if text[max(0, m.start() - 8):m.start()].endswith("define "):
            continue
        if not any(a <= m.start() < b for a, b in documented):
            line = text.count("\n", 0, m.start()) + 1
            problems.append("%s:%d: public declaration without a /** */ doc comment"
                            % (os.path.relpath(path, ROOT), line))
    for name, decl, doc in items:
        if "CACHEKIT_API" in decl and "(" in decl and not re.match(r"CACHEKIT_API\s+void\b", decl):
            if not re.search(r"@return|\breturns?\b|\bReturns?\b", doc):
                problems.append("%s: %s: the doc comment names no return value"
                                % (os.path.relpath(path, ROOT), name))
    return intro, items, problems


def render():
    out = ["# API reference", "",
           "Generated from the doc comments of the public headers by",
           "`scripts/gen-api.py`; `make check` fails when this file and the headers",
           "differ. Regenerate with `python3 scripts/gen-api.py > docs/api.md`.",
           "Thread safety and ownership rules that hold for the whole API are in",
           "[threading.md](threading.md) and [ownership.md](ownership.md).", ""]
    problems = []
    toc = []
    body = []
    for path in headers():
        rel = os.path.relpath(path, os.path.join(ROOT, "include"))
        intro, items, probs = parse(path)
        problems += probs
        anchor = re.sub(r"[^a-z0-9]+", "", rel.lower())
        toc.append("- [`<%s>`](#%s): %s" % (rel, anchor, ", ".join("`%s`" % n for n, _, _ in items)
                                             if items else "the umbrella header"))
        body += ["## %s" % rel, ""]
        if intro:
            body += [intro, ""]
        for name, decl, doc in items:
            # @param / @return lines become list items (their continuation
            # lines are indented already)
            doc = re.sub(r"^@(\w+)", r"- **@\1**", doc, flags=re.M)
            doc = re.sub(r"^(- \*\*@\w+\*\*.*)", r"\n\1", doc, count=1, flags=re.M)
            body += ["### %s" % name, "", "```c", decl, "```", "", doc, ""]
    return "\n".join(out + toc + [""] + body).rstrip() + "\n", problems


def main():
    text, problems = render()
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        api = os.path.join(ROOT, "docs", "api.md")
        current = open(api).read() if os.path.exists(api) else ""
        if current != text:
            problems.append("docs/api.md is out of date: python3 scripts/gen-api.py > docs/api.md")
        for p in problems:
            print("api-docs: " + p)
        if not problems:
            print("api-docs: docs/api.md matches the headers; every public declaration is documented")
        return 1 if problems else 0
    sys.stdout.write(text)
    for p in problems:
        print("api-docs: " + p, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
