"""Run the cocotb testbench of the MX converter (sim/cocotb_mx_convert.py) on emitted Verilog.

One case per rounding mode (a build parameter) and simulator; each emits its own Verilog into
``build/sim/<case>-<sim>/`` (sim/runner.py).
"""

import pytest

from hw.mx_convert import MXConverter
from sim.runner import ROOT, SIMULATORS, run_cocotb


@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("rounding", ["trunc", "rne"])
def test_mx_convert(sim, rounding):
    run_cocotb(MXConverter(rounding), name="mx_convert", case=f"mx_convert-{rounding}",
               test_module="cocotb_mx_convert", test_dir=ROOT / "sim", sim=sim,
               extra_env={"MXC_ROUNDING": rounding, "MXC_SEED": "7"})
