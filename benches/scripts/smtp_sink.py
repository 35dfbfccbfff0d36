#!/usr/bin/env python3
"""A discarding SMTP submission server for the 200 MiB send (standard library only).

The test ground's Postfix refuses messages over 50 MiB (message_size_limit), so the memory
measurement sends to this sink instead: STARTTLS (required before AUTH/MAIL), AUTH PLAIN and
LOGIN (any credentials), PIPELINING, CHUNKING (BDAT), 8BITMIME, SIZE without a limit. Message
data is read and thrown away; only its length is logged.

usage: smtp_sink.py PORT --cert CHAIN --key KEY [--pidfile FILE]
"""
import argparse
import asyncio
import os
import signal
import ssl
import sys

EHLO_KEYWORDS = [b"PIPELINING", b"SIZE 0", b"8BITMIME", b"CHUNKING", b"ENHANCEDSTATUSCODES",
                 b"AUTH PLAIN LOGIN"]


async def session(reader, writer, ctx):
    async def reply(*lines):
        writer.write(b"".join(lines))
        await writer.drain()

    tls = False
    await reply(b"220 sink.bench ESMTP discard\r\n")
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb in (b"EHLO", b"HELO"):
                keywords = EHLO_KEYWORDS + ([] if tls else [b"STARTTLS"])
                out = [b"250-sink.bench\r\n"]
                out += [b"250-" + k + b"\r\n" for k in keywords[:-1]]
                out.append(b"250 " + keywords[-1] + b"\r\n")
                await reply(*out)
            elif verb == b"STARTTLS" and not tls:
                await reply(b"220 2.0.0 ready for TLS\r\n")
                await writer.start_tls(ctx)
                tls = True
            elif not tls:
                await reply(b"530 5.7.0 STARTTLS first\r\n")
            elif verb == b"AUTH":
                words = line.split()
                mech = words[1].upper() if len(words) > 1 else b""
                if mech == b"PLAIN" and len(words) < 3:
                    await reply(b"334 \r\n")
                    await reader.readline()
                elif mech == b"LOGIN":
                    if len(words) < 3:
                        await reply(b"334 VXNlcm5hbWU6\r\n")
                        await reader.readline()
                    await reply(b"334 UGFzc3dvcmQ6\r\n")
                    await reader.readline()
                await reply(b"235 2.7.0 accepted\r\n")
            elif verb == b"MAIL":
                await reply(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                await reply(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                await reply(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                data = await reader.readuntil(b"\r\n.\r\n")
                print(f"smtp_sink: DATA {len(data)} bytes", file=sys.stderr)
                await reply(b"250 2.0.0 Ok: discarded\r\n")
            elif verb == b"BDAT":
                words = line.split()
                size = int(words[1])
                while size:
                    chunk = await reader.read(min(size, 1 << 20))
                    if not chunk:
                        return
                    size -= len(chunk)
                if len(words) > 2:
                    print("smtp_sink: BDAT LAST", file=sys.stderr)
                    await reply(b"250 2.0.0 Ok: discarded\r\n")
                else:
                    await reply(b"250 2.0.0 chunk received\r\n")
            elif verb in (b"RSET", b"NOOP"):
                await reply(b"250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                await reply(b"221 2.0.0 Bye\r\n")
                return
            else:
                await reply(b"502 5.5.2 unknown command\r\n")
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as e:
        print(f"smtp_sink: {e!r}", file=sys.stderr)
    finally:
        writer.close()


async def main_async(a):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The stream limit bounds readuntil(): a DATA body of several hundred MiB must fit.
    server = await asyncio.start_server(lambda r, w: session(r, w, ctx), "127.0.0.1", a.port,
                                        limit=1 << 30)
    if a.pidfile:
        with open(a.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    await stop.wait()
    server.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--pidfile")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
