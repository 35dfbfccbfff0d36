#!/usr/bin/env python3
"""Bulk send over one session through the latency relay: transactions pipelined across messages
(`bench-ours-send --many`, `Session::send_many`) against one round trip per message
(`bench-ours-send`, `Session::send_bytes` in a loop) and Python's smtplib, in the same run.

Each client sends the same ~1.4 KB message COUNT times (smtplib PEER_COUNT times) to the sink
domain as bob over one authenticated STARTTLS session (port 10587 through a relay adding
DELAY ms each way), and once; the time per message is (median of the COUNT runs - median of the
1-message runs) / (COUNT - 1), so connection set-up, TLS and AUTH cancel out. Runs are
interleaved, RUNS of each.

usage: python3 benches/scripts/bulk_pipelined.py [--delay 5] [--relay-port 47587] [--runs 5]
       [--count 500] [--peer-count 100]
Needs the test ground running and `cargo build --release -p mail-benches --bin bench-ours-send`
(CARGO_TARGET_DIR is honoured).
"""
import argparse
import json
import os
import signal
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runner  # noqa: E402  (the shared helpers: relay, RTT probe, timing, message)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=int, default=5, help="ms each way")
    ap.add_argument("--relay-port", type=int, default=47587)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--peer-count", type=int, default=100)
    a = ap.parse_args()

    work = runner.WORK / "bulk"
    (work / "logs").mkdir(parents=True, exist_ok=True)
    message = work / "message.eml"
    runner.make_send_message(message)
    port = a.relay_port
    runner.tg("delay", port, runner.SUBMISSION, a.delay)
    try:
        rtt = runner.probe_rtt(port)
        env = {"BENCH_PW": runner.SEND_PASS}
        common = ["--port", str(port), "--user", runner.SEND_USER, "--password-env", "BENCH_PW",
                  "--ca", str(runner.CA), "--message", str(message)]
        ours = str(runner.RELEASE / "bench-ours-send")
        smtplib = [runner.PY, str(runner.BENCHES / "scripts" / "smtplib_send.py"), *common]
        clients = {
            "pipelined": ("mail-rs `Session::send_many` (pipelined across transactions)",
                          lambda n: [ours, *common, "--many", "--count", str(n)], a.count),
            "sequential": ("mail-rs `Session::send_bytes` loop (one round trip per message)",
                           lambda n: [ours, *common, "--count", str(n)], a.peer_count),
            "smtplib": (f"Python smtplib {runner.PY_VERSION}",
                        lambda n: [*smtplib, "--count", str(n)], a.peer_count),
        }
        times = {(name, n): [] for name, (_, _, count) in clients.items() for n in (1, count)}
        for run in range(a.runs):
            for name, (_, command, count) in clients.items():
                for n in (count, 1):
                    log = work / "logs" / f"{name}-{n}-{run}.log"
                    wall, _, rc = runner.run_timed(command(n), log, env=env)
                    if rc != 0:
                        sys.exit(f"{name} x{n} failed (rc {rc}); see {log}")
                    times[(name, n)].append(wall)
            print(f"bulk: run {run + 1}/{a.runs} done", file=sys.stderr, flush=True)
    finally:
        pidf = runner.TG / "run" / f"delay-{port}.pid"
        try:
            pid = int(pidf.read_text().strip())
            if b"delay_relay.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass
        pidf.unlink(missing_ok=True)
        (runner.TG / "run" / f"delay-{port}.args").unlink(missing_ok=True)

    rows, result = [], {"rtt_ms": rtt, "delay_ms": a.delay, "runs": a.runs}
    for name, (label, _, count) in clients.items():
        many, one = statistics.median(times[(name, count)]), statistics.median(times[(name, 1)])
        per = (many - one) / (count - 1) * 1000
        result[name] = {"count": count, "median_s": many, "one_s": one, "ms_per_message": per,
                        "runs_s": times[(name, count)], "one_runs_s": times[(name, 1)]}
        rows.append((name, label, count, many, one, per))
    base = result["smtplib"]["ms_per_message"]
    print(f"RTT through the relay (NOOP, median of 30): {rtt:.2f} ms; medians of {a.runs} "
          "interleaved runs\n")
    print("| client | messages | median s | 1 message s | ms per message | RTT per message "
          "| × smtplib |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, label, count, many, one, per in rows:
        print(f"| {label} | {count} | {many:.3f} | {one:.3f} | {per:.2f} | {per / rtt:.3f} | "
              f"{base / per:.1f} |")
    print()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
