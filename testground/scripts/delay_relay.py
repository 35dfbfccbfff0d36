#!/usr/bin/env python3
"""Userspace TCP latency relay (standard library only).

usage: delay_relay.py LISTEN_PORT TARGET_PORT DELAY_MS [--pidfile FILE]

Listens on 127.0.0.1:LISTEN_PORT (and [::1] when possible) and relays every
connection to 127.0.0.1:TARGET_PORT. Each chunk, in each direction, is passed
on DELAY_MS after it arrived, in order; bytes are untouched, so implicit TLS
and STLS/STARTTLS pass through (verify the certificate as "localhost").
One command round trip therefore costs 2 x DELAY_MS more.
Why: this kernel has no sch_netem, so `tc qdisc ... netem delay` is impossible.
"""
import argparse
import asyncio
import logging
import os
import signal

CHUNK = 64 * 1024


async def pump(reader, writer, delay):
    """Copy reader -> writer, each chunk `delay` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def read_side():
        try:
            while True:
                data = await reader.read(CHUNK)
                queue.put_nowait((loop.time() + delay, data))
                if not data:
                    return
        except (ConnectionError, asyncio.CancelledError):
            queue.put_nowait((loop.time() + delay, b""))

    async def write_side():
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:  # EOF: pass the half-close on
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass

    await asyncio.gather(read_side(), write_side())


async def relay(client_r, client_w, target_port, delay):
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError as e:
        logging.warning("cannot connect to 127.0.0.1:%d: %s", target_port, e)
        client_w.close()
        return
    try:
        await asyncio.gather(pump(client_r, server_w, delay), pump(server_r, client_w, delay))
    finally:
        for w in (client_w, server_w):
            w.close()


async def main_async(a):
    delay = a.delay_ms / 1000.0
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    handler = lambda r, w: relay(r, w, a.target_port, delay)
    servers = [await asyncio.start_server(handler, "127.0.0.1", a.listen_port)]
    try:
        servers.append(await asyncio.start_server(handler, "::1", a.listen_port))
    except OSError as e:
        logging.warning("not listening on [::1]:%d: %s", a.listen_port, e)
    logging.warning("relay %d -> %d, +%d ms each direction", a.listen_port, a.target_port, a.delay_ms)
    await stop.wait()
    for s in servers:
        s.close()


def main():
    ap = argparse.ArgumentParser(description="TCP relay adding latency")
    ap.add_argument("listen_port", type=int)
    ap.add_argument("target_port", type=int)
    ap.add_argument("delay_ms", type=int)
    ap.add_argument("--pidfile")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s delay_relay[%(process)d] %(message)s")
    if a.pidfile:
        with open(a.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    try:
        asyncio.run(main_async(a))
    finally:
        if a.pidfile:
            try:
                os.unlink(a.pidfile)
            except OSError:
                pass


if __name__ == "__main__":
    main()
