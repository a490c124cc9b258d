"""Run the cocotb testbench of the reordering controller (sim/cocotb_reorder.py) on emitted Verilog.

Each configuration emits its own Verilog into ``build/sim/<case>-<sim>/`` (sim/runner.py): a small
one (4 banks, 64 channels) for speed and one with the default 16 banks; the full-size default is a
slow regression, and so is every configuration but the small one under Verilator.
"""

import pytest

from hw.reorder import Reorder, ReorderConfig
from sim.runner import ROOT, SIMULATORS, run_cocotb

CASES = [
    pytest.param(ReorderConfig(banks=4, max_channels=64, max_tokens=4), id="c4-k64"),
    pytest.param(ReorderConfig(banks=16, max_channels=256, max_tokens=2, rounding="rne"),
                 id="c16-k256-rne"),
    pytest.param(ReorderConfig(banks=16, max_channels=1152, max_tokens=3), id="c16-k1152",
                 marks=pytest.mark.slow),
]


#: Under Verilator only the small configuration runs in the quick suite (each Verilator build
#: takes a minute or more on two cores); the others are slow regressions there.
PARAMS = [pytest.param(sim, case.values[0], case.id, id=f"{case.id}-{sim}",
                       marks=[*case.marks, *([pytest.mark.slow] if sim == "verilator"
                                             and case.id != "c4-k64" else [])])
          for case in CASES for sim in SIMULATORS]


@pytest.mark.parametrize("sim, config, case", PARAMS)
def test_reorder(sim, config, case):
    run_cocotb(Reorder(config), name="reorder", case=f"reorder-{case}", test_module="cocotb_reorder",
               test_dir=ROOT / "sim", sim=sim,
               extra_env={"RO_BANKS": str(config.banks), "RO_CHANNELS": str(config.max_channels),
                          "RO_TOKENS": str(config.max_tokens), "RO_ENTRIES": str(config.entries),
                          "RO_ROUNDING": config.rounding, "RO_SEED": "3"})
