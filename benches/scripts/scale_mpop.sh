#!/usr/bin/env bash
# The scale benchmark's peer: mpop checking N empty mailboxes of the bench-scale server, all
# accounts of one configuration file in one run (`mpop -a`), as a help desk would configure it.
#
#   bash benches/scripts/scale_mpop.sh [N=1000] [DELAY_MS=0]
#
# Needs target/release/bench-scale (cargo build --release -p mail-benches --bin bench-scale)
# and mpop (apt-get install mpop). Prints wall seconds and peak RSS (GNU time, else bash's).
set -euo pipefail
N=${1:-1000}
DELAY=${2:-0}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/bench-scale"
WORK="$(mktemp -d /tmp/scale-mpop.XXXXXX)"
trap 'exec 3>&-; rm -rf "$WORK"' EXIT

coproc SERVER { "$BIN" --serve --mailboxes "$N" --messages 0 --delay-ms "$DELAY"; }
exec 3>&"${SERVER[1]}"
read -r _ PORT _ CA <&"${SERVER[0]}"

mkdir -p "$WORK/Maildir/"{tmp,new,cur}
RC="$WORK/mpoprc"
{
  printf 'defaults\nhost localhost\nport %s\ntls on\ntls_starttls off\ntls_trust_file %s\n' "$PORT" "$CA"
  printf 'auth user\npassword secret\ndelivery maildir %s\nuidls_file %s/%%U-%%H\n' "$WORK/Maildir" "$WORK"
  for ((i = 0; i < N; i++)); do
    printf '\naccount box%d\nuser box%d@scale.test\n' "$i" "$i"
  done
} >"$RC"
chmod 600 "$RC"

start=$(date +%s.%N)
if [[ -x /usr/bin/time ]]; then
  /usr/bin/time -f 'mpop peak RSS %M KiB' mpop -q -C "$RC" -a
else
  mpop -q -C "$RC" -a
fi
end=$(date +%s.%N)
echo "mpop -a: $N empty mailboxes, +$DELAY ms each way: $(echo "$end - $start" | bc) s"
