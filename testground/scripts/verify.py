#!/usr/bin/env python3
"""Quick end-to-end self-check of the running test ground (standard library only).

usage: verify.py [--dir /tmp/testground]
Prints one PASS/FAIL line per check; exits 1 if any check failed.
"""
import argparse
import glob
import json
import os
import poplib
import smtplib
import socket
import ssl
import sys
import time
import uuid

TIMEOUT = 10
results = []


def check(name):
    """Decorator-ish runner: call fn(), record PASS with its detail or FAIL with the error."""

    def run(fn):
        t = time.monotonic()
        try:
            detail = fn() or ""
            ok = True
        except Exception as e:  # any failure is a FAIL line, not a traceback
            detail = f"{type(e).__name__}: {e}"
            ok = False
        ms = (time.monotonic() - t) * 1000
        results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'}  {name}  ({ms:.0f} ms) {detail}", flush=True)

    return run


def recv_until(sock, end):
    buf = b""
    while not buf.endswith(end):
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed, got {buf!r}")
        buf += chunk
    return buf


def tls_handshake(ctx, port, mode, host):
    """Connect to host:port, upgrade per mode, return the TLS socket (verified as localhost)."""
    raw = socket.create_connection((host, port), timeout=TIMEOUT)
    try:
        if mode == "pop3-stls":
            recv_until(raw, b"\r\n")
            raw.sendall(b"STLS\r\n")
            line = recv_until(raw, b"\r\n")
            if not line.startswith(b"+OK"):
                raise RuntimeError(f"STLS refused: {line!r}")
        elif mode == "smtp-starttls":
            recv_until(raw, b"\r\n")  # single-line banners here
            raw.sendall(b"EHLO verify.testground.example\r\n")
            reply = b""
            while not any(l[3:4] == b" " for l in reply.split(b"\r\n") if l):
                reply += recv_until(raw, b"\r\n")
            if b"STARTTLS" not in reply.upper():
                raise RuntimeError("no STARTTLS in EHLO")
            raw.sendall(b"STARTTLS\r\n")
            line = recv_until(raw, b"\r\n")
            if not line.startswith(b"220"):
                raise RuntimeError(f"STARTTLS refused: {line!r}")
        return ctx.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=os.environ.get("TESTGROUND_DIR", "/tmp/testground"))
    a = ap.parse_args()
    tg = a.dir
    ca = os.path.join(tg, "certs", "ca.crt")
    ctx = ssl.create_default_context(cafile=ca)  # verifies chain + hostname "localhost"
    with open(os.path.join(tg, "mail", "manifest.json")) as f:
        manifest = json.load(f)["users"]

    # 1. TLS on every TLS-capable port validates against our CA as "localhost".
    tls_ports = [
        (11995, "implicit", "127.0.0.1"), (11995, "implicit", "::1"), (11110, "pop3-stls", "127.0.0.1"),
        (10465, "implicit", "127.0.0.1"), (10465, "implicit", "::1"), (10587, "smtp-starttls", "127.0.0.1"),
        (10025, "smtp-starttls", "127.0.0.1"), (10026, "smtp-starttls", "127.0.0.1"),
        (12465, "implicit", "127.0.0.1"), (12587, "smtp-starttls", "127.0.0.1"),
        (12025, "smtp-starttls", "127.0.0.1"),
        (13995, "implicit", "127.0.0.1"), (13110, "pop3-stls", "127.0.0.1"),
        (14465, "implicit", "127.0.0.1"), (14465, "implicit", "::1"), (14587, "smtp-starttls", "127.0.0.1"),
        (15995, "implicit", "127.0.0.1"), (15110, "pop3-stls", "127.0.0.1"),
        (16465, "implicit", "127.0.0.1"), (16465, "implicit", "::1"), (16587, "smtp-starttls", "127.0.0.1"),
        (17995, "implicit", "127.0.0.1"), (17995, "implicit", "::1"), (17110, "pop3-stls", "127.0.0.1"),
    ]
    for port, mode, host in tls_ports:
        @check(f"tls {mode:13} [{host}]:{port} verifies as localhost")
        def _():
            with tls_handshake(ctx, port, mode, host) as s:
                return f"{s.version()} {s.cipher()[0]}"

    # 2. POP3: alice has the generated mailbox (count, size, deterministic UIDL).
    @check("pop3s 11995 alice USER/PASS: STAT = 100 messages")
    def _():
        exp = manifest["alice"]
        p = poplib.POP3_SSL("127.0.0.1", 11995, context=ctx, timeout=TIMEOUT)
        try:
            p.user("alice")
            p.pass_("alice-pass")
            count, octets = p.stat()
            uidl1 = p.uidl(1).split()[2].decode()
        finally:
            p.quit()
        if count != 100 or count != exp["count"]:
            raise AssertionError(f"STAT {count} messages, want 100")
        if octets != exp["octets"]:
            raise AssertionError(f"STAT {octets} octets, manifest says {exp['octets']}")
        if uidl1 != exp["messages"][0]["uidl"]:
            raise AssertionError(f"UIDL 1 = {uidl1}, manifest says {exp['messages'][0]['uidl']}")
        return f"{count} {octets}, UIDL 1 {uidl1}"

    @check("pop3 11110 STLS + USER/PASS carol: STAT = 2000 messages")
    def _():
        p = poplib.POP3("127.0.0.1", 11110, timeout=TIMEOUT)
        try:
            p.stls(ctx)
            p.user("carol")
            p.pass_("carol-pass")
            count, octets = p.stat()
        finally:
            p.quit()
        if count != manifest["carol"]["count"]:
            raise AssertionError(f"STAT {count}")
        return f"{count} {octets}"

    @check("pop3s 13995 (mailutils) alice@testground.example USER/PASS: same mailbox as Dovecot's")
    def _():
        exp = manifest["alice"]
        p = poplib.POP3_SSL("127.0.0.1", 13995, context=ctx, timeout=TIMEOUT)
        try:
            p.user("alice@testground.example")
            p.pass_("alice-pass")
            count, octets = p.stat()
        finally:
            p.quit()
        # After its first session mailutils stores an X-UIDL header (< 64 octets) in each message.
        if count != exp["count"] or not exp["octets"] <= octets <= exp["octets"] + 64 * count:
            raise AssertionError(f"STAT {count} {octets}, manifest says {exp['count']} {exp['octets']}")
        return f"{count} {octets}"

    @check("pop3s 15995 (courier) alice@testground.example: same mailbox, UTF8 mode serves message 11 as is")
    def _():
        exp = manifest["alice"]
        out = []
        for utf8 in (False, True):
            p = poplib.POP3_SSL("127.0.0.1", 15995, context=ctx, timeout=TIMEOUT)
            try:
                if utf8:
                    p._shortcmd("UTF8")
                p.user("alice@testground.example")
                p.pass_("alice-pass")
                count, octets = p.stat()
                subject = next(l for l in p.retr(11)[1] if l.startswith(b"Subject:"))
            finally:
                p.quit()
            if (count, octets) != (exp["count"], exp["octets"]):
                raise AssertionError(f"STAT {count} {octets}, manifest says {exp['count']} {exp['octets']}")
            out.append(subject.decode(errors="replace"))
        if "Cannot display Unicode content" not in out[0] or "message 11" not in out[1]:
            raise AssertionError(f"subjects without/with UTF8: {out}")
        return f"{count} {octets}"

    # 3. The strict identity: a client bound to 127.0.0.2 gets no USER before STLS.
    @check("pop3 11110 from 127.0.0.2: no USER/PLAIN in CAPA before STLS, USER after")
    def _():
        raw = socket.create_connection(("127.0.0.1", 11110), timeout=TIMEOUT, source_address=("127.0.0.2", 0))
        try:
            recv_until(raw, b"\r\n")
            raw.sendall(b"CAPA\r\n")
            before = recv_until(raw, b"\r\n.\r\n").decode().split("\r\n")
            raw.sendall(b"STLS\r\n")
            recv_until(raw, b"\r\n")
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            s.sendall(b"CAPA\r\n")
            after = recv_until(s, b"\r\n.\r\n").decode().split("\r\n")
            s.sendall(b"QUIT\r\n")
        finally:
            raw.close()
        sasl_before = next((l for l in before if l.startswith("SASL")), "")
        if "USER" in before or "PLAIN" in sasl_before.split():
            raise AssertionError(f"CAPA before STLS offers plaintext auth: {before}")
        if "USER" not in after:
            raise AssertionError(f"CAPA after STLS lacks USER: {after}")
        return sasl_before

    # 4. SMTP submission to bob over Postfix 10587 arrives in bob's Maildir.
    def submit(port, user, rcpt, mech, implicit=False, tag=None):
        tag = tag or uuid.uuid4().hex
        msg = (
            f"From: {user}@testground.example\r\nTo: {rcpt}\r\nSubject: verify {tag}\r\n"
            f"Message-ID: <verify.{tag}@testground.example>\r\n\r\nverify.py test message {tag}\r\n"
        )
        if implicit:
            s = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=TIMEOUT)
        else:
            s = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
            s.starttls(context=ctx)
        try:
            s.ehlo("verify.testground.example")
            s.user, s.password = user, f"{user}-pass"
            auth_fn = {"PLAIN": s.auth_plain, "CRAM-MD5": s.auth_cram_md5, "LOGIN": s.auth_login}[mech]
            s.auth(mech, auth_fn)
            s.sendmail(f"{user}@testground.example", [rcpt], msg.encode())
        finally:
            s.quit()
        return tag

    def wait_for(pattern, tag, seconds=10):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for path in glob.glob(pattern):
                try:
                    with open(path, "rb") as f:
                        if tag.encode() in f.read():
                            return path
                except FileNotFoundError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"message {tag} not found in {pattern} after {seconds} s")

    @check("smtp 10587 STARTTLS + AUTH PLAIN (postfix) -> bob's Maildir")
    def _():
        t0 = time.monotonic()
        tag = submit(10587, "bob", "bob@testground.example", "PLAIN")
        path = wait_for(os.path.join(tg, "mail", "bob", "Maildir", "*", "*"), tag)
        took = (time.monotonic() - t0) * 1000
        os.unlink(path)  # keep bob's mailbox empty for the tests
        return f"delivered in {took:.0f} ms"

    @check("smtp 10465 implicit TLS + AUTH CRAM-MD5 (postfix): other domain refused at RCPT")
    def _():
        try:
            submit(10465, "alice", "someone@example.com", "CRAM-MD5", implicit=True)
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients["someone@example.com"]
            if code >= 500:
                return f"{code} {text.decode()[:60]}"
            raise
        raise AssertionError("RCPT to example.com was accepted")

    @check("smtp 14587 STARTTLS + AUTH PLAIN (dovecot submission) -> bob's Maildir")
    def _():
        t0 = time.monotonic()
        tag = submit(14587, "bob", "bob@testground.example", "PLAIN")
        path = wait_for(os.path.join(tg, "mail", "bob", "Maildir", "*", "*"), tag)
        took = (time.monotonic() - t0) * 1000
        os.unlink(path)
        return f"delivered in {took:.0f} ms"

    @check("smtp 12587 STARTTLS + AUTH PLAIN (aiosmtpd) -> aiosmtpd Maildir")
    def _():
        tag = submit(12587, "alice", "bob@testground.example", "PLAIN")
        path = wait_for(os.path.join(tg, "aiosmtpd", "Maildir", "new", "*"), tag, 5)
        os.unlink(path)
        return os.path.basename(path)

    @check("smtp 12465 implicit TLS + AUTH CRAM-MD5 (aiosmtpd) to the sink")
    def _():
        submit(12465, "carol", "x@sink.testground.example", "CRAM-MD5", implicit=True)

    # 5. The Cyrus SASL (NTLM) Postfix instance: its sasldb user pat, delivery into pat's Maildir,
    # and a real NTLM challenge (the full NTLMv2 login needs MD4, which Python's OpenSSL 3 lacks;
    # the Rust tests do it).
    @check("smtp 16587 STARTTLS + AUTH PLAIN (postfix-ntlm, Cyrus sasldb) -> pat's Maildir")
    def _():
        tag = submit(16587, "pat", "pat@testground.example", "PLAIN")
        path = wait_for(os.path.join(tg, "mail", "pat", "Maildir", "*", "*"), tag)
        os.unlink(path)
        return os.path.basename(path)

    @check("smtp 16465 implicit TLS: AUTH NTLM offered, negotiate answered by a challenge")
    def _():
        import base64

        s = smtplib.SMTP_SSL("127.0.0.1", 16465, context=ctx, timeout=TIMEOUT)
        try:
            s.ehlo("verify.testground.example")
            mechs = s.esmtp_features.get("auth", "").split()
            if "NTLM" not in mechs:
                raise AssertionError(f"AUTH NTLM not offered: {mechs}")
            # NEGOTIATE_MESSAGE: signature, type 1, flags UNICODE|NTLM|REQUEST_TARGET, empty fields
            negotiate = b"NTLMSSP\0\x01\0\0\0" + (0x00000207).to_bytes(4, "little") + bytes(16)
            code, reply = s.docmd("AUTH", "NTLM " + base64.b64encode(negotiate).decode())
            if code != 334:
                raise AssertionError(f"AUTH NTLM negotiate: {code} {reply!r}")
            challenge = base64.b64decode(reply)
            if challenge[:12] != b"NTLMSSP\0\x02\0\0\0":
                raise AssertionError(f"not an NTLM challenge: {challenge[:12]!r}")
            s.docmd("*")
            return f"mechanisms {' '.join(mechs)}"
        finally:
            s.close()

    # 6. The Cyrus SASL (NTLM) Dovecot instance: PLAIN for quinn through its passwd-file, and
    # AUTH NTLM answered by a challenge from Cyrus SASL through the winbind helper (the full
    # login needs MD4 again: the Rust tests do it).
    @check("pop3s 17995 (dovecot-ntlm) quinn AUTH PLAIN: STAT works")
    def _():
        p = poplib.POP3_SSL("127.0.0.1", 17995, context=ctx, timeout=TIMEOUT)
        try:
            import base64

            p._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0quinn\0quinn-pass").decode())
            count, octets = p.stat()
        finally:
            p.quit()
        return f"{count} {octets}"

    @check("pop3 17110 STLS: AUTH NTLM offered, negotiate answered by a Cyrus SASL challenge")
    def _():
        import base64

        p = poplib.POP3("127.0.0.1", 17110, timeout=TIMEOUT)
        try:
            p.stls(ctx)
            sasl = p.capa().get("SASL", [])
            if "NTLM" not in sasl:
                raise AssertionError(f"AUTH NTLM not offered: {sasl}")
            p._putcmd("AUTH NTLM")
            first = p._getline()[0]
            if not first.startswith(b"+"):
                raise AssertionError(f"AUTH NTLM: {first!r}")
            negotiate = b"NTLMSSP\0\x01\0\0\0" + (0x00000207).to_bytes(4, "little") + bytes(16)
            p._putcmd(base64.b64encode(negotiate).decode())
            reply = p._getline()[0]
            if not reply.startswith(b"+ "):
                raise AssertionError(f"AUTH NTLM negotiate: {reply!r}")
            challenge = base64.b64decode(reply[2:])
            if challenge[:12] != b"NTLMSSP\0\x02\0\0\0":
                raise AssertionError(f"not an NTLM challenge: {challenge[:12]!r}")
            p._putcmd("*")
            p._getline()
            return f"SASL {' '.join(sasl)}"
        finally:
            p.quit()

    passed = sum(results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
