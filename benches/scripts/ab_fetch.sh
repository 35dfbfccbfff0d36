#!/usr/bin/env bash
# A/B of two mailctl builds fetching carol's 2,000 messages over POP3S into a fresh Maildir
# (fsync per message), alternating the order each round, with `sync` before every run.
# The two builds: OLD_MAILCTL and NEW_MAILCTL (defaults below); needs the test ground running.
set -u
export BENCH_PW=carol-pass
CA=/tmp/testground/certs/ca.crt
for i in 1 2 3 4 5 6 7; do
  order="old new"; (( i % 2 == 0 )) && order="new old"
  for which in $order; do
    if [[ $which == old ]]; then bin=${OLD_MAILCTL:-/work/wt/target-ab-old/release/mailctl}; else bin=${NEW_MAILCTL:-target/release/mailctl}; fi
    d=/tmp/ab-maildir; rm -rf $d /tmp/ab-home; mkdir -p /tmp/ab-home
    sync; sleep 0.5
    s=$(date +%s.%N)
    HOME=/tmp/ab-home XDG_STATE_HOME=/tmp/ab-home/state XDG_CONFIG_HOME=/tmp/ab-home/config $bin fetch --host 127.0.0.1 --port 11995 --tls implicit --user carol --password-env BENCH_PW --ca-file $CA --maildir $d --keep >/dev/null 2>/tmp/ab-err || { echo "fail $which"; cat /tmp/ab-err; }
    e=$(date +%s.%N)
    n=$(ls $d/new $d/cur 2>/dev/null | grep -vc ':$')
    printf '%s %s %.3f %s\n' $i $which $(echo "$e - $s" | bc) "$n"
  done
done
