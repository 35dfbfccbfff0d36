#!/usr/bin/env python3
"""aiosmtpd test server: a second, independent SMTP implementation for the test ground.

Run from the venv (testground.sh start does it):
  venv/bin/python aiosmtpd_server.py --dir /tmp/testground --pidfile /tmp/testground/run/aiosmtpd.pid

Listeners (127.0.0.1 and ::1), all with AUTH required before MAIL:
  12025  plain, STARTTLS optional, AUTH allowed in clear
  12587  STARTTLS required (only EHLO/STARTTLS/NOOP/QUIT before it)
  12465  implicit TLS
AUTH PLAIN and LOGIN (built in) and CRAM-MD5 (below), checked against the
Dovecot users file (<dir>/dovecot/users, "user:{PLAIN}password:..."), read at every AUTH.

Every accepted message is stored, exactly as received (CRLF, dot-unstuffed) after
X-Testground-* envelope headers, in the catch-all Maildir <dir>/aiosmtpd/Maildir/new,
unless all recipients are in sink.testground.example (accepted and dropped).
Failure injection for client tests: a recipient whose local part starts with
"reject" gets 550 at RCPT, one starting with "tempfail" gets 451.
"""
import argparse
import asyncio
import hmac
import logging
import os
import secrets
import signal
import socket
import ssl
import sys
import time
import warnings

from aiosmtpd import __version__ as AIOSMTPD_VERSION
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

SINK_DOMAIN = "sink.testground.example"
HOSTNAME = "aiosmtpd.testground.example"
SIZE_LIMIT = 50 * 1024 * 1024


def read_users(path):
    users = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or ":" not in line:
                continue
            name, pw = line.rstrip("\n").split(":")[:2]
            if pw.startswith("{PLAIN}"):
                pw = pw[len("{PLAIN}"):]
            users[name] = pw
    return users


class Handler:
    def __init__(self, users_file, maildir):
        self.users_file = users_file
        self.maildir = maildir
        self.counter = 0

    def password(self, user):
        return read_users(self.users_file).get(user)

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        """PLAIN and LOGIN: aiosmtpd hands us the decoded login and password."""
        ok = False
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            pw = self.password(login)
            ok = pw is not None and hmac.compare_digest(pw.encode(), auth_data.password)
        # handled=False: aiosmtpd sends the 235/535 reply itself (with handled=True,
        # the default, a failure would get no reply at all and the client hangs).
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    async def auth_CRAM__MD5(self, server, args):
        """CRAM-MD5 (RFC 2195), which aiosmtpd does not have built in."""
        if len(args) != 1:
            await server.push("501 5.5.4 CRAM-MD5 takes no initial response")
            return AuthResult(success=False, handled=True)
        challenge = f"<{secrets.randbits(48)}.{int(time.time())}@{HOSTNAME}>"
        resp = await server.challenge_auth(challenge)  # already base64-decoded
        if resp is MISSING:  # "*" or bad base64: challenge_auth replied already
            return AuthResult(success=False, handled=True)
        try:
            user, digest = resp.decode("utf-8").rsplit(" ", 1)
        except (UnicodeDecodeError, ValueError):
            return AuthResult(success=False, handled=False)
        pw = self.password(user)
        ok = pw is not None and hmac.compare_digest(
            hmac.new(pw.encode(), challenge.encode(), "md5").hexdigest(), digest.lower()
        )
        return AuthResult(success=ok, handled=False, auth_data=LoginPassword(user.encode(), b""))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.rsplit("@", 1)[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 Recipient rejected (testground failure injection)"
        if local.startswith("tempfail"):
            return "451 4.3.0 Try again later (testground failure injection)"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if all(r.lower().endswith("@" + SINK_DOMAIN) for r in envelope.rcpt_tos):
            return "250 2.0.0 OK: discarded (sink)"
        self.counter += 1
        now = time.time()
        name = f"{int(now)}.M{int(now * 1e6) % 1000000}P{os.getpid()}Q{self.counter}.aiosmtpd"
        ad = session.auth_data
        auth = ad.login.decode("utf-8", "replace") if isinstance(ad, LoginPassword) else ""
        # session.ssl is only set after STARTTLS, not on the implicit-TLS port
        tls = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        head = (
            f"X-Testground-Envelope-From: <{envelope.mail_from}>\r\n"
            f"X-Testground-Envelope-To: {', '.join('<%s>' % r for r in envelope.rcpt_tos)}\r\n"
            f"X-Testground-Mail-Options: {' '.join(envelope.mail_options)}\r\n"
            f"X-Testground-Auth: {auth}\r\n"
            f"X-Testground-TLS: {'yes' if tls else 'no'}\r\n"
        ).encode("utf-8")
        tmp = os.path.join(self.maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(head + envelope.original_content)
        os.rename(tmp, os.path.join(self.maildir, "new", name))
        return f"250 2.0.0 OK: stored as {name}"


def main():
    ap = argparse.ArgumentParser(description="aiosmtpd test server")
    ap.add_argument("--dir", default=os.environ.get("TESTGROUND_DIR", "/tmp/testground"))
    ap.add_argument("--pidfile")
    ap.add_argument("--plain-port", type=int, default=12025)
    ap.add_argument("--submission-port", type=int, default=12587)
    ap.add_argument("--tls-port", type=int, default=12465)
    ap.add_argument("--verbose", action="store_true", help="log every session")
    a = ap.parse_args()
    if a.pidfile:
        with open(a.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")

    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING,
        format="%(asctime)s aiosmtpd[%(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    # Per-connection noise: the plain port deliberately allows AUTH without TLS, and
    # aiosmtpd itself sets the deprecated Session.login_data at every AUTH.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    noise = ("auth_require_tls == False", "Session.login_data is deprecated")
    logging.getLogger("mail.log").addFilter(lambda r: not any(n in r.getMessage() for n in noise))

    certs = os.path.join(a.dir, "certs")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(certs, "server-chain.crt"), os.path.join(certs, "server.key"))
    maildir = os.path.join(a.dir, "aiosmtpd", "Maildir")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    handler = Handler(os.path.join(a.dir, "dovecot", "users"), maildir)

    common = dict(
        hostname=HOSTNAME,
        data_size_limit=SIZE_LIMIT,
        enable_SMTPUTF8=True,
        auth_required=True,
        authenticator=handler.authenticator,
    )
    listeners = [
        # port, create_server ssl, SMTP kwargs
        (a.plain_port, None, dict(tls_context=ctx, require_starttls=False, auth_require_tls=False)),
        (a.submission_port, None, dict(tls_context=ctx, require_starttls=True, auth_require_tls=True)),
        # aiosmtpd 1.4 does not count implicit TLS as TLS: with auth_require_tls it
        # would never offer AUTH here.
        (a.tls_port, ctx, dict(auth_require_tls=False)),
    ]

    async def serve():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        servers = []
        hosts = ["127.0.0.1"]
        if socket.has_ipv6:
            hosts.append("::1")
        for port, server_ssl, kw in listeners:
            for host in hosts:
                factory = lambda kw=kw: SMTP(handler, loop=loop, **common, **kw)
                try:
                    servers.append(await loop.create_server(factory, host, port, ssl=server_ssl))
                except OSError as e:
                    if host == "127.0.0.1":
                        raise
                    logging.warning("not listening on [%s]:%d: %s", host, port, e)
        logging.warning(
            "aiosmtpd %s listening on ports %d %d %d", AIOSMTPD_VERSION, a.plain_port, a.submission_port, a.tls_port
        )
        await stop.wait()
        for s in servers:
            s.close()
        logging.warning("stopping")

    try:
        asyncio.run(serve())
    finally:
        if a.pidfile:
            try:
                os.unlink(a.pidfile)
            except OSError:
                pass


if __name__ == "__main__":
    main()
