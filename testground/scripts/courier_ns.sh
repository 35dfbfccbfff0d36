#!/usr/bin/env bash
# courier_ns.sh TG: runs Courier's POP3 server (unpacked from its Debian packages, never
# installed: apt would remove Dovecot's POP3, both provide pop3-server) inside a private mount
# namespace. Started by `testground.sh start` as `unshare -m --propagation private courier_ns.sh TG`.
#
# Courier's binaries look for their files at compiled-in paths (/etc/courier, /usr/lib/courier,
# /usr/lib/courier-authlib, /run/courier); in this namespace the test ground's copies are
# bind-mounted there, so nothing outside it sees them. The host only keeps the three empty
# mount-point directories `testground.sh setup` creates.
#
#   15110  POP3, plain + STLS        15995  POP3S (implicit TLS)        127.0.0.1 only
#
# Writes one PID per daemon (authdaemond, two couriertcpd) to TG/courier/run/pids; `testground.sh
# stop` ends exactly those.
set -eo pipefail
TG="$1"
ROOT="$TG/courier/root"
ETC="$TG/courier/etc"
RUNDIR="$TG/courier/run"

mount --bind "$ETC" /etc/courier
mount --bind "$ROOT/usr/lib/courier" /usr/lib/courier
mount --bind "$ROOT/usr/lib/courier-authlib" /usr/lib/courier-authlib
# A private /run: the authdaemon socket lives in /run/courier/authdaemon.
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/courier/authdaemon
export LD_LIBRARY_PATH="$ROOT/usr/lib:$ROOT/usr/lib/x86_64-linux-gnu"

# userdb.dat from the userdb text file (makeuserdb only knows /etc/courier).
PATH="$ROOT/usr/sbin:$ROOT/usr/bin:$PATH" makeuserdb

: >"$RUNDIR/pids"
/usr/lib/courier/courier-authlib/authdaemond &
echo $! >>"$RUNDIR/pids"
set -a
# shellcheck disable=SC1091
. /etc/courier/pop3d
# shellcheck disable=SC1091
. /etc/courier/pop3d-ssl
set +a
TCPD=("$ROOT/usr/sbin/couriertcpd" -address=127.0.0.1 -maxprocs=200 -maxperip=200 -nodnslookup -noidentlookup)
LOGIN=(/usr/lib/courier/courier/courierpop3login /usr/lib/courier/courier/courierpop3d Maildir)
"${TCPD[@]}" 15110 "${LOGIN[@]}" &
echo $! >>"$RUNDIR/pids"
POP3_TLS=1 POP3_STARTTLS=NO POP3_TLS_REQUIRED=0 \
  "${TCPD[@]}" 15995 "$COURIERTLS" -server -tcpd "${LOGIN[@]}" &
echo $! >>"$RUNDIR/pids"
wait
