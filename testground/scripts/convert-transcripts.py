#!/usr/bin/env python3
"""Rewrites transcripts into the shared grammar of mail_testground::transcript, in place.

    python3 testground/scripts/convert-transcripts.py FILE_OR_DIR...

Idempotent: a file already in the shared grammar is left as it is. What it rewrites:

- POP3's `S~ text` (server bytes without CRLF) becomes `S> text`.
- `# needs: sasl` lines (scaffolding from before SASL was implemented) are dropped.
- A comment or blank line between two blocks of the same kind no longer ends a block in the
  shared grammar; where one did (POP3's old rule), `!read` is inserted between server blocks,
  and a client block split that way is reported, since it cannot be expressed.

It prints one line per changed file and exits 1 if anything needs a hand.
"""

import pathlib
import sys


def convert(text):
    out = []
    problems = []
    prev = None  # kind of the last block line: "S", "C" or None
    gap = False  # a comment/blank line since that block line
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip() == "# needs: sasl":
            continue
        if line.startswith("S~ "):
            line = "S> " + line[3:]
        elif line == "S~":
            line = "S> "
        kind = line[0] if line[:2] in ("S:", "S>", "C:", "C>") else None
        if kind is None and (line.strip() == "" or line.startswith("#")):
            gap = gap or prev is not None
            out.append(line)
            continue
        if kind is not None and kind == prev and gap:
            if kind == "S":
                # Before the comment lines, right after the block they ended.
                at = len(out)
                while at > 0 and (out[at - 1].strip() == "" or out[at - 1].startswith("#")):
                    at -= 1
                out.insert(at, "!read")
            else:
                problems.append(f"line {number}: two client blocks split only by a comment")
        prev, gap = kind, False
        out.append(line)
    return "\n".join(out), problems


def main(args):
    files = []
    for arg in args:
        path = pathlib.Path(arg)
        files.extend(sorted(path.glob("*.txt")) if path.is_dir() else [path])
    failed = False
    for path in files:
        old = path.read_text()
        new, problems = convert(old)
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
            failed = True
        if new != old:
            path.write_text(new)
            print(f"converted {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
