"""Run cocotb testbenches on emitted Verilog, from pytest or from scripts.

Every case emits its own Verilog into its own build directory named after the case, because
Amaranth emits no Verilog ``parameter``\\ s and a shared build directory would be overwritten
(STYLE: cocotb testbenches). Icarus Verilog is always used; Verilator only when cocotb accepts its
version (5.036 or newer), otherwise :func:`skip_reason` says why it is skipped.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

from amaranth.lib import wiring

from hw.emit import emit

__all__ = [
    "ROOT", "BUILD", "VERILATOR_MIN", "SIMULATORS", "verilator_version", "skip_reason",
    "run_cocotb", "CocotbFailure",
]

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "sim"
#: The oldest Verilator that cocotb 2.x accepts.
VERILATOR_MIN = (5, 36)
SIMULATORS = ("icarus", "verilator")


class CocotbFailure(AssertionError):
    """A cocotb run that failed, crashed or ran no test."""


def verilator_version() -> "tuple[int, int] | None":
    """The installed Verilator's (major, minor), or None when there is none."""
    exe = shutil.which("verilator")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"Verilator (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def skip_reason(sim: str) -> "str | None":
    """Why the cocotb tests cannot run under ``sim`` here, or None when they can."""
    if sim == "icarus":
        return None if shutil.which("iverilog") else "Icarus Verilog (iverilog) is not installed"
    if sim == "verilator":
        v = verilator_version()
        if v is None:
            return "Verilator is not installed"
        if v < VERILATOR_MIN:
            return (f"Verilator {v[0]}.{v[1]:03d} is older than {VERILATOR_MIN[0]}."
                    f"{VERILATOR_MIN[1]:03d}, the oldest cocotb 2.x accepts")
        return None
    return f"unknown simulator {sim!r}"


def run_cocotb(component: wiring.Component, *, name: str, case: str, test_module: str,
               test_dir: "str | Path", sim: str = "icarus", testcase: "Sequence[str] | None" = None,
               extra_env: "Mapping[str, str] | None" = None, waves: bool = False,
               seed: "int | None" = None) -> Path:
    """Emit ``component`` as Verilog module ``name``, build it for ``sim`` and run the cocotb
    tests of ``test_module`` on it.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design under test.
    name : str
        Verilog module name of the top level (the cocotb ``dut``).
    case : str
        Name of this case; the build goes to ``build/sim/<case>-<sim>/``.
    test_module : str
        The cocotb module (importable from ``test_dir``).
    test_dir : path
        Directory holding ``test_module``; put on the simulator's Python path.
    sim : str
        ``"icarus"`` or ``"verilator"``.
    extra_env : mapping, optional
        Environment for the cocotb tests (how parameters reach them).

    Returns
    -------
    pathlib.Path
        The results XML.

    Raises
    ------
    CocotbFailure
        When any cocotb test failed or none ran.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    build_dir = BUILD / f"{case}-{sim}"
    src = emit(component, name, build_dir)
    runner = get_runner(sim)
    build_args = ["-Wno-fatal"] if sim == "verilator" else []
    runner.build(sources=[src], hdl_toplevel=name, build_dir=build_dir, always=True,
                 timescale=("1ns", "1ps"), build_args=build_args, waves=waves)
    env = dict(extra_env or {})
    # The runner replaces PYTHONPATH: the cocotb module's directory and the project must be on it.
    env["PYTHONPATH"] = os.pathsep.join([str(Path(test_dir)), str(ROOT)])
    results = runner.test(hdl_toplevel=name, test_module=test_module, test_dir=test_dir,
                          build_dir=build_dir, extra_env=env, waves=waves, testcase=testcase,
                          timescale=("1ns", "1ps"), seed=seed,
                          results_xml=str(build_dir / "results.xml"))
    tests, failed = get_results(Path(results))
    if tests == 0:
        raise CocotbFailure(f"{case}: no cocotb test ran ({results})")
    if failed:
        raise CocotbFailure(f"{case}: {failed} of {tests} cocotb tests failed (log above, {results})")
    return Path(results)
