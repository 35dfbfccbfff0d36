#!/usr/bin/env bash
# test-all.sh: the whole test suite, as CI runs it, on a fresh machine or a developer's.
#
#   1. installs, sets up and starts the test ground (Dovecot POP3 + submission, Postfix, aiosmtpd,
#      mailutils pop3d on loopback) where it is not running already, and stops on exit whatever
#      this run started;
#   2. cargo fmt --check, cargo clippy -D warnings, cargo test (unit, integration, doc tests),
#      cargo doc -D warnings,
#      feature-set checks, cargo package of the four published crates;
#   3. every fuzz target for a bounded time (FUZZ_SECONDS per target, default 30; 0 skips).
#
# Exit status is non-zero on the first failing step. Logs of the servers: $TESTGROUND_DIR/logs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
TG="$ROOT/testground/scripts/testground.sh"
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"

step() { printf '\n==> %s\n' "$*"; }
START=$SECONDS

# rust-toolchain.toml pins 1.95.0; a machine whose one toolchain is that version under the name
# `stable` gets a local alias instead of a download (these machines have no network for rustup).
if command -v rustup >/dev/null && ! rustup toolchain list | grep -q '^1\.95\.0-'; then
  stable_dir="$(rustup +stable which rustc 2>/dev/null | sed 's#/bin/rustc$##')" || true
  if [[ -n ${stable_dir:-} ]] && "$stable_dir/bin/rustc" --version | grep -q '^rustc 1\.95\.0 '; then
    step "linking toolchain 1.95.0 to the installed stable ($stable_dir)"
    rustup toolchain link 1.95.0 "$stable_dir"
  fi
fi

STARTED_HERE=0
cleanup() {
  local rc=$?
  if ((STARTED_HERE)); then
    step "stopping the test ground this run started"
    bash "$TG" stop || true
  fi
  printf '\n==> test-all: %s after %d s\n' "$( ((rc == 0)) && echo PASSED || echo "FAILED (exit $rc)")" $((SECONDS - START))
  exit $rc
}
trap cleanup EXIT

# install and setup are idempotent and quick when nothing is missing; they run every time, so a
# machine whose test ground predates a new server (or package) gets it too.
status_output="$(bash "$TG" status 2>/dev/null || true)"
if ! grep -q ' up ' <<<"$status_output"; then
  step "installing and starting the test ground"
  STARTED_HERE=1
else
  step "test ground (partly) running: using it, leaving it running"
fi
bash "$TG" install
setup_output="$(bash "$TG" setup)"
printf '%s\n' "$setup_output"
if grep -q "changed while running" <<<"$setup_output"; then
  step "its configuration changed: restarting it"
  bash "$TG" stop
fi
# starts whatever is not running (a server added since the ground was started, too)
bash "$TG" start
bash "$TG" reset-mail
bash "$TG" verify

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "cargo test (all features)"
cargo test --workspace --all-features --locked

step "cargo check (default features: the sans-IO cores build without tokio)"
cargo check --workspace --all-targets --locked

step "cargo clippy of the blocking driver without tokio (the libraries: tests pull tokio in)"
cargo clippy -p mail-common -p pop3-proto -p smtp-submit --lib --features blocking --locked -- -D warnings
if cargo tree -p mail-common --features blocking -e normal --locked | grep -q '^.* tokio '; then
  echo "mail-common's blocking feature depends on tokio" >&2
  exit 1
fi

step "cargo doc (warnings are errors): the published crates with their default features, and all of it with all features (as docs.rs builds them)"
RUSTDOCFLAGS=-Dwarnings cargo doc -p mail-common -p pop3-proto -p smtp-submit -p mail-account --no-deps --locked
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --all-features --locked

step "cargo test --doc with default features (as a user or crater runs the published crates' tests), and mail-account's feature sets"
# One crate per run: features of packages selected together are unified.
for crate in mail-common pop3-proto smtp-submit mail-account; do
  cargo test -p "$crate" --doc --locked
done
for features in "" discover store session; do
  cargo test -p mail-account --no-default-features --features "$features" --doc --locked
done

step "cargo check mail-account feature sets (none: data and lookup only; each alone)"
cargo check -p mail-account --no-default-features --locked
cargo check -p mail-account --no-default-features --features discover --locked
cargo check -p mail-account --no-default-features --features store --locked
cargo check -p mail-account --no-default-features --features session --locked

step "cargo package (the crates meant for crates.io build from their packaged sources)"
# In a target directory of its own, removed afterwards: verification builds our crates as
# registry packages, and cargo takes a registry package of the same name and version as
# unchanged, so a target directory that saw an earlier run would link the fresh smtp-submit
# against that run's mail-common. The unpacked copies cargo keeps under $CARGO_HOME go too.
package_target="$(mktemp -d)"
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/{mail-common,pop3-proto,smtp-submit,mail-account}-[0-9]*
CARGO_TARGET_DIR="$package_target" \
  cargo package -p mail-common -p pop3-proto -p smtp-submit -p mail-account --locked --allow-dirty
rm -rf "$package_target"

if [[ -x fuzz/run-smoke.sh ]] && ((FUZZ_SECONDS > 0)); then
  step "fuzzing every target for ${FUZZ_SECONDS} s"
  fuzz/run-smoke.sh "$FUZZ_SECONDS"
fi
