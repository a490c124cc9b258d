"""Run the cocotb testbench of the GEMM array (sim/cocotb_array.py) on its emitted Verilog
(spec §3, §6) under Icarus and Verilator, with random GEMMs and real DiT tiles.

The quick cases use small arrays (4 x 4 and 8 x 16 would be slow under Icarus at K = 1152; the
default 16 x 16 runs in the slow regression, under both simulators, and, layer-sized, in
tests/test_harness.py).
"""

from dataclasses import replace

import pytest

from hw.config import ArrayConfig
from hw.sequencer import GemmArray
from sim.runner import ROOT, SIMULATORS, run_cocotb


def _run(sim: str, rows: int, cols: int, gemms: int, testcase=None) -> None:
    cfg = replace(ArrayConfig(), rows=rows, cols=cols)
    run_cocotb(GemmArray(cfg, pe_module=f"array{rows}x{cols}_pe"), name=f"array{rows}x{cols}",
               case=f"array-{rows}x{cols}", test_module="cocotb_array", test_dir=ROOT / "sim",
               sim=sim, testcase=testcase,
               extra_env={"ARRAY_ROWS": str(rows), "ARRAY_COLS": str(cols), "ARRAY_SEED": "5",
                          "ARRAY_GEMMS": str(gemms), "ARRAY_M_BITS": str(cfg.m_bits),
                          "ARRAY_N_BITS": str(cfg.n_bits)})


@pytest.mark.parametrize("sim", SIMULATORS)
def test_array_4x4(sim):
    """Every cocotb test on a 4 x 4 array."""
    _run(sim, 4, 4, 6)


@pytest.mark.slow
@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("size", [(8, 16), (16, 16)], ids=["8x16", "16x16"])
def test_array_regression(sim, size):
    """Larger arrays and more random GEMMs under stalls and gaps."""
    _run(sim, *size, 12)
