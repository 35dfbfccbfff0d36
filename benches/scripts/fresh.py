#!/usr/bin/env python3
"""Fresh-connection latency of the everyday operations (issue 14), against the protocol floors.

    python3 benches/scripts/fresh.py          (bash benches/run.sh runs it first)

Two operations, each a whole process on a fresh connection, through the test ground's latency
relay (`testground.sh delay`) at +0 and +25 ms each way (0 and 50 ms round trip):

  poll  check for new mail with nothing new: POP3S (Dovecot, 11995), keep mode, every UID
        already known (a priming run first). mailctl fetch --keep, mpop (only_new), fetchmail
        (uidl, keep).
  send  one small message on 587 with STARTTLS (Postfix, 10587) to the sink domain.
        mailctl send, msmtp.

Each client runs with each mechanism it has (PLAIN, SCRAM-SHA-256; fetchmail: USER/PASS), so
the comparison is always like for like. Medians of FRESH_N runs (default 5), interleaved.
Round trips = (median at 100 ms - median at 50 ms) / the difference of the relay's measured
round trips (a NOOP through it), so process start-up, CPU cost and the relay's own per-chunk
overhead (which a delay hides, but a 0 ms relay does not) cancel out. The relay adds its delay
after the TCP connect, so the TCP handshake is not counted, as in the issue.

Floors (issue 14), counted from the first TLS byte (POP3S) or the banner (587):
  poll  TLS 1.3 greeting 2 + CAPA 1 + AUTH (PLAIN 1, SCRAM 3, USER/PASS 2) + LIST/UIDL 1 = 5 / 7 / 6
  send  banner + EHLO + STARTTLS + TLS + EHLO + AUTH (1 or 3) + MAIL/RCPT/BDAT 1 = 7 / 9
        (the banner costs half a round trip through the relay, so a client at the floor
        measures about 6.5 / 8.5).

Writes benches/fresh.json and benches/fresh.md, and puts the section into benches/README.md
between the markers below (runner.py keeps it when it rewrites the file).
Environment: FRESH_N (5), FRESH_USER/FRESH_PASS (alice: read-only mailbox, keep mode reads
only), FRESH_PORT_BASE (27100: below the ephemeral port range), BENCH_WORK (/tmp/mail-benches),
CARGO_TARGET_DIR,
FRESH_MAILCTL (the mailctl binary; default target/release/mailctl, else target/debug/mailctl).
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runner  # noqa: E402  (constants and helpers of the main suite)

BEGIN = "<!-- fresh-connection: begin (benches/scripts/fresh.py) -->"
END = "<!-- fresh-connection: end -->"
N = int(os.environ.get("FRESH_N", "5"))
USER = os.environ.get("FRESH_USER", "alice")
PASS = os.environ.get("FRESH_PASS", f"{USER}-pass")
PORT_BASE = int(os.environ.get("FRESH_PORT_BASE", "27100"))
DELAYS = [0, 25, 50]  # ms each way: the table shows 0 and 25 (0 and 50 ms RTT)
WORK = runner.WORK / "fresh"
CA = runner.CA
FLOORS = {
    ("poll", "PLAIN"): 5, ("poll", "SCRAM-SHA-256"): 7, ("poll", "USER/PASS"): 6,
    ("send", "PLAIN"): 7, ("send", "SCRAM-SHA-256"): 9,
}
# What a client at the floor measures through the relay (the banner is half a round trip).
MEASURED_FLOOR_OFFSET = {"poll": 0.0, "send": -0.5}


def say(msg):
    print(f"fresh: {msg}", flush=True)


def mailctl_binary():
    if os.environ.get("FRESH_MAILCTL"):
        return Path(os.environ["FRESH_MAILCTL"])
    for profile in ("release", "debug"):
        path = runner.TARGET / profile / "mailctl"
        if path.exists():
            return path
    sys.exit("fresh: no mailctl binary: cargo build --release -p mail-examples --bin mailctl")


def timed(cmd, env, log):
    full = dict(os.environ, **env)
    with open(log, "ab") as out:
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, env=full, stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, timeout=120).returncode
        return time.perf_counter() - t0, rc


def clients(mailctl, pop_port, smtp_port, ms, message):
    """(operation, client label, mechanism) -> (command, env)."""
    conf = WORK / f"conf-{ms}"
    conf.mkdir(parents=True, exist_ok=True)
    out = {}
    for mech, flag in (("PLAIN", "plain"), ("SCRAM-SHA-256", "scram-sha-256")):
        maildir = WORK / f"mailctl-{ms}-{flag}"
        runner.fresh_dir(maildir)
        out[("poll", "mailctl", mech)] = (
            [str(mailctl), "fetch", "--host", "127.0.0.1", "--port", str(pop_port),
             "--tls", "implicit", "--user", USER, "--password-env", "FRESH_PW",
             "--ca-file", str(CA), "--maildir", str(maildir), "--keep", "--auth", flag],
            {"FRESH_PW": PASS})
        uidls = conf / f"mpop-uidls-{flag}"
        mpop_dir = WORK / f"mpop-{ms}-{flag}"
        runner.fresh_dir(mpop_dir)
        rc = runner.write_secret(conf / f"mpoprc-{flag}", "\n".join([
            "defaults", "host 127.0.0.1", f"port {pop_port}", "tls on", "tls_starttls off",
            f"tls_trust_file {CA}", "tls_host_override localhost", "keep on", "only_new on",
            f"uidls_file {uidls}", f"delivery maildir {mpop_dir}", f"user {USER}",
            f"password {PASS}", f"auth {flag}", "account default", ""]))
        out[("poll", f"mpop {runner.tool_version('mpop')}", mech)] = (
            ["mpop", "-C", str(rc), "-q", "default"], {})
        msmtprc = runner.write_secret(conf / f"msmtprc-{flag}", "\n".join([
            "defaults", "account bench", "host 127.0.0.1", f"port {smtp_port}", "tls on",
            "tls_starttls on", f"tls_trust_file {CA}", "tls_host_override localhost",
            f"auth {flag}", f"user {runner.SEND_USER}", f"password {runner.SEND_PASS}",
            "from bob@testground.example", "domain bench.testground.example",
            "account default : bench", ""]))
        out[("send", f"msmtp {runner.tool_version('msmtp')}", mech)] = (
            ["sh", "-c", f'exec msmtp -C "{msmtprc}" {runner.SINK_RCPT} < "{message}"'], {})
        out[("send", "mailctl", mech)] = (
            [str(mailctl), "send", "--host", "127.0.0.1", "--port", str(smtp_port),
             "--tls", "starttls", "--user", runner.SEND_USER, "--password-env", "FRESH_PW",
             "--ca-file", str(CA), "--from", "bob@testground.example",
             "--to", runner.SINK_RCPT, "--auth", flag, str(message)],
            {"FRESH_PW": runner.SEND_PASS})
    home = conf / "fetchmail-home"
    home.mkdir(exist_ok=True)
    deliver = conf / "fetchmail-deliver.sh"
    deliver.write_text("#!/bin/sh\ncat >/dev/null\n")
    deliver.chmod(0o755)
    fetchmailrc = runner.write_secret(conf / "fetchmailrc", "\n".join([
        "set no syslog", "set no bouncemail",
        f"poll 127.0.0.1 service {pop_port} protocol pop3 auth password uidl",
        f"  user {USER} there with password {PASS} is root here",
        f"  ssl sslcertck sslcertfile {CA} sslcommonname localhost sslproto TLS1.2+",
        "  keep", f"  mda \"{deliver}\"", ""]))
    out[("poll", f"fetchmail {runner.tool_version('fetchmail')}", "USER/PASS")] = (
        ["fetchmail", "-f", str(fetchmailrc), "-N", "--nosyslog"],
        {"FETCHMAILHOME": str(home)})
    return out


def measure():
    mailctl = mailctl_binary()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    message = WORK / "message.eml"
    message.write_bytes(b"From: bob@testground.example\r\nTo: x@sink.testground.example\r\n"
                        b"Subject: fresh-connection bench\r\n\r\nOne small message.\r\n")
    relays, results = {}, {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "n": N, "user": USER, "mailctl": str(mailctl), "rtt_ms": {},
                           "runs": {}}
    try:
        for i, ms in enumerate(DELAYS):
            pop, smtp = PORT_BASE + 2 * i, PORT_BASE + 2 * i + 1
            runner.tg("delay", pop, runner.POP3S, ms)
            runner.tg("delay", smtp, runner.SUBMISSION, ms)
            relays[ms] = {"pop": pop, "smtp": smtp}
            results["rtt_ms"][str(ms)] = runner.probe_rtt(smtp)
            say(f"+{ms} ms each way: NOOP round trip {results['rtt_ms'][str(ms)]:.2f} ms")
        table = {ms: clients(mailctl, p["pop"], p["smtp"], ms, message)
                 for ms, p in relays.items()}
        logs = WORK / "logs"
        logs.mkdir()
        # Priming: every UID known before the timed polls (and any failure shown now).
        for ms, cmds in table.items():
            for key, (cmd, env) in cmds.items():
                if key[0] == "poll":
                    _, rc = timed(cmd, env, logs / "prime.log")
                    if rc not in (0, 1):  # mpop/fetchmail: 1 = no new mail
                        say(f"priming {key} at +{ms} ms failed (rc {rc}): see {logs}/prime.log")
        for _ in range(N):
            for ms, cmds in table.items():
                for key, (cmd, env) in cmds.items():
                    name = "-".join(re.sub(r"\W+", "_", k) for k in key)
                    wall, rc = timed(cmd, env, logs / f"{name}-{ms}.log")
                    ok = rc == 0 or (key[0] == "poll" and rc == 1)
                    runs = results["runs"].setdefault("|".join(key), {}).setdefault(str(ms), [])
                    runs.append(wall * 1000 if ok else None)
                    if not ok:
                        say(f"{key} at +{ms} ms: exit status {rc} (see {logs})")
    finally:
        for ports in relays.values():
            for port in ports.values():
                pidf = runner.TG / "run" / f"delay-{port}.pid"
                try:
                    pid = int(pidf.read_text().strip())
                    if b"delay_relay.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        os.kill(pid, 15)
                except (OSError, ValueError):
                    pass
                (runner.TG / "run" / f"delay-{port}.args").unlink(missing_ok=True)
    return results


def summarize(results):
    rtt = results["rtt_ms"][str(DELAYS[2])] - results["rtt_ms"][str(DELAYS[1])]
    rows = []
    for key, by_ms in results["runs"].items():
        op, client, mech = key.split("|")
        good = {ms: [x for x in runs if x is not None] for ms, runs in by_ms.items()}
        if not all(good.get(str(ms)) for ms in DELAYS):
            rows.append({"op": op, "client": client, "mech": mech, "failed": True})
            continue
        m0 = statistics.median(good[str(DELAYS[0])])
        m1 = statistics.median(good[str(DELAYS[1])])
        m2 = statistics.median(good[str(DELAYS[2])])
        trips = (m2 - m1) / rtt
        floor = FLOORS.get((op, mech))
        rows.append({"op": op, "client": client, "mech": mech, "ms0": m0, "ms50": m1, "ms100": m2,
                     "round_trips": trips, "floor": floor})
    return rtt, rows


def markdown(results):
    rtt, rows = summarize(results)
    ops = {"poll": "Check for new mail, nothing new (POP3S, keep, every UID known)",
           "send": "Send one small message on 587 (STARTTLS)"}
    lines = [BEGIN, "", "## Fresh connections: round trips against the floor (issue 14)", "",
             f"Generated by `python3 benches/scripts/fresh.py` (also run by `bash benches/run.sh`)"
             f" on {results['date']}: whole processes, median of {results['n']} runs each, "
             f"interleaved; mailctl is `{Path(results['mailctl']).relative_to(runner.ROOT) if Path(results['mailctl']).is_relative_to(runner.ROOT) else results['mailctl']}`. "
             f"Round trips = (median at 100 ms − median at 50 ms RTT) / the difference of the relay's "
             f"measured round trips ({rtt:.1f} ms), so start-up, CPU time and the relay's own "
             f"per-chunk overhead cancel out; the TCP handshake is not counted (the relay delays "
             f"after it). Floors as in the issue: poll 5 round trips with a "
             f"one-step mechanism (PLAIN), 6 with USER/PASS, 7 with SCRAM; send 7 with PLAIN, 9 "
             f"with SCRAM, counting the banner as one (through the relay it costs half, so a "
             f"client at the send floor measures 6.5 / 8.5). Poll user `{results['user']}` "
             f"(read-only, keep mode), send as bob to the sink domain.", ""]
    for op in ("poll", "send"):
        lines += [f"### {ops[op]}", "",
                  "| client | mechanism | 0 ms RTT | 50 ms RTT | 100 ms RTT | round trips | floor | at the floor? |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in sorted((r for r in rows if r["op"] == op),
                        key=lambda r: (r["mech"], r["client"] != "mailctl", r["client"])):
            if r.get("failed"):
                lines.append(f"| {r['client']} | {r['mech']} | failed | failed | failed | | | |")
                continue
            floor = r["floor"]
            target = floor + MEASURED_FLOOR_OFFSET[op] if floor else None
            verdict = ("yes" if target and r["round_trips"] <= target + 0.4
                       else f"no: {r['round_trips'] - target:+.1f}" if target else "")
            lines.append(f"| {r['client']} | {r['mech']} | {r['ms0']:.0f} ms | {r['ms50']:.0f} ms "
                         f"| {r['ms100']:.0f} ms "
                         f"| {r['round_trips']:.1f} | {floor or ''} | {verdict} |")
        lines.append("")
        ours = {r["mech"]: r for r in rows if r["op"] == op and r["client"] == "mailctl"
                and not r.get("failed")}
        for r in rows:
            if r["op"] != op or r["client"] == "mailctl" or r.get("failed"):
                continue
            if r["mech"] in ours:
                o = ours[r["mech"]]
                faster = o["ms50"] < r["ms50"]
                lines.append(f"- {r['mech']}: mailctl {o['ms50']:.0f} ms against {r['client']} "
                             f"{r['ms50']:.0f} ms at 50 ms RTT: "
                             f"{'faster' if faster else 'NOT faster'} "
                             f"({o['round_trips']:.1f} against {r['round_trips']:.1f} round trips).")
        lines.append("")
    lines += [
        "Before the floor work of issue 14 (main at 7550cf8), a `-vv` trace through the relay "
        "showed mailctl's poll with SCRAM-SHA-256 at 9 round trips (TLS 2, CAPA, AUTH 3, LIST, "
        "then UIDL alone, then waiting for QUIT's +OK) and its send at 10 (banner, EHLO, "
        "STARTTLS, TLS, EHLO, AUTH 3, MAIL+RCPT+BDAT, waiting for QUIT's 221). Now LIST and "
        "UIDL go in one flight (the server announces PIPELINING; lockstep otherwise), and QUIT "
        "is written without waiting for its reply, except after DELE, where the reply commits "
        "the deletion and is awaited.", ""]
    lines.append(END)
    return "\n".join(lines) + "\n"


def splice(readme, section):
    text = readme.read_text() if readme.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    readme.write_text(text)


def main():
    if "--report-only" not in sys.argv:
        results = measure()
        (runner.BENCHES / "fresh.json").write_text(json.dumps(results, indent=1) + "\n")
    else:
        results = json.loads((runner.BENCHES / "fresh.json").read_text())
    section = markdown(results)
    (runner.BENCHES / "fresh.md").write_text(section)
    splice(runner.BENCHES / "README.md", section)
    print(section)


if __name__ == "__main__":
    main()
