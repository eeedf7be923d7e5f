#!/usr/bin/env bash
# Install wanlab into ./.venv (or into the active virtualenv), never pulling a CUDA torch by accident:
# when torch is absent, torch==2.13.0 is installed first (a CPU build from local disk on the project's
# machines); a torch that is already there (e.g. a CUDA build) is kept. When nothing changed since the
# last install (same pyproject.toml and this script, wanlab importable), nothing is reinstalled.
# `scripts/setup.sh lab` installs the `lab` extra (JupyterLab, a kernel) instead of `test` (the test tools).
set -euo pipefail
EXTRA="${1:-test}"
case "$EXTRA" in test|lab) ;; *) echo "scripts/setup.sh: the extra must be test or lab; got '$EXTRA'" >&2; exit 2;; esac
cd "$(dirname "$0")/.."
if [ -n "${VIRTUAL_ENV:-}" ]; then
    PY="$VIRTUAL_ENV/bin/python"
else
    [ -x .venv/bin/python ] || python3 -m venv .venv
    PY=.venv/bin/python
fi
STAMP="$("$PY" -c 'import sys; print(sys.prefix)')/.wanlab-setup"
WANT="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1) $(pwd) $EXTRA"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$PY" -c "import wanlab, torch" >/dev/null 2>&1; then
    echo "wanlab setup: up to date ($("$PY" -c 'import wanlab; print("wanlab", wanlab.__version__)'))"
    exit 0
fi
"$PY" -m pip install -q --upgrade pip >/dev/null
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "wanlab setup: installing torch==2.13.0 (CPU build)"
    "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[$EXTRA]"
echo "$WANT" > "$STAMP"
echo "wanlab setup: ready ($("$PY" -c 'import torch, wanlab; print("wanlab", wanlab.__version__, "torch", torch.__version__)'))"
