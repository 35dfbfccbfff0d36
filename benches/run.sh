#!/usr/bin/env bash
# The benchmark suite of issue 8, in one command:
#
#   bash benches/run.sh
#
# starts the test ground if it is down, installs the peer clients (mpop, msmtp, fetchmail),
# builds the release binaries, then benches/scripts/fresh.py measures fresh-connection round
# trips (poll with nothing new, send one; issue 14) and benches/scripts/runner.py runs the latency relays, the
# fetch/send comparisons, the 200 MiB memory measurements and the criterion codec benches, and
# writes benches/README.md, benches/chart.svg and benches/results.json.
#
# Settings (environment): BENCH_N (runs per measurement, default 3), BENCH_SEND_MSGS (500),
# BENCH_MSMTP_MSGS (50), BENCH_LATENCIES ("0 5", ms each way), BENCH_BIG_MIB (200),
# BENCH_SKIP (any of: fresh fetch send memory criterion), BENCH_FSYNC (1),
# BENCH_BUILD_MAILCTL (1: build mailctl when its source exists, so `mailctl fetch` is measured).
# Scratch files go to BENCH_WORK (default /tmp/mail-benches).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TGSH="$ROOT/testground/scripts/testground.sh"

if ! bash "$TGSH" status >/dev/null 2>&1; then
  echo "bench: the test ground is not (fully) running: starting it"
  bash "$TGSH" all
fi
bash "$TGSH" install-peers
# GNU time reports each client's peak RSS (the runner falls back to wait4, which overstates it).
if [[ ! -x /usr/bin/time ]]; then
  echo "bench: apt-get install time"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends time >/dev/null ||
    echo "bench: GNU time unavailable; peak RSS will include the runner's fork"
fi

echo "bench: cargo build --release -p mail-benches"
cargo build --release -p mail-benches
if [[ ${BENCH_BUILD_MAILCTL:-1} == 1 && -f examples/src/bin/mailctl/main.rs ]]; then
  echo "bench: cargo build --release -p mail-examples --bin mailctl"
  cargo build --release -p mail-examples --bin mailctl ||
    echo "bench: mailctl does not build; the fetch falls back to bench-ours-fetch"
fi

PY=/usr/bin/python3
[[ -x $PY ]] || PY="$(command -v python3)"
# Fresh-connection latency against the protocol floors (issue 14): benches/fresh.md, which
# runner.py appends to README.md.
if [[ " ${BENCH_SKIP:-} " != *" fresh "* ]]; then
  "$PY" "$ROOT/benches/scripts/fresh.py"
fi
exec "$PY" "$ROOT/benches/scripts/runner.py"
