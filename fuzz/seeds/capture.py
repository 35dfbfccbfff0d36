#!/usr/bin/env python3
"""Record what the test ground's real Dovecot and Postfix send in a full session, as fuzz seeds.

Usage: python3 fuzz/seeds/capture.py   (the test ground must be running)
Writes fuzz/corpus/<target>/seed-*: the first byte selects the fuzz target's options
(see fuzz_targets/*.rs), the rest is the server's byte stream.
"""
import base64
import os
import socket
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "corpus")


def session(port, lines, settle=0.3):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    out = bytearray()

    def drain():
        s.settimeout(settle)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return False
                out.extend(chunk)
        except socket.timeout:
            return True

    drain()
    for line in lines:
        s.sendall(line)
        if not drain():
            break
    s.close()
    return bytes(out)


def write(target, name, seed_byte, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"seed-{name}"), "wb") as f:
        f.write(bytes([seed_byte]) + data)
    print(f"{target}/seed-{name}: {len(data)} bytes")


def main():
    pop = session(11110, [
        b"CAPA\r\n", b"USER alice\r\n", b"PASS alice-pass\r\n", b"STAT\r\n", b"LIST\r\n",
        b"UIDL\r\n", b"LIST 7\r\n", b"RETR 7\r\n", b"TOP 11 3\r\n", b"RETR 13\r\n",
        b"DELE 99\r\n", b"RSET\r\n", b"NOOP\r\n", b"QUIT\r\n",
    ])
    # seed bits: 0 = plaintext, 2 = pipelining, high bits = piece size
    write("pop3_client", "dovecot-session", 0x00 | (20 << 3), pop)
    write("pop3_client", "dovecot-session-pipelined", 0x02 | (31 << 3), pop)
    write("pop3_client", "dovecot-stls", 0x01, session(11110, [b"CAPA\r\n", b"STLS\r\n"]))
    auth = base64.b64encode(b"\0alice\0alice-pass")
    write("pop3_client", "dovecot-sasl", 0x00, session(11110, [b"CAPA\r\n", b"AUTH PLAIN " + auth + b"\r\n", b"QUIT\r\n"]))
    write("pop3_client", "dovecot-bad-password", 0x00,
          session(11110, [b"CAPA\r\n", b"USER alice\r\n", b"PASS wrong\r\n", b"QUIT\r\n"], settle=2.5))

    body = b"Subject: seed\r\n\r\n..dot\r\n.\r\n"
    smtp = session(10025, [
        b"EHLO seed.example\r\n", b"AUTH PLAIN " + base64.b64encode(b"\0judy\0judy-pass") + b"\r\n",
        b"MAIL FROM:<judy@testground.example>\r\n", b"RCPT TO:<x@sink.testground.example>\r\n",
        b"RCPT TO:<nobody@testground.example>\r\n", b"DATA\r\n", body, b"NOOP\r\n", b"QUIT\r\n",
    ])
    write("smtp_client", "postfix-session", 0x00 | (16 << 3), smtp)
    write("smtp_client", "postfix-session-pipelined", 0x02 | (12 << 3), smtp)
    write("smtp_client", "postfix-starttls", 0x01, session(10025, [b"EHLO seed.example\r\n", b"STARTTLS\r\n"]))
    write("smtp_client", "postfix-legacy", 0x00, session(10026, [b"EHLO seed.example\r\n", b"QUIT\r\n"]))
    write("smtp_client", "aiosmtpd-session", 0x00, session(12025, [b"EHLO seed.example\r\n", b"QUIT\r\n"]))
    write("parsers", "postfix-ehlo", 0, smtp[:400])
    write("parsers", "dovecot-capa", 0, pop[:300])
    write("dot_roundtrip", "dots", 3, b".\r\n..\r\n.x\n\r.\r\r\n.\n")
    write("sasl_client", "scram-sha256", 0,
          b"r=fyko+d2lbbFgONRv9qkxdawLsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096\0v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


if __name__ == "__main__":
    main()
