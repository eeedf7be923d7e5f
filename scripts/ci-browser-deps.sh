#!/usr/bin/env bash
# Install what tests/test_browser.py needs, for CI (run it before `make test`):
#  - Debian's Chromium (/usr/bin/chromium). Playwright never downloads a browser here (that fails on this
#    closed network); the tests launch this one through `executable_path`.
#  - the Python packages playwright and jupyterlab in the project's virtualenv (.venv, or the active one),
#    when the test extra has not installed them already.
# Safe to run again: what is there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    echo "ci-browser-deps: installing Debian's chromium"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
/usr/bin/chromium --version 2>/dev/null

if [ -n "${VIRTUAL_ENV:-}" ]; then
    PY="$VIRTUAL_ENV/bin/python"
else
    [ -x .venv/bin/python ] || python3 -m venv .venv
    PY=.venv/bin/python
fi
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if ! "$PY" -c "import playwright.sync_api, jupyterlab" >/dev/null 2>&1; then
    echo "ci-browser-deps: installing playwright and jupyterlab"
    "$PY" -m pip install -q "playwright>=1.45" "jupyterlab>=4.2"
fi
"$PY" -c "import importlib.metadata as m; print('playwright', m.version('playwright'), '| jupyterlab', m.version('jupyterlab'))"
