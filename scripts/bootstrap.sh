#!/usr/bin/env bash
# Create or refresh .venv: torch 2.13.0 (CPU) first, then mttune with its test extras.
# Idempotent: does nothing when .venv matches pyproject.toml already. Source it or run it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"
stamp="$venv/.mttune-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"

if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "mttune needs Python >= 3.11; $python is $("$python" --version 2>&1). Set PYTHON=..." >&2
    exit 1
  }
  echo "creating $venv" >&2
  "$python" -m venv "$venv"
fi
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
# torch first, pinned: a range would let pip pick a multi-GB CUDA build.
"$venv/bin/python" -c 'import torch' 2>/dev/null || "${pip[@]}" install "torch==2.13.0"
"${pip[@]}" install -e "$root[test]"
echo "$want" > "$stamp"
