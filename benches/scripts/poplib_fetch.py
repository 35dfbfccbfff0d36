#!/usr/bin/env python3
"""Peer: Python's poplib fetching every message over POP3S into a Maildir-like directory.

One command per round trip (poplib does not pipeline), messages kept on the server (no DELE).
Each message goes to tmp/, is fsynced (unless --no-fsync) and renamed into new/, like the
other fetch programs of the benchmark.

usage: poplib_fetch.py --port P --user U --password-env VAR --ca CA --maildir DIR [--max N]
"""
import argparse
import os
import poplib
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
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--max", type=int, default=None)
    ap.add_argument("--no-fsync", action="store_true")
    ap.add_argument("--last", action="store_true", help="only the newest message")
    a = ap.parse_args()
    started = time.perf_counter()
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(a.maildir, sub), exist_ok=True)
    ctx = ssl.create_default_context(cafile=a.ca)
    pop = POP3SSLName(a.host, a.port, context=ctx, server_hostname=a.tls_name)
    pop.user(a.user)
    pop.pass_(os.environ[a.password_env])
    count, _ = pop.stat()
    if a.max is not None:
        count = min(count, a.max)
    first = count if a.last else 1
    total = 0
    stamp = f"{int(time.time())}.{os.getpid()}"
    for n in range(first, count + 1):
        _, lines, _ = pop.retr(n)
        data = b"\r\n".join(lines) + b"\r\n"
        total += len(data)
        name = f"{stamp}_{n}.poplib"
        tmp = os.path.join(a.maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
            if not a.no_fsync:
                f.flush()
                os.fsync(f.fileno())
        os.rename(tmp, os.path.join(a.maildir, "new", name))
    pop.quit()
    print(f"RESULT poplib messages={count + 1 - first} bytes={total} seconds={time.perf_counter() - started:.6f}",
          file=sys.stderr)


class POP3SSLName(poplib.POP3_SSL):
    """POP3_SSL that checks the certificate for `server_hostname` rather than the address."""

    def __init__(self, host, port, context, server_hostname):
        self._server_hostname = server_hostname
        super().__init__(host, port, context=context)

    def _create_socket(self, timeout):
        sock = poplib.POP3._create_socket(self, timeout)
        return self.context.wrap_socket(sock, server_hostname=self._server_hostname)


if __name__ == "__main__":
    main()
