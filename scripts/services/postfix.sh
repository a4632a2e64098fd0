#!/usr/bin/env bash
# A private Postfix instance on 127.0.0.1 with mamori as its milter, delivering to files.
# Usage: scripts/services/postfix.sh install|start|stop|status
#
# State lives under ${MAMORI_SERVICES_DIR:-.services}/postfix:
#   etc/      main.cf + master.cf (config_directory)
#   queue/    queue_directory (owned by root); hold/ is where quarantined mail waits
#   data/     data_directory (owned by postfix)
#   vmail/inbox/new/   delivered mail (one Maildir for every recipient of example.test;
#                      Postfix's virtual(8) adds Delivered-To: with the recipient)
#   run/milter.sock    where Postfix looks for the milter (mamori listens there in the tests)
#   maillog
# `start` prints the export lines the tests read:
#   MAMORI_TEST_POSTFIX          127.0.0.1:PORT (SMTP)
#   MAMORI_TEST_POSTFIX_DIR      the state directory above
#   MAMORI_TEST_POSTFIX_MILTER   unix:/.../run/milter.sock (the milter address Postfix uses)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BASE="${MAMORI_SERVICES_DIR:-$ROOT/.services}"
mkdir -p "$BASE"
BASE="$(cd "$BASE" && pwd)"
DIR="$BASE/postfix"
PORT="${MAMORI_POSTFIX_PORT:-10125}"
ETC="$DIR/etc"

run_postfix() {
  # With no terminal and no syslog a failing postfix command prints nothing: show its fatal line.
  script -q -e -c "postfix -c $ETC $*" /dev/null
}

install() {
  if ! dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep -q "install ok installed"; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    "$ROOT/scripts/apt-install.sh" postfix
  fi
}

configure() {
  mkdir -p "$ETC" "$DIR/queue" "$DIR/data" "$DIR/vmail" "$DIR/run"
  chown root "$DIR/queue"
  chown postfix "$DIR/data"
  chown 65534:65534 "$DIR/vmail"
  chmod 0755 "$DIR" "$DIR/run"
  cat >"$ETC/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $DIR/queue
data_directory = $DIR/data
myhostname = mamori-test.localhost
mydomain = localhost
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_transport = error:no local delivery
relayhost =
default_transport = error:no outbound mail in tests
smtpd_banner = \$myhostname ESMTP
biff = no
maillog_file = $DIR/maillog
maillog_file_prefixes = $DIR
virtual_mailbox_domains = example.test
virtual_mailbox_maps = static:inbox/
virtual_mailbox_base = $DIR/vmail
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
message_size_limit = 52428800
virtual_mailbox_limit = 0
# mamori as the milter (plugins/postfix-milter/main.cf carries the same lines for operators)
smtpd_milters = unix:$DIR/run/milter.sock
non_smtpd_milters = \$smtpd_milters
milter_protocol = 6
milter_default_action = tempfail
milter_connect_macros = j {daemon_name} {daemon_addr} v _
milter_mail_macros = i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}
milter_connect_timeout = 10s
milter_command_timeout = 30s
milter_content_timeout = 60s
CF
  cp /etc/postfix/master.cf.proto "$ETC/master.cf"
  sed -i -E "s/^smtp( +)inet( +)n( +)-( +)[yn-]/127.0.0.1:$PORT inet  n       -       n/" "$ETC/master.cf"
  postconf -c "$ETC" -F '*/*/chroot = n'
  run_postfix check
}

start() {
  install
  configure
  if run_postfix status >/dev/null 2>&1; then
    run_postfix reload >/dev/null
  else
    run_postfix start >/dev/null
  fi
  for _ in $(seq 1 50); do
    (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
    sleep 0.1
  done
  echo "export MAMORI_TEST_POSTFIX=127.0.0.1:$PORT"
  echo "export MAMORI_TEST_POSTFIX_DIR=$DIR"
  echo "export MAMORI_TEST_POSTFIX_MILTER=unix:$DIR/run/milter.sock"
}

stop() {
  if [ -f "$ETC/main.cf" ] && run_postfix status >/dev/null 2>&1; then
    run_postfix stop >/dev/null || true
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) run_postfix status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
