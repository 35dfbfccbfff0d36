#!/usr/bin/env bash
# The scale benchmark's second peer: fetchmail in daemon mode checking N empty mailboxes of the
# bench-scale server, all of them as `user` entries of one `poll` in one configuration file, as
# a help desk would run it (one daemon, `fetchmail -d`). Times the daemon's first round: from
# its start to its "sleeping at" log line, which it writes when every mailbox has been checked.
#
#   bash benches/scripts/scale_fetchmail.sh [N=1000] [DELAY_MS=0]
#
# Needs target/release/bench-scale (cargo build --release -p mail-benches --bin bench-scale)
# and fetchmail (apt-get install fetchmail). Prints the round's wall seconds and the daemon's
# peak RSS (VmHWM).
set -euo pipefail
N=${1:-1000}
DELAY=${2:-0}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/bench-scale"
WORK="$(mktemp -d /tmp/scale-fetchmail.XXXXXX)"
DAEMON=
cleanup() {
  if [[ -n $DAEMON ]]; then kill "$DAEMON" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true; fi
  exec 3>&-
  rm -rf "$WORK"
}
trap cleanup EXIT

coproc SERVER { "$BIN" --serve --mailboxes "$N" --messages 0 --delay-ms "$DELAY"; }
exec 3>&"${SERVER[1]}"
read -r _ PORT _ CA <&"${SERVER[0]}"

RC="$WORK/fetchmailrc"
{
  # A round every hour: only the first one is measured. `auth password` is USER/PASS inside
  # TLS, as mpop's `auth user` and bench-scale's own logins.
  # (--nodetach ignores `set logfile`: the log is the daemon's output.)
  printf 'set daemon 3600\nset no syslog\nset no bouncemail\n'
  printf 'poll localhost via 127.0.0.1 service %s protocol pop3 uidl auth password\n' "$PORT"
  for ((i = 0; i < N; i++)); do
    printf '  user "box%d@scale.test" there with password "secret" is root here\n' "$i"
    printf '    ssl sslcertck sslcertfile %s sslcommonname localhost\n' "$CA"
    printf '    keep mda "/bin/sh -c %s"\n' "'cat >/dev/null'"
  done
} >"$RC"
chmod 600 "$RC"

start=$(date +%s.%N)
FETCHMAILHOME="$WORK" fetchmail -v --nodetach -f "$RC" </dev/null >"$WORK/out" 2>&1 &
DAEMON=$!
until grep -q 'sleeping at' "$WORK/out" 2>/dev/null; do
  if ! kill -0 "$DAEMON" 2>/dev/null; then
    tail -n 20 "$WORK/out" >&2 || true
    echo "fetchmail exited before finishing its first round" >&2
    exit 1
  fi
  sleep 0.05
done
end=$(date +%s.%N)
rss=$(awk '/^VmHWM/ {print $2, $3}' "/proc/$DAEMON/status")
errors=$(grep -c -i -E 'error|failed|timeout' "$WORK/out" || true)
echo "fetchmail -d: $N empty mailboxes, +$DELAY ms each way: first round $(echo "$end - $start" | bc) s," \
  "peak RSS $rss, $errors error lines in its output"
