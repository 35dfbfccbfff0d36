#!/usr/bin/env python3
"""Write the test ground's deterministic Maildirs (standard library only).

usage: gen_maildir.py [--owner vmail] MAIL_ROOT [USER ...]

For each user (default: all of USERS) the home MAIL_ROOT/<user> is wiped
(messages and Dovecot's index files) and MAIL_ROOT/<user>/Maildir is written
again, byte for byte the same every time:

  * message files use LF line endings (servers send CRLF, so a POP3 LIST size
    is file size + number of lines);
  * every 7th message has body lines ".", ".leading dot line",
    "..two leading dots" and ends with a "." line (dot-stuffing on RETR);
  * every 11th has raw UTF-8 (8-bit) headers and body;
  * every 13th has an empty body (wins over the two above: message 91 is empty);
  * the listed "big" messages are ~1 MiB.

A dovecot-uidlist with a fixed UIDVALIDITY is written too, so message N gets
UID N and the POP3 UIDL (%08Xu%08Xv) is the same after every reset.
MAIL_ROOT/manifest.json describes every message (POP3 octets, UIDL, features).
"""
import argparse
import email.utils
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import sys

DOMAIN = "testground.example"
# user -> (message count, numbers of the ~1 MiB messages, UIDVALIDITY)
USERS = {
    "alice": (100, (50, 100), 0x7E570001),
    "bob": (0, (), 0x7E570002),
    "carol": (2000, (), 0x7E570003),
    "dave": (0, (), 0x7E570004),  # reserved for destructive tests (DELE)
    # Scratch users, one per test suite, so suites that delete or deliver never race each other.
    "erin": (100, (50, 100), 0x7E570005),  # pop3-proto integration (DELE)
    "frank": (100, (50, 100), 0x7E570006),  # mail-account fetch engine / mailctl end to end
    "grace": (0, (), 0x7E570007),  # smtp-submit deliveries
    "heidi": (2000, (), 0x7E570008),  # crash-safe fetch (kill -9) and 2,000-message fetches
    "ivan": (0, (), 0x7E570009),  # account verification and discovery
    "judy": (0, (), 0x7E57000A),  # secret-leak and hostile suites that use a real server
    "kate": (100, (50, 100), 0x7E57000B),  # mailctl habits: fetch state identity, file modes, exit statuses
    "liam": (0, (), 0x7E57000C),  # SMTP interoperability (recipient limits, 8-bit declarations)
    "mia": (100, (50, 100), 0x7E57000D),  # mailctl everyday use (list, sendmail, MDA, mbox)
    "noah": (100, (50, 100), 0x7E57000E),  # POP3 interoperability and latency
    "olivia": (0, (), 0x7E57000F),  # sign-in (OAuth2, NTLM) and pollers
}
EPOCH = 1704067200  # 2024-01-01T00:00:00Z, message N is dated N minutes later
BIG_SIZE = 1024 * 1024


def features(i, big):
    f = []
    if i % 13 == 0:
        f.append("empty")
    else:
        if i % 7 == 0:
            f.append("dots")
        if i in big:
            f.append("big")
    if i % 11 == 0:
        f.append("utf8")
    return f


def message(user, i, count, big):
    """Return (bytes, features) of message i (1-based) of user."""
    feats = features(i, big)
    utf8 = "utf8" in feats
    subject = f"[tg] {user} message {i} of {count}"
    if utf8:
        subject += " \u2014 Gr\u00fc\u00dfe aus K\u00f6ln, \u65e5\u672c\u8a9e"
    when = email.utils.formatdate(EPOCH + 60 * i, usegmt=True)
    sender = "S\u00e9bastien Sender" if utf8 else "Testground Sender"
    headers = [
        f"Return-Path: <sender@{DOMAIN}>",
        f"Date: {when}",
        f"From: {sender} <sender@{DOMAIN}>",
        f"To: {user.capitalize()} <{user}@{DOMAIN}>",
        f"Subject: {subject}",
        f"Message-ID: <{user}.{i}@{DOMAIN}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=" + ("utf-8" if utf8 else "us-ascii"),
        "Content-Transfer-Encoding: " + ("8bit" if utf8 else "7bit"),
        f"X-Testground-Seq: {i}",
        "X-Testground-Features: " + (",".join(feats) or "none"),
    ]
    body = []
    if "empty" not in feats:
        body.append(f"This is message {i} of {count} for {user}.")
        if utf8:
            body.append("8-bit line: Gr\u00fc\u00dfe, \u00e7a va? \u65e5\u672c\u8a9e \u2713")
        if "dots" in feats:
            body += [".", ".leading dot line", "..two leading dots"]
        # deterministic, varying length: 1..20 filler lines
        for k in range(1 + (i * 37) % 20):
            body.append(f"Line {k + 1} of message {i}: " + "abcdefghij" * (1 + (i + k) % 6))
        if "big" in feats:
            k = 0
            size = sum(len(l) + 1 for l in body)
            while size < BIG_SIZE:
                line = f"Big line {k:06d} of message {i}: " + "0123456789" * 4 + "ABCDEFGHIJKLMNOP"
                body.append(line)
                size += len(line) + 1
                k += 1
        if "dots" in feats:
            body.append(".")  # a lone dot as the very last line
    text = "\n".join(headers) + "\n\n" + "".join(l + "\n" for l in body)
    return text.encode("utf-8"), feats


def write_user(root, user, uid, gid):
    count, big, uidvalidity = USERS[user]
    home = os.path.join(root, user)
    shutil.rmtree(home, ignore_errors=True)  # also drops Dovecot's index files
    md = os.path.join(home, "Maildir")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub), mode=0o700)
    guid = hashlib.md5(f"testground:{user}".encode()).hexdigest()
    uidlist = [f"3 V{uidvalidity} N{count + 1} G{guid}"]
    msgs = []
    total = 0
    for i in range(1, count + 1):
        data, feats = message(user, i, count, big)
        name = f"{EPOCH + 60 * i}.M{i:06d}P0.testground:2,"
        path = os.path.join(md, "cur", name)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (EPOCH + 60 * i, EPOCH + 60 * i))
        uidlist.append(f"{i} :{name}")
        octets = len(data) + data.count(b"\n")  # size as sent: LF -> CRLF
        total += octets
        msgs.append({"n": i, "octets": octets, "uidl": f"{i:08x}{uidvalidity:08x}", "features": feats})
    with open(os.path.join(md, "dovecot-uidlist"), "w") as f:
        f.write("\n".join(uidlist) + "\n")
    if uid is not None:
        for dirpath, dirnames, filenames in os.walk(home):
            os.chown(dirpath, uid, gid)
            os.chmod(dirpath, 0o700)
            for n in filenames:
                os.chown(os.path.join(dirpath, n), uid, gid)
                os.chmod(os.path.join(dirpath, n), 0o600)
    return {
        "password": f"{user}-pass",
        "address": f"{user}@{DOMAIN}",
        "count": count,
        "octets": total,
        "uidvalidity": uidvalidity,
        "messages": msgs,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="mail root, e.g. /tmp/testground/mail")
    ap.add_argument("--owner", help="system user owning the Maildirs (e.g. vmail)")
    ap.add_argument("users", nargs="*", help="users to regenerate (default: all)")
    a = ap.parse_args()
    users = a.users or list(USERS)
    for u in users:
        if u not in USERS:
            sys.exit(f"gen_maildir: unknown user {u!r} (known: {', '.join(USERS)})")
    uid = gid = None
    if a.owner:
        pw = pwd.getpwnam(a.owner)
        uid, gid = pw.pw_uid, pw.pw_gid
    os.makedirs(a.root, exist_ok=True)
    entries = {}
    for u in users:
        m = entries[u] = write_user(a.root, u, uid, gid)
        print(f"gen_maildir: {u}: {m['count']} messages, {m['octets']} octets (POP3 LIST total)")
    update_manifest(a.root, entries)


def update_manifest(root, entries):
    """Merge `entries` into MAIL_ROOT/manifest.json.

    Test binaries run their tests in parallel, and two tests resetting
    different users would otherwise race on the read-modify-write (one
    user's entry lost) and on the temporary file's name (one rename failing).
    """
    manifest_path = os.path.join(root, "manifest.json")
    with open(os.path.join(root, ".manifest.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(manifest_path) as f:
                manifest = json.load(f)
        except (OSError, ValueError):
            manifest = {"users": {}}
        manifest["users"].update(entries)
        tmp = f"{manifest_path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        os.replace(tmp, manifest_path)


if __name__ == "__main__":
    main()
