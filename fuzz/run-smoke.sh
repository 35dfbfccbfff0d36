#!/usr/bin/env bash
# run-smoke.sh [SECONDS]: every fuzz target for SECONDS (default 30) from the checked-in seeds,
# after replaying every saved crash in fuzz/regressions/<target>/ once. Prints the executions per
# target and the total; exits non-zero on any crash (libFuzzer keeps the input in
# fuzz/artifacts/<target>/: move it to fuzz/regressions/<target>/ once fixed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
SECONDS_PER_TARGET="${1:-30}"

if ! command -v cargo-fuzz >/dev/null; then
  echo "run-smoke: installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked --version 0.13.2
fi
# libFuzzer's sanitizer flags need nightly; on a machine with only the stable toolchain the same
# compiler accepts them with RUSTC_BOOTSTRAP=1.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  FUZZ=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  FUZZ=(cargo fuzz)
fi

targets=($("${FUZZ[@]}" list))
"${FUZZ[@]}" build -O
total=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "regressions/$t"
  if compgen -G "regressions/$t/*" >/dev/null; then
    "${FUZZ[@]}" run -O "$t" regressions/"$t"/* -- -runs=1 >/dev/null 2>&1 \
      || { echo "run-smoke: $t fails on a saved regression input (fuzz/regressions/$t)"; exit 1; }
  fi
  log="$(mktemp)"
  if ! "${FUZZ[@]}" run -O "$t" "corpus/$t" -- -max_total_time="$SECONDS_PER_TARGET" \
    -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    grep -A3 -m1 -E "panicked|ERROR: AddressSanitizer|ERROR: libFuzzer" "$log" || tail -40 "$log"
    echo "run-smoke: $t crashed; input kept in fuzz/artifacts/$t/"
    exit 1
  fi
  runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)"
  printf 'run-smoke: %-15s %10s executions in %s s, no crash\n' "$t" "${runs:-?}" "$SECONDS_PER_TARGET"
  total=$((total + ${runs:-0}))
  rm -f "$log"
done
echo "run-smoke: ${#targets[@]} targets, $total executions in all, no crash"
