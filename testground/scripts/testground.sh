#!/usr/bin/env bash
# testground.sh: real mail servers on loopback for the integration tests.
#
#   Dovecot 2.3 POP3   11110 (plain + STLS), 11995 (POP3S)
#   Dovecot submission 14587 (STARTTLS required), 14465 (implicit TLS); relays via Postfix 10024
#   mailutils pop3d    13110 (plain + STLS), 13995 (POP3S); IPv4 only, login <user>@testground.example,
#                      its own copies of the MU_USERS mailboxes under $TESTGROUND_DIR/mailutils/mail
#   Courier POP3       15110 (plain + STLS), 15995 (POP3S); IPv4 only, login <user>@testground.example;
#                      unpacked from its Debian packages (apt would remove Dovecot's POP3) and run in a
#                      private mount namespace (courier_ns.sh); its own copy of alice's mailbox
#   Postfix 3.7 SMTP   10025 (plain, STARTTLS optional, AUTH in clear), 10026 (legacy EHLO),
#                      10587 (STARTTLS required), 10465 (implicit TLS)
#   aiosmtpd (venv)    12025 (plain, STARTTLS optional), 12587 (STARTTLS required), 12465 (implicit TLS)
#   Postfix + Cyrus    16587 (STARTTLS required), 16465 (implicit TLS): a second Postfix instance whose
#   SASL (NTLM)        AUTH is Cyrus SASL with a sasldb (NTLM SCRAM-SHA-256 PLAIN LOGIN), for the NTLM
#                      users only (pat / pat-pass); see the NTLM block below
#   Dovecot + Cyrus    17110 (plain + STLS), 17995 (POP3S): a second Dovecot instance whose AUTH NTLM
#   SASL (NTLM)        goes through its winbind helper interface to Cyrus SASL (scripts/ntlm_helper.py);
#                      NTLM PLAIN, for the NTLM users only (quinn, ruby / <user>-pass)
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
MU="$TG/mailutils"
# mailutils pop3d runs its sessions as root and rewrites the files of the mailboxes it serves, so
# it gets its own copies: alice read-only, noah for destructive tests.
MU_USERS=(alice noah)
COURIER="$TG/courier"
# Courier POP3 serves its own copy of alice (read-only); it announces UTF8 (RFC 6856).
COURIER_USERS=(alice)
# `apt-get download` + `dpkg -x`, never installed: courier-pop conflicts with dovecot-pop3d.
COURIER_PKGS=(courier-pop courier-base courier-authlib courier-authdaemon courier-authlib-userdb
  libcourier-unicode4 libgamin0 libpcre3)
USERS=(alice bob carol dave erin frank grace heidi ivan judy kate liam mia noah olivia)
AIOSMTPD_VERSION="${TESTGROUND_AIOSMTPD_VERSION:-1.4.6}"
# iproute2 + nftables: the Happy Eyeballs test black-holes IPv6 inside a network namespace.
SERVER_PKGS=(dovecot-core dovecot-pop3d dovecot-submissiond postfix mailutils-pop3d iproute2 nftables)
PEER_PKGS=(mpop msmtp fetchmail swaks libnet-ssleay-perl libdigest-hmac-perl libauthen-sasl-perl)
# Debian's python3 (python3-venv provides ensurepip for it); any python3 as fallback.
SYSPY=/usr/bin/python3
[[ -x $SYSPY ]] || SYSPY="$(command -v python3)"

# port -> "server: description" (order = status output order)
PORTS=(11110 11995 10025 10026 10587 10465 12025 12587 12465 13110 13995 14587 14465 15110 15995 16587 16465
  17110 17995)
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
  [13110]="mailutils POP3 plain + STLS (IPv4 only)"
  [13995]="mailutils POP3S implicit TLS (IPv4 only)"
  [14587]="dovecot  submission, STARTTLS required"
  [14465]="dovecot  submissions, implicit TLS"
  [15110]="courier  POP3 plain + STLS (IPv4 only)"
  [15995]="courier  POP3S implicit TLS (IPv4 only)"
  [16587]="postfix-ntlm submission (Cyrus SASL: NTLM), STARTTLS required"
  [16465]="postfix-ntlm submissions (Cyrus SASL: NTLM), implicit TLS"
  [17110]="dovecot-ntlm POP3 plain + STLS (NTLM via Cyrus SASL)"
  [17995]="dovecot-ntlm POP3S implicit TLS (NTLM via Cyrus SASL)"
)
declare -A PORT_LOG=(
  [11110]=dovecot.log [11995]=dovecot.log
  [10025]=postfix.log [10026]=postfix.log [10587]=postfix.log [10465]=postfix.log
  [12025]=aiosmtpd.log [12587]=aiosmtpd.log [12465]=aiosmtpd.log
  [13110]=mailutils.log [13995]=mailutils.log [14587]=dovecot.log [14465]=dovecot.log
  [15110]=courier.log [15995]=courier.log
  [16587]=postfix-ntlm.log [16465]=postfix-ntlm.log [17110]=dovecot-ntlm.log [17995]=dovecot-ntlm.log
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
mailutils_pid() { pid_from "$MU/pop3d.pid" pop3d; }
# The PIDs of Courier's daemons (authdaemond, two couriertcpd) that are still running.
courier_pids() {
  local pid
  [[ -s $COURIER/run/pids ]] || return 0
  while read -r pid; do
    if pid_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q courier; then
      echo "$pid"
    fi
  done <"$COURIER/run/pids"
}

# ---------------------------------------------------------------- NTLM (Cyrus SASL)
# "Secure Password Authentication" (AUTH NTLM) needs a server that checks NTLM responses
# itself: Debian's Dovecot does NTLM only through Samba's winbind. Cyrus SASL's NTLM plugin
# (libntlm.so in libsasl2-modules) does, against the plaintext passwords of a sasldb. Postfix
# speaks Cyrus SASL (`postconf -a`), so a second Postfix instance with its own config, queue,
# data dir and log serves it: it is set up, started and stopped without touching the main
# instance. Its users live only in its sasldb and its vmailbox (Maildirs under $MAILROOT).
# Facts found on the way: Debian's smtpd reads $config_directory/sasl/smtpd.conf and ignores
# cyrus_sasl_config_path; the plugin verifies NTLMv2 responses (log: "incorrect NTLMv2
# response" for a wrong password), with the sasldb entry's realm = smtpd_sasl_local_domain.
# POP3 with AUTH NTLM: cyrus-pop3d (the POP3 server on the same Cyrus SASL) conflicts with
# dovecot-pop3d and mailutils-pop3d (pop3-server). Instead a second Dovecot instance (own
# config, base_dir, state, ports 17110/17995, log dovecot-ntlm.log) uses its winbind NTLM
# mechanism, whose helper (auth_winbind_helper_path, Squid's NTLMSSP helper protocol) is
# scripts/ntlm_helper.py: it hands each exchange to the same Cyrus SASL NTLM plugin, with a
# sasldb of its own (readable by the dovecot user, which runs the helper). The user name the
# plugin answers must be in the instance's passwd-file userdb (same passwords, for PLAIN).
NTLM_PF="$TG/postfix-ntlm"
NTLM_DOVE="$TG/dovecot-ntlm"
# pat: SMTP (postfix-ntlm); quinn, ruby: POP3 (dovecot-ntlm), scratch for pop3-proto and mailctl.
NTLM_USERS=(pat quinn ruby)
NTLM_PKGS=(sasl2-bin libsasl2-modules libsasl2-modules-db)

ntlm_postfix_pid() { pid_from "$NTLM_PF/spool/pid/master.pid" master; }
ntlm_dovecot_pid() { pid_from "$NTLM_DOVE/run/master.pid" dovecot; }

# ntlm_postfix_cmd ARGS...: postfix_cmd for the NTLM instance.
ntlm_postfix_cmd() {
  if ! postfix -c "$NTLM_PF/etc" "$@" </dev/null >>"$LOGS/postfix-ntlm-cmd.out" 2>&1; then
    if [[ $1 == check ]]; then
      script -qec "postfix -c $NTLM_PF/etc check" /dev/null </dev/null 2>&1 | tail -n 20 >&2 || true
    else
      tail -n 10 "$LOGS/postfix-ntlm.log" >&2 2>/dev/null || true
    fi
    return 1
  fi
}

install_ntlm() {
  apt_install "${NTLM_PKGS[@]}"
}

setup_ntlm() {
  command -v saslpasswd2 >/dev/null && [[ -e /usr/lib/x86_64-linux-gnu/sasl2/libntlm.so ||
    -n "$(find /usr/lib -name libntlm.so -path '*sasl2*' -print -quit 2>/dev/null)" ]] ||
    die "Cyrus SASL (sasl2-bin, libsasl2-modules) not installed: run install first"
  local u
  mkdir -p "$NTLM_PF/etc/sasl" "$NTLM_PF/spool" "$NTLM_PF/data"
  chown postfix:postfix "$NTLM_PF/data"
  chmod 755 "$NTLM_PF" "$NTLM_PF/etc/sasl"
  render postfix-ntlm-main.cf "$NTLM_PF/etc/main.cf"
  render postfix-ntlm-master.cf "$NTLM_PF/etc/master.cf"
  render cyrus-sasl-smtpd.conf "$NTLM_PF/etc/sasl/smtpd.conf"
  for u in "${NTLM_USERS[@]}"; do echo "$u@testground.example  $u/Maildir/"; done >"$NTLM_PF/etc/vmailbox.tmp"
  put_file "$NTLM_PF/etc/vmailbox.tmp" "$NTLM_PF/etc/vmailbox"
  echo "sink.testground.example  discard:benchmark sink" >"$NTLM_PF/etc/transport.tmp"
  put_file "$NTLM_PF/etc/transport.tmp" "$NTLM_PF/etc/transport"
  # Passwords set on every run (saslpasswd2 creates or overwrites; realm = smtpd_sasl_local_domain).
  for u in "${NTLM_USERS[@]}"; do
    printf '%s' "$u-pass" | saslpasswd2 -p -c -f "$NTLM_PF/sasldb2" -u testground.example "$u" ||
      die "saslpasswd2 for $u failed"
    # Postfix's virtual(8) delivers as vmail and cannot create the home under the root-owned root.
    if [[ ! -d $MAILROOT/$u/Maildir/cur ]]; then
      mkdir -p "$MAILROOT/$u/Maildir/cur" "$MAILROOT/$u/Maildir/new" "$MAILROOT/$u/Maildir/tmp"
      chown -R vmail:vmail "$MAILROOT/$u"
    fi
  done
  # smtpd runs as postfix and opens the sasldb read-only.
  chown root:postfix "$NTLM_PF/sasldb2"
  chmod 640 "$NTLM_PF/sasldb2"
  ntlm_postfix_cmd check || die "postfix check failed (config $NTLM_PF/etc, log $LOGS/postfix-ntlm.log)"

  # The Dovecot instance: config, the helper (run by the dovecot user), its sasldb and users.
  mkdir -p "$NTLM_DOVE/run" "$NTLM_DOVE/state"
  chmod 755 "$NTLM_DOVE"
  render dovecot-ntlm.conf "$NTLM_DOVE/dovecot.conf"
  cp "$HERE/ntlm_helper.py" "$NTLM_DOVE/ntlm_helper.py.tmp"
  chmod 755 "$NTLM_DOVE/ntlm_helper.py.tmp"
  put_file "$NTLM_DOVE/ntlm_helper.py.tmp" "$NTLM_DOVE/ntlm_helper.py"
  for u in "${NTLM_USERS[@]}"; do
    printf '%s' "$u-pass" | saslpasswd2 -p -c -f "$NTLM_DOVE/sasldb2" -u testground.example "$u" ||
      die "saslpasswd2 for $u (dovecot-ntlm) failed"
  done
  chown root:dovecot "$NTLM_DOVE/sasldb2"
  chmod 640 "$NTLM_DOVE/sasldb2"
  {
    echo "# user:password:uid:gid:gecos:home:shell:extra (uid/gid/home come from userdb default_fields)"
    for u in "${NTLM_USERS[@]}"; do echo "$u:{PLAIN}$u-pass::::::"; done
  } >"$NTLM_DOVE/users.tmp"
  put_file "$NTLM_DOVE/users.tmp" "$NTLM_DOVE/users"
  chown root:dovecot "$NTLM_DOVE/users"
  chmod 640 "$NTLM_DOVE/users"
  doveconf -c "$NTLM_DOVE/dovecot.conf" -n >/dev/null ||
    die "dovecot-ntlm config invalid: doveconf -c $NTLM_DOVE/dovecot.conf -n"
}

# ntlm_reset_mail: empties the NTLM users' Maildirs (only ever delivered to, by tests).
ntlm_reset_mail() {
  local u
  for u in "${NTLM_USERS[@]}"; do
    [[ -d $MAILROOT/$u/Maildir ]] || continue
    find "$MAILROOT/$u/Maildir/new" "$MAILROOT/$u/Maildir/cur" "$MAILROOT/$u/Maildir/tmp" -type f -delete 2>/dev/null || true
  done
}

start_ntlm() {
  if ntlm_postfix_pid >/dev/null; then say "postfix-ntlm already running (pid $(ntlm_postfix_pid))"; return; fi
  ntlm_postfix_cmd start || die "postfix-ntlm did not start; see $LOGS/postfix-ntlm.log"
  say "postfix-ntlm started (pid $(ntlm_postfix_pid || echo '?'))"
}

start_ntlm_dovecot() {
  if ntlm_dovecot_pid >/dev/null; then say "dovecot-ntlm already running (pid $(ntlm_dovecot_pid))"; return; fi
  dovecot -c "$NTLM_DOVE/dovecot.conf" </dev/null >>"$LOGS/dovecot-ntlm.out" 2>&1 ||
    die "dovecot-ntlm did not start; see $LOGS/dovecot-ntlm.log and $LOGS/dovecot-ntlm.out"
  local i
  for ((i = 0; i < 30; i++)); do ntlm_dovecot_pid >/dev/null && break; sleep 0.1; done
  say "dovecot-ntlm started (pid $(ntlm_dovecot_pid || echo '?'))"
}

# stop_ntlm_dovecot: returns 1 when nothing was running.
stop_ntlm_dovecot() {
  local pid
  pid="$(ntlm_dovecot_pid)" || return 1
  kill_pid "$pid" "dovecot-ntlm master"
  say "stopped dovecot-ntlm (pid $pid)"
}

# stop_ntlm: returns 1 when nothing was running.
stop_ntlm() {
  local pid
  pid="$(ntlm_postfix_pid)" || return 1
  ntlm_postfix_cmd stop || kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$pid" 15 || kill_pid "$pid" "postfix-ntlm master"
  say "stopped postfix-ntlm (pid $pid)"
}

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
  install_courier
  install_ntlm
}

courier_unpacked() {
  [[ -x $COURIER/root/usr/lib/courier/courier/courierpop3d && -x $COURIER/root/usr/sbin/couriertcpd &&
    -x $COURIER/root/usr/lib/courier/courier-authlib/authdaemond && -x $COURIER/root/usr/bin/couriertls ]]
}

# Courier's POP3 server, unpacked into $COURIER/root (its dependencies that are not installed
# anyway included). Installing it would remove dovecot-pop3d (both provide pop3-server).
install_courier() {
  if courier_unpacked; then
    say "Courier POP3 already unpacked in $COURIER/root"
    return
  fi
  local alog="$LOGS/apt.log" f
  mkdir -p "$LOGS"
  rm -rf "$COURIER/debs" "$COURIER/root"
  mkdir -p "$COURIER/debs" "$COURIER/root"
  say "apt-get download ${COURIER_PKGS[*]} (unpacked, not installed; log: $alog)"
  if ! (cd "$COURIER/debs" && apt-get download "${COURIER_PKGS[@]}" </dev/null >>"$alog" 2>&1); then
    apt-get update >>"$alog" 2>&1 || true
    (cd "$COURIER/debs" && apt-get download "${COURIER_PKGS[@]}" </dev/null >>"$alog" 2>&1) ||
      { tail -n 20 "$alog" >&2; die "apt-get download of Courier failed"; }
  fi
  for f in "$COURIER/debs"/*.deb; do dpkg -x "$f" "$COURIER/root"; done
  courier_unpacked || die "Courier unpacked into $COURIER/root is incomplete"
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

# mailutils' copies, checked on their own so that adding them never resets Dovecot's mailboxes.
mu_current() {
  local stamp u
  stamp="$(sha256sum "$HERE/gen_maildir.py" | cut -c1-16)"
  [[ -f $MU/mail/.generated && "$(cat "$MU/mail/.generated")" == "$stamp" ]] || return 1
  for u in "${MU_USERS[@]}"; do [[ -d $MU/mail/$u/INBOX/cur ]] || return 1; done
}

courier_current() {
  local stamp u
  stamp="$(sha256sum "$HERE/gen_maildir.py" | cut -c1-16)"
  [[ -f $COURIER/mail/.generated && "$(cat "$COURIER/mail/.generated")" == "$stamp" ]] || return 1
  for u in "${COURIER_USERS[@]}"; do [[ -d $COURIER/mail/$u/Maildir/cur ]] || return 1; done
}

# courier_reset USER...: regenerate Courier's copies of those users' mailboxes (owned by vmail,
# as whom Courier's pop3d serves them); users without a Courier copy are skipped.
courier_reset() {
  local u want=()
  for u in "$@"; do
    [[ " ${COURIER_USERS[*]} " == *" $u "* ]] && want+=("$u")
  done
  ((${#want[@]})) || return 0
  mkdir -p "$COURIER/mail"
  chmod 755 "$COURIER" "$COURIER/mail"
  "$SYSPY" "$HERE/gen_maildir.py" --owner vmail "$COURIER/mail" "${want[@]}" >/dev/null
  if ((${#want[@]} == ${#COURIER_USERS[@]})); then
    sha256sum "$HERE/gen_maildir.py" | cut -c1-16 >"$COURIER/mail/.generated"
  fi
}

# mu_reset USER...: regenerate mailutils' copies of those users' mailboxes (the same messages
# as Dovecot's) as $MU/mail/<user>/INBOX; users without a mailutils copy are skipped.
mu_reset() {
  local u want=()
  for u in "$@"; do
    [[ " ${MU_USERS[*]} " == *" $u "* ]] && want+=("$u")
  done
  ((${#want[@]})) || return 0
  mkdir -p "$MU/mail"
  "$SYSPY" "$HERE/gen_maildir.py" "$MU/mail" "${want[@]}" >/dev/null
  for u in "${want[@]}"; do
    rm -f "$MU/mail/$u/Maildir/dovecot-uidlist"
    mv "$MU/mail/$u/Maildir" "$MU/mail/$u/INBOX"
  done
  if ((${#want[@]} == ${#MU_USERS[@]})); then
    sha256sum "$HERE/gen_maildir.py" | cut -c1-16 >"$MU/mail/.generated"
  fi
}

cmd_reset_mail() {
  id vmail >/dev/null 2>&1 || die "user vmail missing: run setup first"
  mkdir -p "$MAILROOT"
  chmod 755 "$MAILROOT"
  if (($#)); then
    # Only the named users; the stamp and aiosmtpd's Maildir are left alone.
    "$SYSPY" "$HERE/gen_maildir.py" --owner vmail "$MAILROOT" "$@"
    mu_reset "$@"
    courier_reset "$@"
    return
  fi
  "$SYSPY" "$HERE/gen_maildir.py" --owner vmail "$MAILROOT" "${USERS[@]}"
  mu_reset "${MU_USERS[@]}"
  courier_reset "${COURIER_USERS[@]}"
  sha256sum "$HERE/gen_maildir.py" | cut -c1-16 >"$MAILROOT/.generated"
  # aiosmtpd's catch-all Maildir is emptied too.
  rm -rf "$AIO/Maildir"
  mkdir -p "$AIO/Maildir/cur" "$AIO/Maildir/new" "$AIO/Maildir/tmp"
  ntlm_reset_mail
}

cmd_setup() {
  if ! command -v dovecot >/dev/null || ! command -v postfix >/dev/null || ! command -v pop3d >/dev/null ||
    [[ ! -x /usr/lib/dovecot/submission ]] || ! courier_unpacked; then
    die "servers not installed: run install first"
  fi
  CHANGED=()
  mkdir -p "$TG" "$LOGS" "$RUN" "$DOVE" "$PFETC" "$PFSPOOL" "$TG/postfix/data" "$AIO" "$MU/domains"
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
  render dovecot-submission.conf "$DOVE/submission.conf.ext"
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

  # mailutils pop3d: config + virtdomain passwd file (login <user>@testground.example). A fixed
  # salt per user keeps the file identical between runs (a new salt would read as a change).
  render mailutils-pop3d.conf "$MU/pop3d.conf"
  {
    for u in "${MU_USERS[@]}"; do
      echo "$u:$(openssl passwd -6 -salt "testground$u" "$u-pass"):$(id -u vmail):$(id -g vmail)::$MU/mail/$u:/usr/sbin/nologin"
    done
  } >"$MU/domains/testground.example.tmp"
  put_file "$MU/domains/testground.example.tmp" "$MU/domains/testground.example"
  chmod 600 "$MU/domains/testground.example"
  setup_courier
  setup_ntlm

  if mail_current; then
    say "mailboxes in $MAILROOT are current, kept (reset-mail regenerates them)"
  else
    cmd_reset_mail
  fi
  mu_current || mu_reset "${MU_USERS[@]}"
  courier_current || courier_reset "${COURIER_USERS[@]}"
  if ((${#CHANGED[@]})) && { dovecot_pid >/dev/null || postfix_pid >/dev/null || mailutils_pid >/dev/null ||
    [[ -n "$(courier_pids)" ]] || ntlm_postfix_pid >/dev/null || ntlm_dovecot_pid >/dev/null; }; then
    say "changed while running (restart to apply): ${CHANGED[*]}"
  fi
  touch "$TG/.setup-done"
  say "setup done in $TG"
}

# Courier's configuration: the packaged defaults with our TLS files, couriertls path and users
# (userdb, SHA-512 crypt with a fixed salt so the file is stable). Its binaries find it at
# /etc/courier inside its mount namespace; the three host mount points are created empty here.
setup_courier() {
  local etc="$COURIER/etc" u
  # Courier's pop3login drops to the user "courier" to run couriertls for STLS.
  if ! id courier >/dev/null 2>&1; then
    say "creating system user courier"
    useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin courier
  fi
  mkdir -p "$etc" "$COURIER/run" /etc/courier /usr/lib/courier /usr/lib/courier-authlib
  chmod 755 "$COURIER"
  local f
  for f in pop3d pop3d.cnf; do
    cp "$COURIER/root/etc/courier/$f" "$etc/$f.tmp"
    put_file "$etc/$f.tmp" "$etc/$f"
  done
  sed -e "s|^COURIERTLS=.*|COURIERTLS=$COURIER/root/usr/bin/couriertls|" -e 's|^TLS_CACHEFILE=.*|TLS_CACHEFILE=|' \
    "$COURIER/root/etc/courier/pop3d-ssl" >"$etc/pop3d-ssl.tmp"
  put_file "$etc/pop3d-ssl.tmp" "$etc/pop3d-ssl"
  printf '%s\n' 'authmodulelist="authuserdb"' 'daemons=4' 'authdaemonvar=/run/courier/authdaemon' \
    'DEBUG_LOGIN=0' 'DEFAULTOPTIONS=""' 'LOGGEROPTS=""' >"$etc/authdaemonrc.tmp"
  put_file "$etc/authdaemonrc.tmp" "$etc/authdaemonrc"
  cat "$CERTS/server.key" "$CERTS/server-chain.crt" >"$etc/pop3d.pem.tmp"
  put_file "$etc/pop3d.pem.tmp" "$etc/pop3d.pem"
  cp /usr/share/dovecot/dh.pem "$etc/dhparams.pem.tmp"
  put_file "$etc/dhparams.pem.tmp" "$etc/dhparams.pem"
  for u in "${COURIER_USERS[@]}"; do
    printf '%s@testground.example\tuid=%s|gid=%s|home=%s|mail=%s|systempw=%s\n' "$u" "$(id -u vmail)" \
      "$(id -g vmail)" "$COURIER/mail/$u" "$COURIER/mail/$u/Maildir" \
      "$(openssl passwd -6 -salt "testground$u" "$u-pass")"
  done >"$etc/userdb.tmp"
  put_file "$etc/userdb.tmp" "$etc/userdb"
  # couriertls runs as courier (STLS) and reads the key; the userdb is for authdaemond (root).
  chmod 755 "$etc"
  chmod 600 "$etc/userdb"
  chown root:courier "$etc/pop3d.pem"
  chmod 640 "$etc/pop3d.pem"
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

start_mailutils() {
  if mailutils_pid >/dev/null; then say "mailutils pop3d already running (pid $(mailutils_pid))"; return; fi
  rm -f "$MU/pop3d.pid"
  # foreground mode, so the PID file names the daemon itself; setsid as for aiosmtpd.
  setsid pop3d --config-file="$MU/pop3d.conf" </dev/null >>"$LOGS/mailutils.log" 2>&1 &
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s $MU/pop3d.pid ]] && break
    sleep 0.1
  done
  say "mailutils pop3d started (pid $(cat "$MU/pop3d.pid" 2>/dev/null || echo '?'))"
}

start_courier() {
  if [[ -n "$(courier_pids)" ]]; then say "courier already running (pids $(courier_pids | xargs))"; return; fi
  rm -f "$COURIER/run/pids"
  mkdir -p "$COURIER/run"
  setsid unshare -m --propagation private bash "$HERE/courier_ns.sh" "$TG" </dev/null >>"$LOGS/courier.log" 2>&1 &
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s $COURIER/run/pids && $(wc -l <"$COURIER/run/pids") -ge 3 ]] && break
    sleep 0.1
  done
  say "courier started (pids $(courier_pids | xargs))"
}

cmd_start() {
  if [[ ! -f $TG/.setup-done || ! -f $DOVE/dovecot.conf || ! -f $PFETC/main.cf || ! -f $MU/pop3d.conf ||
    ! -f $COURIER/etc/userdb || ! -f $NTLM_PF/etc/main.cf || ! -f $NTLM_DOVE/dovecot.conf ]]; then
    cmd_setup
  fi
  mkdir -p "$LOGS" "$RUN"
  start_dovecot
  start_postfix
  start_aiosmtpd
  start_mailutils
  start_courier
  start_ntlm
  start_ntlm_dovecot
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
  if pid="$(mailutils_pid)"; then
    kill_pid "$pid" "mailutils pop3d"
    say "stopped mailutils pop3d (pid $pid)"
    stopped=1
  fi
  rm -f "$MU/pop3d.pid"
  for pid in $(courier_pids); do
    kill_pid "$pid" "courier"
    say "stopped courier daemon (pid $pid)"
    stopped=1
  done
  rm -f "$COURIER/run/pids"
  if stop_ntlm; then stopped=1; fi
  if stop_ntlm_dovecot; then stopped=1; fi
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
  install        apt-get install Dovecot (POP3, submission), Postfix, mailutils pop3d, Cyrus SASL, openssl,
                 python3-venv; venv with aiosmtpd; Courier POP3 downloaded and unpacked
  install-peers  apt-get install mpop msmtp fetchmail swaks (+ perl TLS/SASL modules)
  setup          vmail user, CA + localhost certificate, configs, mailboxes (kept if current)
  start          start Dovecot, Postfix (+ their Cyrus SASL/NTLM instances), aiosmtpd, mailutils pop3d,
                 Courier; wait until all ports listen
  stop           stop everything start/delay started
  status         list the ports; exit 0 only if all listen
  reset-mail [USER...]  regenerate the named mailboxes, or all of them + aiosmtpd's catch-all
                 (alice, erin, frank, kate, mia, noah 100; carol, heidi 2000;
                 bob, dave, grace, ivan, judy, liam, olivia 0); alice and noah also
                 in mailutils' own copy, alice in Courier's; pat's, quinn's, ruby's (NTLM) emptied
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
