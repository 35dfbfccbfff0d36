#!/usr/bin/env python3
"""Peer: Python's smtplib sending --count copies of a message file over one authenticated
STARTTLS session (smtplib sends one command per round trip; it does not use PIPELINING or BDAT).

usage: smtplib_send.py --port P --user U --password-env VAR --ca CA --count N --message FILE
"""
import argparse
import os
import smtplib
import ssl
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-env", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--tls-name", default="localhost")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--message", required=True)
    ap.add_argument("--from", dest="sender", default="bob@testground.example")
    ap.add_argument("--to", default="x@sink.testground.example")
    a = ap.parse_args()
    started = time.perf_counter()
    with open(a.message, "rb") as f:
        message = f.read()
    ctx = ssl.create_default_context(cafile=a.ca)
    smtp = smtplib.SMTP(a.host, a.port, local_hostname="bench.testground.example")
    smtp.ehlo()
    smtp._host = a.tls_name  # the name STARTTLS checks the certificate for (default: the address)
    smtp.starttls(context=ctx)
    smtp.ehlo()
    smtp.login(a.user, os.environ[a.password_env])
    for _ in range(a.count):
        refused = smtp.sendmail(a.sender, [a.to], message)
        if refused:
            sys.exit(f"smtplib_send: refused {refused}")
    smtp.quit()
    print(f"RESULT smtplib messages={a.count} bytes={a.count * len(message)} "
          f"seconds={time.perf_counter() - started:.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
