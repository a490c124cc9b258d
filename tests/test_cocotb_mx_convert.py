"""Run the cocotb testbench of the MX converter (sim/cocotb_mx_convert.py) on emitted Verilog.

One case per rounding mode (a build parameter) and simulator; each emits its own Verilog into
``build/sim/<case>-<sim>/`` (sim/runner.py).
"""

import pytest

from hw.mx_convert import MXConverter
from sim.runner import ROOT, SIMULATORS, run_cocotb


#: One Verilator build in the quick suite (a minute or more on two cores); rne under Verilator is
#: a slow regression.
PARAMS = [pytest.param(sim, r, id=f"{r}-{sim}",
                       marks=[pytest.mark.slow] if (sim, r) == ("verilator", "rne") else [])
          for r in ("trunc", "rne") for sim in SIMULATORS]


@pytest.mark.parametrize("sim, rounding", PARAMS)
def test_mx_convert(sim, rounding):
    run_cocotb(MXConverter(rounding), name="mx_convert", case=f"mx_convert-{rounding}",
               test_module="cocotb_mx_convert", test_dir=ROOT / "sim", sim=sim,
               extra_env={"MXC_ROUNDING": rounding, "MXC_SEED": "7"})
