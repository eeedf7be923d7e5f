#!/usr/bin/env bash
# Install wanlab into ./.venv (or into the active virtualenv), never pulling a CUDA torch by accident:
# when torch is absent, torch==2.13.0 is installed first (a CPU build from local disk on the project's
# machines); a torch that is already there (e.g. a CUDA build) is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${VIRTUAL_ENV:-}" ]; then
    PY="$VIRTUAL_ENV/bin/python"
else
    [ -x .venv/bin/python ] || python3 -m venv .venv
    PY=.venv/bin/python
fi
"$PY" -m pip install -q --upgrade pip >/dev/null
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "wanlab setup: installing torch==2.13.0 (CPU build)"
    "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[test]"
echo "wanlab setup: ready ($("$PY" -c 'import torch, wanlab; print("wanlab", wanlab.__version__, "torch", torch.__version__)'))"
