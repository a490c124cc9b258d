"""Run the cocotb testbench of the PE (sim/cocotb_pe.py) on its emitted Verilog (spec §6).

Under Icarus and Verilator (both installed by the project; a missing one fails, never skips).
``make test`` runs every cocotb test with a short random regression and real DiT dot products;
the 10,000-dot-product regression is marked ``slow`` (``make test-all``).
"""

import pytest

from hw.pe import PE
from sim.runner import BUILD, ROOT, SIMULATORS, run_cocotb

#: Dot products of the long seeded regression (spec §6).
SLOW_DOTS = 10_000


def _run(sim: str, case: str, env: dict, testcase=None) -> None:
    stats = BUILD / f"{case}-{sim}" / "stats.json"
    stats.unlink(missing_ok=True)
    run_cocotb(PE(), name="pe", case=case, test_module="cocotb_pe", test_dir=ROOT / "sim",
               sim=sim, testcase=testcase, extra_env={**env, "PE_STATS": str(stats)})


@pytest.mark.parametrize("sim", SIMULATORS)
def test_pe(sim):
    """Every cocotb test: modes, mixes, specials, K = 4608, clear, cycles per group, and a short
    random regression."""
    _run(sim, "pe", {"PE_SEED": "1", "PE_DOTS": "150", "PE_LONG": "1"})


@pytest.mark.slow
@pytest.mark.parametrize("sim", SIMULATORS)
def test_pe_regression(sim):
    """The seeded random regression of 10,000 dot products."""
    _run(sim, "pe-regression", {"PE_SEED": "2024", "PE_DOTS": str(SLOW_DOTS), "PE_LONG": "2"},
         testcase=["regression"])
