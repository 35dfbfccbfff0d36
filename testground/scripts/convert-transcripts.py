#!/usr/bin/env python3
"""Rewrites transcripts written in a suite's older spelling into the shared grammar of
mail_testground::transcript, in place.

    python3 testground/scripts/convert-transcripts.py --from pop3 FILE_OR_DIR...
    python3 testground/scripts/convert-transcripts.py --from smtp FILE_OR_DIR...

Give it only files in the old spelling of the named suite (the POP3 suite's
`!misuse <api> => <Reason>` and relative `!advance`, or the SMTP suite's bare call directives);
a file already converted is left alone except that, for POP3, an `!error` expectation that does
not end in `..` gets one (the old POP3 runner matched error text anywhere in the error's Debug;
the shared rule is "equal, or a prefix when written with a trailing `..`").

POP3 (old runner: pop3-proto/tests/common before the shared grammar):
- `S~ text` -> `S> text`
- `!call tls` -> `!tls`
- `!misuse <api> => <Reason>` -> `!call <api>` (`!tls` for `tls`) then `!misuse <Reason>..`
- `!error <text>` -> `!error <text>..` (text that stood inside the Debug, not at its start,
  still needs a hand: the test names the line and the whole Debug)
- `!advance <n>` -> `!at <seconds since the session started>`; `!deadline <n>` (from now) ->
  `!deadline <seconds since the session started>`; `!new` starts a session (and its clock) again
- `# needs: sasl` lines are dropped (scaffolding from before SASL was implemented)

SMTP (old runner: smtp-submit/tests/harness before the shared grammar):
- `!auth|!mail|!send|!write|!finish|!quit <args>` -> `!call <name> <args>`

Both: a comment or blank line between two blocks of the same kind no longer ends a block;
where one did, `!read` is inserted between server blocks, and a client block split that way is
reported (exit status 1), since it cannot be expressed.
"""

import argparse
import pathlib
import sys

SMTP_CALLS = ("auth", "mail", "send", "write", "finish", "quit")


def seconds(value):
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def convert_pop3(line, state):
    if line.strip() == "# needs: sasl":
        return []
    if line.startswith("S~ "):
        return ["S> " + line[3:]]
    if line == "S~":
        return ["S> "]
    if line == "!new":
        state["now"] = 0.0
        return [line]
    if line == "!call tls":
        return ["!tls"]
    if line.startswith("!misuse ") and " => " in line:
        api, reason = line[len("!misuse "):].split(" => ", 1)
        call = "!tls" if api.strip() == "tls" else f"!call {api}"
        return [call, f"!misuse {reason}.."]
    if line.startswith("!error ") and not line.endswith(".."):
        return [line + ".."]
    if line.startswith("!advance "):
        state["now"] += float(line.split()[1])
        return [f"!at {seconds(state['now'])}"]
    if line.startswith("!deadline ") and line.split()[1] != "none" and state["relative"]:
        return [f"!deadline {seconds(state['now'] + float(line.split()[1]))}"]
    return [line]


def convert_smtp(line, state):
    if line.startswith("!"):
        name = line[1:].split(" ", 1)[0]
        if name in SMTP_CALLS:
            return ["!call " + line[1:]]
    return [line]


def convert(text, suite):
    # An old POP3 file's deadlines are relative to the clock; a converted one's are not.
    state = {"now": 0.0, "relative": "!at " not in text}
    step = convert_pop3 if suite == "pop3" else convert_smtp
    out = []
    problems = []
    prev = None  # kind of the last block line: "S", "C" or None
    gap = False  # a comment/blank line since that block line
    for number, line in enumerate(text.split("\n"), 1):
        for line in step(line, state):
            kind = line[0] if line[:2] in ("S:", "S>", "C:", "C>") else None
            if kind is None and (line.strip() == "" or line.startswith("#")):
                gap = gap or prev is not None
                out.append(line)
                continue
            if kind is not None and kind == prev and gap:
                if kind == "S":
                    at = len(out)
                    while at > 0 and (out[at - 1].strip() == "" or out[at - 1].startswith("#")):
                        at -= 1
                    out.insert(at, "!read")
                else:
                    problems.append(f"line {number}: two client blocks split only by a comment")
            prev, gap = kind, False
            out.append(line)
    return "\n".join(out), problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="suite", choices=("pop3", "smtp"), required=True)
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    files = []
    for arg in args.paths:
        path = pathlib.Path(arg)
        files.extend(sorted(path.glob("*.txt")) if path.is_dir() else [path])
    failed = False
    for path in files:
        old = path.read_text()
        new, problems = convert(old, args.suite)
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
            failed = True
        if new != old:
            path.write_text(new)
            print(f"converted {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
