#!/usr/bin/env bash
# Runs inside the VM (bench/vm/debian12.sh), as root: the README's service install on a fresh
# Debian 12, then the checks of bench/results/systemd_vm.md. /root/payload holds what the host
# copied in: appliance.git (a clone of the branch), wheels/ (built on the host), models/ (real
# weights from bench/realmodels.py plus the test embedding model).
#
#   inside.sh install     git clone + ./install.sh --service --skip-models --public-url ...
#   inside.sh models      put the real weights in /var/lib/appliance/models, point the config at
#                         them, restart; prints the time to READY
#   inside.sh verify      is-active, user, read-only code, db mode, exposure, /healthz
#   inside.sh backup-restore | failed-upgrade | tarball-upgrade    (see each function)
set -euo pipefail
PAYLOAD=${PAYLOAD:-/root/payload}
CODE=/opt/appliance ETC=/etc/appliance STATE=/var/lib/appliance
PUBLIC_URL=https://vm.example.test
TOKEN=${TOKEN:-vm-test-auth-token}
say() { printf '==> %s\n' "$*"; }

install_box() {
  rm -rf "$CODE"
  git clone --quiet "$PAYLOAD/appliance.git" "$CODE"
  cd "$CODE"
  # The host's wheels (llama-cpp-python is not compiled in the VM); pip still sees PyPI.
  export PIP_FIND_LINKS="$PAYLOAD/wheels"
  # No network inside the nspawn container (--private-network): the wheelhouse is the index.
  if ! curl -s -m 5 -o /dev/null https://pypi.org/simple/pip/; then export PIP_NO_INDEX=1; fi
  export TWILIO_AUTH_TOKEN="$TOKEN"
  local t0=$SECONDS
  ./install.sh --service --skip-models --public-url "$PUBLIC_URL"
  say "install.sh --service took $((SECONDS - t0)) s"
}

set_key() {   # set_key SECTION KEY VALUE in /etc/appliance/config.ini (the key must exist)
  "$CODE/.venv/bin/python" - "$ETC/config.ini" "$@" <<'EOF'
import re, sys
from pathlib import Path
path, section, key, value = Path(sys.argv[1]), *sys.argv[2:]
out, current, done = [], "", False
for line in path.read_text().splitlines(keepends=True):
    m = re.match(r"^\[(\w+)\]", line)
    current = m.group(1) if m else current
    if current == section and re.match(rf"^{key}\s*=", line) and not done:
        line, done = f"{key} = {value}\n", True
    out.append(line)
if not done:
    sys.exit(f"[{section}] {key} not found")
path.write_text("".join(out))
EOF
}

models() {
  install -d -m 0755 "$STATE/models"
  cp -r "$PAYLOAD"/models/* "$STATE/models/"
  chown -R root:root "$STATE/models" && chmod -R a+rX,go-w "$STATE/models"
  local m="$STATE/models"
  set_key stt model "$m/whisper-tiny.en"
  set_key stt languages "en"
  set_key tts voice "$m/en_US-joe-medium.onnx"
  set_key local_llm model_path "$m/gemma-3-270m-q4_k_m.gguf"
  set_key local_llm context_tokens 2048
  set_key kb embedding_model "$m/minilm-l6-v2-f16.gguf"
  set_key call turn_model "$m/smart-turn-v3.2-cpu.onnx"
  set_key twilio operator_number "+15550009999"
  local t0; t0=$(date +%s.%N)
  systemctl restart appliance.service      # returns at READY=1 (Type=notify)
  say "restart to READY: $(echo "$(date +%s.%N) - $t0" | bc 2>/dev/null || python3 -c "print(round($(date +%s.%N)-$t0,1))") s"
  systemctl is-active appliance.service
}

verify() {
  say "state"; systemctl show appliance.service -p ActiveState,SubState,Type,WatchdogUSec,NRestarts,MainPID,User
  local pid; pid=$(systemctl show appliance.service -p MainPID --value)
  say "process"; ps -o user,pid,rss,cmd -p "$pid"
  grep -E '^(Uid|Gid|CapEff|CapBnd|NoNewPrivs|Seccomp):' "/proc/$pid/status"
  say "code and venv read-only to the service"
  for f in "$CODE/appliance/server.py" "$CODE/.venv/bin/python" "$CODE/.venv/lib" "$ETC/config.ini"; do
    if runuser -u appliance -- test -w "$f"; then echo "WRITABLE $f"; else echo "read-only $f"; fi
  done
  # Inside the sandbox (ProtectSystem=strict): try writing from the service's own mount namespace.
  nsenter -t "$pid" -m -- sh -c "touch $CODE/x 2>&1 || true; touch $STATE/probe && rm $STATE/probe && echo 'state dir writable'"
  say "files"; stat -c '%a %U:%G %n' "$STATE" "$STATE/appliance.db" "$ETC" "$ETC/config.ini" "$ETC/secrets.env" "$STATE/backups"
  say "exposure"; systemd-analyze security appliance.service | tail -1
  say "healthz"; curl -s -o /dev/null -w '%{http_code}\n' http://127.0.0.1:1337/healthz
  curl -s http://127.0.0.1:1337/healthz; echo
}

app() { "$CODE/.venv/bin/appliance" --config "$ETC/config.ini" "$@"; }

backup_restore() {
  # A backup of the box with its calls, a fresh install (user, config, data wiped; the code and
  # .venv kept to save the pip install), the backup restored into it, the dashboard asked.
  say "calls before: $(sqlite3 "$STATE/appliance.db" 'select count(*) from calls')"
  local saved; saved=$(runuser -u appliance -- "$CODE/.venv/bin/appliance" --config "$ETC/config.ini" backup)
  cp "$saved" /root/box-backup.db && say "backup $saved"
  systemctl disable --now appliance.service
  rm -rf "$STATE" "$ETC" /etc/systemd/system/appliance.service /root/.config/appliance
  userdel appliance && systemctl daemon-reload
  (cd "$CODE" && TWILIO_AUTH_TOKEN="$TOKEN" PIP_NO_INDEX=1 PIP_FIND_LINKS="$PAYLOAD/wheels" \
     ./install.sh --service --skip-models --public-url "$PUBLIC_URL" | grep '^==>')
  models >/dev/null
  say "calls in the fresh install: $(sqlite3 "$STATE/appliance.db" 'select count(*) from calls')"
  systemctl stop appliance.service
  app restore /root/box-backup.db
  stat -c '%a %U:%G %n' "$STATE/appliance.db"
  systemctl start appliance.service
  echo "vm-dashboard-pw" | app admin set-password --stdin
  stat -c '%a %U:%G %n' "$STATE/appliance.db"
  "$CODE/.venv/bin/python" /root/dash.py vm-dashboard-pw
}

failed_upgrade() {
  # A new version whose migration fails, through the real service: it must come back on the
  # old version, healthy, answering a signed call.
  rm -rf /root/next && git clone --quiet "$CODE" /root/next
  printf 'CREATE TABLE half (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\n' \
    > /root/next/appliance/store/migrations/099_broken.sql
  git -C /root/next add -A
  git -C /root/next -c user.name=t -c user.email=t@x commit -qm "broken migration"
  local before; before=$(git -C "$CODE" rev-parse HEAD)
  local t0=$SECONDS
  app upgrade /root/next || say "upgrade exited $? after $((SECONDS - t0)) s"
  say "HEAD $(git -C "$CODE" rev-parse HEAD) (before: $before)"
  systemctl show appliance.service -p ActiveState,StatusText,NRestarts
  curl -s -o /dev/null -w 'healthz %{http_code}\n' http://127.0.0.1:1337/healthz
  sqlite3 "$STATE/appliance.db" "select name from sqlite_master where name='half'" | sed 's/^/table left: /'
  (cd /tmp && TWILIO_AUTH_TOKEN="$TOKEN" app simulate "$CODE/tests/data/audio/en_hours.wav" | tail -1)
}

tarball_upgrade() {
  # A release tarball of the same code plus a good migration, through the real service.
  rm -rf /root/next && git clone --quiet "$CODE" /root/next
  printf 'CREATE TABLE upgraded_ok (x INTEGER);\n' > /root/next/appliance/store/migrations/098_upgraded.sql
  git -C /root/next add -A
  git -C /root/next -c user.name=t -c user.email=t@x commit -qm "next release"
  git -C /root/next archive --format=tar.gz --prefix=appliance-next/ -o /root/appliance-next.tar.gz HEAD
  local sum; sum=$(sha256sum /root/appliance-next.tar.gz | cut -d' ' -f1)
  local t0=$SECONDS
  app upgrade /root/appliance-next.tar.gz --sha256 "$sum"
  say "tarball upgrade took $((SECONDS - t0)) s; HEAD $(git -C "$CODE" log --oneline -1)"
  sqlite3 "$STATE/appliance.db" "select name from sqlite_master where name='upgraded_ok'" | sed 's/^/table: /'
  curl -s -o /dev/null -w 'healthz %{http_code}\n' http://127.0.0.1:1337/healthz
}

case "${1:-}" in
  backup-restore) backup_restore ;;
  failed-upgrade) failed_upgrade ;;
  tarball-upgrade) tarball_upgrade ;;
  install) install_box ;;
  models) models ;;
  verify) verify ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
