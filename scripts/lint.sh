#!/usr/bin/env bash
# Lint every emitted Verilog file with Verilator. Waived warnings (each with its reason) are listed
# in scripts/lint-waivers.txt, one "-Wno-NAME  # why" per line.
set -euo pipefail
dir=${1:-build/rtl}
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
    if verilator --lint-only -Wall $waivers --top-module "$top" "$f"; then
        echo "lint: $f clean"
    else
        echo "lint: $f has warnings" >&2
        status=1
    fi
done
exit $status
