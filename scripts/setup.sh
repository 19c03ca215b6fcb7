#!/usr/bin/env bash
# Everything the demo store and the test suite need, on Debian/Ubuntu with Python 3.11:
#   .venv with requirements-dev.txt, Redis running on 127.0.0.1:6379, Chromium at /usr/bin/chromium.
# Safe to run again: it only does what is missing, and says what it did.
# System packages are installed with apt-get (as root, or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
did=()

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "setup: $* missing and there is no apt-get here; install it with your system's package manager." >&2
        exit 1
    fi
    if [ "$apt_updated" = 0 ]; then
        as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
        apt_updated=1
    fi
    echo "    installing $* with apt-get ..."
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" >/dev/null
    did+=("installed $* (apt-get)")
}

echo "==> Python: $("$PYTHON" --version)"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    did+=("created .venv")
fi
echo "==> Python requirements (requirements-dev.txt) into .venv"
.venv/bin/pip install --quiet -r requirements-dev.txt
did+=("pip install -r requirements-dev.txt")

echo "==> Redis on 127.0.0.1:6379"
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt_install redis-server
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
    did+=("started redis-server on 127.0.0.1:6379")
fi
redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG

echo "==> Chromium for the browser tests (/usr/bin/chromium)"
if [ ! -x /usr/bin/chromium ]; then
    apt_install chromium
fi
/usr/bin/chromium --version 2>/dev/null

echo "==> Setup done:"
for item in "${did[@]}"; do echo "    - $item"; done
echo "    Run the tests with: .venv/bin/python -m pytest"
