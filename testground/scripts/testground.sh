#!/usr/bin/env bash
# testground.sh: real mail servers on loopback for the integration tests.
#
#   Dovecot 2.3 POP3   11110 (plain + STLS), 11995 (POP3S)
#   Postfix 3.7 SMTP   10025 (plain, STARTTLS optional, AUTH in clear), 10026 (legacy EHLO),
#                      10587 (STARTTLS required), 10465 (implicit TLS)
#   aiosmtpd (venv)    12025 (plain, STARTTLS optional), 12587 (STARTTLS required), 12465 (implicit TLS)
#
# All state lives in $TESTGROUND_DIR (default /tmp/testground). Users: alice, bob, carol, dave and
# the per-suite scratch users erin, frank, grace, heidi, ivan, judy, kate, liam, mia, noah, olivia, each with password <user>-pass, address <user>@testground.example. CA: $TESTGROUND_DIR/certs/ca.crt.
# Run `testground.sh help` for the subcommands. Every subcommand is idempotent.
set -euo pipefail
# daemons and admin tools live in sbin, which a CI PATH may lack
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF_SRC="$(cd "$HERE/../conf" && pwd)"
TG="${TESTGROUND_DIR:-/tmp/testground}"
VENV="$TG/venv"
CERTS="$TG/certs"
LOGS="$TG/logs"
RUN="$TG/run"
DOVE="$TG/dovecot"
PFETC="$TG/postfix/etc"
PFSPOOL="$TG/postfix/spool"
AIO="$TG/aiosmtpd"
MAILROOT="$TG/mail"
USERS=(alice bob carol dave erin frank grace heidi ivan judy kate liam mia noah olivia)
AIOSMTPD_VERSION="${TESTGROUND_AIOSMTPD_VERSION:-1.4.6}"
SERVER_PKGS=(dovecot-core dovecot-pop3d postfix)
PEER_PKGS=(mpop msmtp fetchmail swaks libnet-ssleay-perl libdigest-hmac-perl libauthen-sasl-perl)
# Debian's python3 (python3-venv provides ensurepip for it); any python3 as fallback.
SYSPY=/usr/bin/python3
[[ -x $SYSPY ]] || SYSPY="$(command -v python3)"

# port -> "server: description" (order = status output order)
PORTS=(11110 11995 10025 10026 10587 10465 12025 12587 12465)
declare -A PORT_INFO=(
  [11110]="dovecot  POP3 plain + STLS"
  [11995]="dovecot  POP3S implicit TLS"
  [10025]="postfix  SMTP plain, STARTTLS optional, AUTH in clear"
  [10026]="postfix  SMTP legacy EHLO (no PIPELINING/CHUNKING/SMTPUTF8/8BITMIME/DSN/ENHANCEDSTATUSCODES)"
  [10587]="postfix  submission, STARTTLS required"
  [10465]="postfix  submissions, implicit TLS"
  [12025]="aiosmtpd SMTP plain, STARTTLS optional, AUTH in clear"
  [12587]="aiosmtpd submission, STARTTLS required"
  [12465]="aiosmtpd submissions, implicit TLS"
)
declare -A PORT_LOG=(
  [11110]=dovecot.log [11995]=dovecot.log
  [10025]=postfix.log [10026]=postfix.log [10587]=postfix.log [10465]=postfix.log
  [12025]=aiosmtpd.log [12587]=aiosmtpd.log [12465]=aiosmtpd.log
)

say() { printf 'testground: %s\n' "$*"; }
die() { printf 'testground: ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- helpers

# A PID counts as running unless gone or a zombie: daemons get re-parented to a
# PID 1 that reaps late, so `kill -0` would still see them (state Z) for seconds.
pid_alive() {
  local pid="$1" state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  state="$(sed -e 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# pid_from FILE [CMDLINE_SUBSTRING]: print the PID in FILE if that process is
# running (and its command line contains the substring: guards against PID reuse).
pid_from() {
  local file="$1" want="${2:-}" pid
  [[ -s $file ]] || return 1
  pid="$(tr -dc '0-9' <"$file")"
  pid_alive "$pid" || return 1
  if [[ -n $want ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$want"; then
    return 1
  fi
  echo "$pid"
}

# wait_gone PID SECONDS
wait_gone() {
  local pid="$1" i
  for ((i = 0; i < $2 * 10; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  return 1
}

# kill_pid PID NAME: SIGTERM, wait, then SIGKILL.
kill_pid() {
  local pid="$1" name="$2"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" 10; then
    say "$name (pid $pid) ignored SIGTERM, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 5 || die "$name (pid $pid) does not go away"
  fi
}

# port_open PORT [HOST]: does something accept TCP connections there?
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/${2:-127.0.0.1}/$1" 2>/dev/null
}

pkg_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

# apt_install PKG...: install what is missing; `apt-get update` only if a package
# has no candidate in the current lists, or if the install fails (stale lists).
# apt/dpkg chatter goes to $LOGS/apt.log (shown on failure).
apt_install() {
  local missing=() p policy
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p "$LOGS"
  local alog="$LOGS/apt.log" updated=0
  for p in "${missing[@]}"; do
    # (no `apt-cache | grep -q`: grep exits early, apt-cache gets SIGPIPE, pipefail says "failed")
    policy="$(apt-cache policy "$p" 2>/dev/null || true)"
    if [[ ! $policy =~ Candidate:\ [^\(] ]]; then
      say "apt-get update (no candidate for $p)"
      apt-get update >>"$alog" 2>&1 || { tail -n 20 "$alog" >&2; die "apt-get update failed"; }
      updated=1
      break
    fi
  done
  say "apt-get install ${missing[*]} (log: $alog)"
  if ! apt-get install -y --no-install-recommends "${missing[@]}" </dev/null >>"$alog" 2>&1; then
    if ((updated)); then tail -n 20 "$alog" >&2; die "apt-get install ${missing[*]} failed"; fi
    say "install failed, retrying after apt-get update"
    apt-get update >>"$alog" 2>&1 || true
    apt-get install -y --no-install-recommends "${missing[@]}" </dev/null >>"$alog" 2>&1 ||
      { tail -n 20 "$alog" >&2; die "apt-get install ${missing[*]} failed"; }
  fi
}

# render TEMPLATE DEST: fill the @...@ placeholders of a config in testground/conf.
render() {
  local tmp="$2.tmp"
  sed -e "s|@TG@|$TG|g" -e "s|@VMAIL_UID@|$(id -u vmail)|g" -e "s|@VMAIL_GID@|$(id -g vmail)|g" \
    "$CONF_SRC/$1" >"$tmp"
  put_file "$tmp" "$2"
}

# put_file TMP DEST: replace DEST only if the content changed (keeps mtimes stable).
put_file() {
  if cmp -s "$1" "$2"; then rm -f "$1"; else mv -f "$1" "$2"; CHANGED+=("$2"); fi
}

# postfix_cmd ARGS...: run `postfix -c our-config ARGS`, output to $LOGS/postfix-cmd.out.
# Once logging is up Postfix writes to $LOGS/postfix.log; errors before that (bad
# config) go only to syslog (there is none) unless stderr is a tty, so a failed
# `check` is re-run under `script` to show why.
postfix_cmd() {
  if ! postfix -c "$PFETC" "$@" </dev/null >>"$LOGS/postfix-cmd.out" 2>&1; then
    if [[ $1 == check ]]; then
      script -qec "postfix -c $PFETC check" /dev/null </dev/null 2>&1 | tail -n 20 >&2 || true
    else
      tail -n 10 "$LOGS/postfix.log" >&2 2>/dev/null || true
    fi
    return 1
  fi
}

dovecot_pid() { pid_from "$DOVE/run/master.pid" dovecot; }
postfix_pid() { pid_from "$PFSPOOL/pid/master.pid" master; }
aiosmtpd_pid() { pid_from "$RUN/aiosmtpd.pid" aiosmtpd_server.py; }

# ---------------------------------------------------------------- install

cmd_install() {
  command -v debconf-set-selections >/dev/null || die "debconf-set-selections missing (not Debian?)"
  if ! pkg_installed postfix; then
    # "No configuration": the package installs no /etc/postfix/main.cf and asks nothing.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  fi
  apt_install "${SERVER_PKGS[@]}" openssl python3-venv
  if "$VENV/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
    say "aiosmtpd already in $VENV"
  else
    say "creating venv $VENV with aiosmtpd==$AIOSMTPD_VERSION"
    rm -rf "$VENV"
    mkdir -p "$TG"
    "$SYSPY" -m venv "$VENV"
    "$VENV/bin/pip" install -q "aiosmtpd==$AIOSMTPD_VERSION" || die "pip install aiosmtpd failed"
  fi
}

cmd_install_peers() {
  apt_install "${PEER_PKGS[@]}"
}

# ---------------------------------------------------------------- setup

certs_valid() {
  local f
  for f in ca.key ca.crt server.key server.crt server-chain.crt; do [[ -s $CERTS/$f ]] || return 1; done
  openssl verify -CAfile "$CERTS/ca.crt" "$CERTS/server.crt" >/dev/null 2>&1 || return 1
  # still valid for at least a day, and the leaf really is for localhost / 127.0.0.1 / ::1
  openssl x509 -in "$CERTS/ca.crt" -noout -checkend 86400 >/dev/null || return 1
  openssl x509 -in "$CERTS/server.crt" -noout -checkend 86400 >/dev/null || return 1
  openssl x509 -in "$CERTS/server.crt" -noout -checkhost localhost | grep -q 'does match' || return 1
  openssl x509 -in "$CERTS/server.crt" -noout -checkip 127.0.0.1 | grep -q 'does match' || return 1
  openssl x509 -in "$CERTS/server.crt" -noout -checkip ::1 | grep -q 'does match' || return 1
  # key belongs to the certificate
  [[ "$(openssl x509 -in "$CERTS/server.crt" -noout -pubkey)" == "$(openssl pkey -in "$CERTS/server.key" -pubout)" ]]
}

# Private CA + leaf. Not one self-signed cert: Debian's openssl makes that CA:TRUE and
# rustls then refuses it as the server cert (CaUsedAsEndEntity).
make_certs() {
  if certs_valid; then
    say "certificates in $CERTS are valid, kept"
    return 0
  fi
  say "creating CA and server certificate in $CERTS"
  rm -rf "$CERTS"
  mkdir -p "$CERTS"
  local d="$CERTS"
  cat >"$d/ext.cnf" <<'EOF'
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  # CA: self-signed from a CSR, so the extensions come only from ext.cnf (not openssl.cnf)
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key"
  openssl req -new -key "$d/ca.key" -subj "/O=testground/CN=testground CA" -out "$d/ca.csr"
  openssl x509 -req -in "$d/ca.csr" -signkey "$d/ca.key" -days 3650 \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$d/ext.cnf" -extensions ca -out "$d/ca.crt" 2>/dev/null
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/server.key"
  openssl req -new -key "$d/server.key" -subj "/O=testground/CN=localhost" -out "$d/server.csr"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -days 3650 \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$d/ext.cnf" -extensions leaf -out "$d/server.crt" 2>/dev/null
  cat "$d/server.crt" "$d/ca.crt" >"$d/server-chain.crt"
  rm -f "$d/ca.csr" "$d/server.csr" "$d/ext.cnf"
  chmod 600 "$d/ca.key" "$d/server.key"
  chmod 644 "$d/ca.crt" "$d/server.crt" "$d/server-chain.crt"
  certs_valid || die "generated certificates do not validate (see $CERTS)"
}

# Mailboxes are (re)generated when missing or not matching the generator, never
# behind a test's back otherwise: `reset-mail` forces it.
mail_current() {
  local stamp
  stamp="$(sha256sum "$HERE/gen_maildir.py" | cut -c1-16)"
  [[ -f $MAILROOT/.generated && "$(cat "$MAILROOT/.generated")" == "$stamp" ]] || return 1
  local u
  for u in "${USERS[@]}"; do [[ -d $MAILROOT/$u/Maildir/cur ]] || return 1; done
}

cmd_reset_mail() {
  id vmail >/dev/null 2>&1 || die "user vmail missing: run setup first"
  mkdir -p "$MAILROOT"
  chmod 755 "$MAILROOT"
  if (($#)); then
    # Only the named users; the stamp and aiosmtpd's Maildir are left alone.
    "$SYSPY" "$HERE/gen_maildir.py" --owner vmail "$MAILROOT" "$@"
    return
  fi
  "$SYSPY" "$HERE/gen_maildir.py" --owner vmail "$MAILROOT" "${USERS[@]}"
  sha256sum "$HERE/gen_maildir.py" | cut -c1-16 >"$MAILROOT/.generated"
  # aiosmtpd's catch-all Maildir is emptied too.
  rm -rf "$AIO/Maildir"
  mkdir -p "$AIO/Maildir/cur" "$AIO/Maildir/new" "$AIO/Maildir/tmp"
}

cmd_setup() {
  if ! command -v dovecot >/dev/null || ! command -v postfix >/dev/null; then
    die "servers not installed: run install first"
  fi
  CHANGED=()
  mkdir -p "$TG" "$LOGS" "$RUN" "$DOVE" "$PFETC" "$PFSPOOL" "$TG/postfix/data" "$AIO"
  # Postfix's data dir (master.lock, TLS cache) must belong to its mail_owner.
  chown postfix:postfix "$TG/postfix/data"
  chmod 755 "$TG" "$DOVE"
  if ! id vmail >/dev/null 2>&1; then
    say "creating system user vmail"
    useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin vmail
  fi
  make_certs

  # Dovecot: config + users (passwd-file, {PLAIN} so CRAM-MD5/SCRAM/APOP work).
  render dovecot.conf "$DOVE/dovecot.conf"
  render dovecot-oauth2.conf.ext "$DOVE/oauth2.conf.ext"
  render dovecot-oauth2-passdb.conf.ext "$DOVE/oauth2-passdb.conf.ext"
  {
    echo "# user:password:uid:gid:gecos:home:shell:extra (uid/gid/home come from userdb default_fields)"
    for u in "${USERS[@]}"; do echo "$u:{PLAIN}$u-pass::::::"; done
  } >"$DOVE/users.tmp"
  put_file "$DOVE/users.tmp" "$DOVE/users"
  chown root:dovecot "$DOVE/users"
  chmod 640 "$DOVE/users"
  doveconf -c "$DOVE/dovecot.conf" -n >/dev/null || die "dovecot config invalid: doveconf -c $DOVE/dovecot.conf -n"

  # Postfix: private config dir + queue dir side by side.
  render postfix-main.cf "$PFETC/main.cf"
  render postfix-master.cf "$PFETC/master.cf"
  for u in "${USERS[@]}"; do echo "$u@testground.example  $u/Maildir/"; done >"$PFETC/vmailbox.tmp"
  put_file "$PFETC/vmailbox.tmp" "$PFETC/vmailbox"
  echo "sink.testground.example  discard:benchmark sink" >"$PFETC/transport.tmp"
  put_file "$PFETC/transport.tmp" "$PFETC/transport"
  # `postfix check` creates the queue subdirectories with the right owners.
  postfix_cmd check || die "postfix check failed (config $PFETC, log $LOGS/postfix.log)"

  if mail_current; then
    say "mailboxes in $MAILROOT are current, kept (reset-mail regenerates them)"
  else
    cmd_reset_mail
  fi
  if ((${#CHANGED[@]})) && { dovecot_pid >/dev/null || postfix_pid >/dev/null; }; then
    say "changed while running (restart to apply): ${CHANGED[*]}"
  fi
  touch "$TG/.setup-done"
  say "setup done in $TG"
}

# ---------------------------------------------------------------- start / stop

# wait_ports SECONDS PORT...: poll until every port accepts connections.
wait_ports() {
  local timeout="$1" p deadline
  shift
  deadline=$((SECONDS + timeout))
  for p in "$@"; do
    until port_open "$p"; do
      if ((SECONDS >= deadline)); then
        say "port $p (${PORT_INFO[$p]:-}) not listening after ${timeout}s; log: $LOGS/${PORT_LOG[$p]:-}" >&2
        tail -n 15 "$LOGS/${PORT_LOG[$p]:-}" 2>/dev/null | sed 's/^/    /' >&2 || true
        return 1
      fi
      sleep 0.1
    done
  done
}

start_dovecot() {
  if dovecot_pid >/dev/null; then say "dovecot already running (pid $(dovecot_pid))"; return; fi
  # Fresh run dir: a stale anvil-auth-penalty socket otherwise makes Dovecot log errors.
  rm -rf "$DOVE/run"
  mkdir -p "$DOVE/run" "$DOVE/state"
  # </dev/null and a log file: an inherited stdout would keep the caller's pipe open forever.
  dovecot -c "$DOVE/dovecot.conf" </dev/null >>"$LOGS/dovecot.out" 2>&1 ||
    die "dovecot did not start; see $LOGS/dovecot.log and $LOGS/dovecot.out"
  say "dovecot started (pid $(cat "$DOVE/run/master.pid" 2>/dev/null || echo '?'))"
}

start_postfix() {
  if postfix_pid >/dev/null; then say "postfix already running (pid $(postfix_pid))"; return; fi
  postfix_cmd start || die "postfix did not start; see $LOGS/postfix.log"
  say "postfix started (pid $(postfix_pid || echo '?'))"
}

start_aiosmtpd() {
  if aiosmtpd_pid >/dev/null; then say "aiosmtpd already running (pid $(aiosmtpd_pid))"; return; fi
  [[ -x $VENV/bin/python ]] || die "no venv at $VENV: run install first"
  rm -f "$RUN/aiosmtpd.pid"
  mkdir -p "$AIO/Maildir/cur" "$AIO/Maildir/new" "$AIO/Maildir/tmp"
  # setsid: own session, so a signal to the caller's process group does not hit it.
  setsid "$VENV/bin/python" "$HERE/aiosmtpd_server.py" --dir "$TG" --pidfile "$RUN/aiosmtpd.pid" \
    </dev/null >>"$LOGS/aiosmtpd.log" 2>&1 &
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s $RUN/aiosmtpd.pid ]] && break
    sleep 0.1
  done
  say "aiosmtpd started (pid $(cat "$RUN/aiosmtpd.pid" 2>/dev/null || echo '?'))"
}

cmd_start() {
  if [[ ! -f $TG/.setup-done || ! -f $DOVE/dovecot.conf || ! -f $PFETC/main.cf ]]; then
    cmd_setup
  fi
  mkdir -p "$LOGS" "$RUN"
  start_dovecot
  start_postfix
  start_aiosmtpd
  wait_ports 20 "${PORTS[@]}" || die "servers did not come up (run: $0 stop; see logs in $LOGS)"
  say "all ${#PORTS[@]} ports listening"
}

stop_relays() {
  local f pid
  for f in "$RUN"/delay-*.pid; do
    [[ -e $f ]] || continue
    if pid="$(pid_from "$f" delay_relay.py)"; then
      kill_pid "$pid" "delay relay $(basename "$f" .pid)"
      say "stopped $(basename "$f" .pid) (pid $pid)"
    fi
    rm -f "$f" "${f%.pid}.args"
  done
}

cmd_stop() {
  local pid stopped=0
  stop_relays
  if pid="$(aiosmtpd_pid)"; then
    kill_pid "$pid" aiosmtpd
    say "stopped aiosmtpd (pid $pid)"
    stopped=1
  fi
  rm -f "$RUN/aiosmtpd.pid"
  if pid="$(postfix_pid)"; then
    postfix_cmd stop || kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" 15 || kill_pid "$pid" "postfix master"
    say "stopped postfix (pid $pid)"
    stopped=1
  fi
  if pid="$(dovecot_pid)"; then
    kill_pid "$pid" "dovecot master"
    say "stopped dovecot (pid $pid)"
    stopped=1
  fi
  # Children (smtpd, pop3-login, ...) may hold the listening sockets a moment longer.
  local p i busy=()
  for ((i = 0; i < 100; i++)); do
    busy=()
    for p in "${PORTS[@]}"; do port_open "$p" && busy+=("$p"); done
    ((${#busy[@]})) || break
    sleep 0.1
  done
  ((${#busy[@]} == 0)) || die "still listening after stop: ${busy[*]} (not started by this script?)"
  ((stopped)) || say "nothing was running"
}

cmd_status() {
  local p ok=0 all=1
  for p in "${PORTS[@]}"; do
    if port_open "$p"; then ok=up; else ok=DOWN; all=0; fi
    printf '%-5s %-4s %s\n' "$p" "$ok" "${PORT_INFO[$p]}"
  done
  local f
  for f in "$RUN"/delay-*.args; do
    [[ -e $f ]] || continue
    if pid_from "${f%.args}.pid" delay_relay.py >/dev/null; then
      printf '%-5s %-4s %s\n' "$(cut -d' ' -f1 "$f")" up "delay relay -> $(cut -d' ' -f2 "$f"), +$(cut -d' ' -f3 "$f") ms each way"
    fi
  done
  ((all))
}

# delay LISTEN_PORT TARGET_PORT DELAY_MS: userspace latency relay (the kernel has no netem).
cmd_delay() {
  (($# == 3)) || die "usage: $0 delay LISTEN_PORT TARGET_PORT DELAY_MS"
  local listen="$1" target="$2" ms="$3" pidf="$RUN/delay-$1.pid" pid
  [[ $listen =~ ^[0-9]+$ && $target =~ ^[0-9]+$ && $ms =~ ^[0-9]+$ ]] || die "ports and delay must be numbers"
  mkdir -p "$RUN" "$LOGS"
  if pid="$(pid_from "$pidf" delay_relay.py)"; then
    if [[ "$(cat "$RUN/delay-$listen.args" 2>/dev/null)" == "$listen $target $ms" ]]; then
      say "delay relay $listen -> $target (+$ms ms) already running (pid $pid)"
      return 0
    fi
    kill_pid "$pid" "delay relay $listen"
  fi
  port_open "$listen" && die "port $listen is already in use"
  rm -f "$pidf"
  setsid "$SYSPY" "$HERE/delay_relay.py" "$listen" "$target" "$ms" --pidfile "$pidf" \
    </dev/null >>"$LOGS/delay-$listen.log" 2>&1 &
  echo "$listen $target $ms" >"$RUN/delay-$listen.args"
  wait_ports 10 "$listen" 2>/dev/null || die "delay relay on $listen did not start; see $LOGS/delay-$listen.log"
  say "delay relay 127.0.0.1:$listen -> 127.0.0.1:$target, +$ms ms each direction (pid $(cat "$pidf"))"
}

cmd_verify() {
  "$SYSPY" "$HERE/verify.py" --dir "$TG"
}

cmd_env() {
  echo "export TESTGROUND_DIR=$TG"
  echo "export TESTGROUND_CA=$CERTS/ca.crt"
}

cmd_help() {
  cat <<EOF
usage: $0 COMMAND          (state in \$TESTGROUND_DIR, now $TG)
  install        apt-get install Dovecot, Postfix, openssl, python3-venv; venv with aiosmtpd
  install-peers  apt-get install mpop msmtp fetchmail swaks (+ perl TLS/SASL modules)
  setup          vmail user, CA + localhost certificate, configs, mailboxes (kept if current)
  start          start Dovecot, Postfix, aiosmtpd; wait until all ports listen
  stop           stop everything start/delay started
  status         list the ports; exit 0 only if all listen
  reset-mail [USER...]  regenerate the named mailboxes, or all of them + aiosmtpd's catch-all
                 (alice, erin, frank, kate, mia, noah 100; carol, heidi 2000;
                 bob, dave, grace, ivan, judy, liam, olivia 0)
  delay L T MS   relay 127.0.0.1:L -> 127.0.0.1:T adding MS ms per direction
  verify         quick end-to-end self-check (PASS/FAIL lines)
  all            install + setup + start + verify
  env            print export lines (TESTGROUND_DIR, TESTGROUND_CA)
EOF
}

main() {
  local cmd="${1:-help}"
  shift || true
  case "$cmd" in
    install) cmd_install ;;
    install-peers) cmd_install_peers ;;
    setup) cmd_setup ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset-mail) cmd_reset_mail "$@" ;;
    delay) cmd_delay "$@" ;;
    verify) cmd_verify ;;
    all)
      # one after the other, not with &&: errexit is off inside functions run in a && list
      cmd_install
      cmd_setup
      cmd_start
      cmd_verify
      ;;
    env) cmd_env ;;
    help | -h | --help) cmd_help ;;
    *) cmd_help >&2; exit 2 ;;
  esac
}

main "$@"
