"""The array's RTL through the file-driven harness (sim/harness): bit-exact against
golden.gemm.mx_matmul, cycles equal to hw.cycles.gemm_cycles, Verilator and Icarus agree
(spec §3, §6).

Quick cases run a 4 x 4 array under Icarus (one compile, seconds per GEMM); one moderate GEMM and
the agreement check run the default 16 x 16 array under Verilator and Icarus (marked slow: the
16 x 16 Verilator build, cached under build/harness/, compiles 268 C++ files and its time on a
2-core machine is not yet measured).
"""

import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from golden import mx
from hw.config import ArrayConfig
from hw.cycles import gemm_cycles
from sim.array_stimulus import MIXES, expected_bits, mix_codes, random_gemm
from sim.harness import SimulatorMissing, run_gemm, simulator_missing

SMALL = replace(ArrayConfig(), rows=4, cols=4)
WIDE = replace(ArrayConfig(), rows=8, cols=16)


def _need(sim: str) -> None:
    reason = simulator_missing(sim)
    if reason:
        pytest.skip(reason)


def _check(a, w, config, sim, **kw):
    res = run_gemm(a, w, config, sim=sim, **kw)
    np.testing.assert_array_equal(res.c.view(np.uint32), expected_bits(a, w))
    return res


def _formats(codes):
    return ["mx9" if c else "mx6" for c in codes]


# (M, Kg, N): tile multiples, edges on either side, one group, tiles shorter than their drain,
# and K up to 1152 (72 groups).
SHAPES = [(4, 4, 4), (7, 5, 9), (9, 1, 10), (5, 2, 13), (3, 72, 2), (12, 3, 8)]


@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_icarus_small_array(shape, mix):
    """Every shape and precision mix: bit-exact and exactly gemm_cycles."""
    _need("icarus")
    m, kg, n = shape
    rng = np.random.default_rng(zlib.crc32(repr((shape, mix)).encode()))
    a, w = random_gemm(rng, m, kg, n, mix)
    res = _check(a, w, SMALL, "icarus")
    ca, cw = mix_codes(mix, kg)
    assert res.cycles == gemm_cycles(m, 16 * kg, n, _formats(ca), _formats(cw), SMALL)


@pytest.mark.parametrize("kind", ["wide", "huge", "tiny", "nan", "cancel"])
def test_icarus_special_values(kind):
    """Overflow, underflow, NaN groups and exact cancellation through the whole array."""
    _need("icarus")
    rng = np.random.default_rng(len(kind))
    a, w = random_gemm(rng, 6, 6, 7, "mixdit", kind)
    _check(a, w, SMALL, "icarus")


def test_icarus_gaps_and_stalls():
    """Random input gaps and output stalls delay the GEMM, never change a bit."""
    _need("icarus")
    rng = np.random.default_rng(7)
    a, w = random_gemm(rng, 9, 2, 11, "alt_x_mx9")
    res = _check(a, w, SMALL, "icarus", gap=30, stall=60, seed=3)
    assert res.cycles > gemm_cycles(9, 32, 11, _formats(a.fmt), _formats(w.fmt), SMALL)


def test_icarus_8x16():
    """A non-square array."""
    _need("icarus")
    rng = np.random.default_rng(8)
    a, w = random_gemm(rng, 11, 3, 20, "mixdit")
    res = _check(a, w, WIDE, "icarus")
    assert res.cycles == gemm_cycles(11, 48, 20, _formats(a.fmt), _formats(w.fmt), WIDE)


@pytest.mark.slow
def test_verilator_16x16_and_icarus_agree():
    """The default array under Verilator: a moderate MixDiT GEMM (K = 1152, edge tiles on both
    sides) bit-exact and on the formula; a small one bit-identical under both simulators."""
    _need("verilator")
    _need("icarus")
    rng = np.random.default_rng(16)
    x = rng.standard_normal((20, 1152)).astype(np.float32)
    y = rng.standard_normal((35, 1152)).astype(np.float32)
    fmts = ["mx6"] * 68 + ["mx9"] * 4
    a, w = mx.quantize(x, fmts), mx.quantize(y, "mx6")
    res = _check(a, w, ArrayConfig(), "verilator")
    assert res.cycles == gemm_cycles(20, 1152, 35, fmts, "mx6")
    a, w = random_gemm(rng, 18, 2, 17, "mixdit", "wide")
    ver = _check(a, w, ArrayConfig(), "verilator")
    ica = _check(a, w, ArrayConfig(), "icarus")
    np.testing.assert_array_equal(ver.c.view(np.uint32), ica.c.view(np.uint32))
    assert ver.cycles == ica.cycles


def test_bad_requests():
    rng = np.random.default_rng(0)
    a, w = random_gemm(rng, 2, 2, 2, "mx6xmx6")
    with pytest.raises(SimulatorMissing, match="unknown simulator"):
        run_gemm(a, w, SMALL, sim="modelsim")
    a3, _ = random_gemm(rng, 2, 3, 2, "mx6xmx6")
    with pytest.raises(ValueError, match="K groups differ"):
        run_gemm(a3, w, SMALL, sim="icarus")
    with pytest.raises(ValueError, match="gap"):
        run_gemm(a, w, SMALL, sim="icarus", gap=95)


# --- build cache: keyed by content and simulator version, complete or absent -------------------

_TINY_TB = """module tiny_tb;
    wire [7:0] y;
    tiny dut (.a(8'd41), .y(y));
    initial begin #1 $display("HARNESS cycles=%0d", y); $finish; end
endmodule
"""


def _tiny_design(root: Path):
    """A two-module design (testbench + emitted DUT) that Icarus builds in a fraction of a
    second: the cache logic is the same for the array."""
    from sim.harness import builder

    tb = root / "tiny_tb.sv"
    tb.write_text(_TINY_TB)

    def emit_dut(d: Path) -> list:
        (d / "tiny.v").write_text("module tiny(input [7:0] a, output [7:0] y); "
                                  "assign y = a + 8'd1; endmodule\n")
        return [d / "tiny.v"]

    return builder.Design(name="tiny", testbench=tb, top="tiny_tb", emit=emit_dut, sources=[tb])


def _small_build(root, **kw):
    from sim.harness import builder

    return builder.build(_tiny_design(root), "icarus", root=root / "cache", **kw)


def test_build_cache_key_includes_the_simulator_version(tmp_path, monkeypatch):
    """A build made by another simulator version is never reused (a cached 5.006 build would
    otherwise be run silently by 5.048)."""
    _need("icarus")
    from sim import verilator

    from sim.harness import builder

    first = _small_build(tmp_path)
    again = _small_build(tmp_path)
    assert first.build_s > 0 and again.build_s == 0 and again.exe == first.exe
    out, _ = builder.run(again, [], cwd=tmp_path)
    assert "HARNESS cycles=42" in out
    real = verilator.simulator_version
    monkeypatch.setattr(verilator, "simulator_version",
                        lambda sim: "Icarus Verilog version 99.0" if sim == "icarus" else real(sim))
    other = _small_build(tmp_path)
    assert other.build_s > 0 and other.directory != first.directory
    assert other.version == "Icarus Verilog version 99.0"
    assert (other.directory / "version").read_text().strip() == other.version


def test_interrupted_build_leaves_no_entry(tmp_path, monkeypatch):
    """A build killed half way (here: interrupted after the tool wrote part of its output)
    leaves neither a cache entry nor its temporary directory; the next build starts afresh."""
    _need("icarus")
    import subprocess as sp

    from sim.harness import builder

    real_run = sp.run

    def interrupted(cmd, **kw):
        out = Path(cmd[cmd.index("-o") + 1])
        out.write_text("#! partial vvp image\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(builder.subprocess, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _small_build(tmp_path)
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")] == []
    monkeypatch.setattr(builder.subprocess, "run", real_run)
    # A temporary directory left by a process that died without cleaning up is swept, never used.
    stale = tmp_path / "cache" / "tiny-icarus-0000000000000000-999999999-x.tmp"
    stale.mkdir()
    b = _small_build(tmp_path)
    assert b.build_s > 0 and b.exe.is_file() and not b.exe.read_text(errors="replace").startswith(
        "#! partial")
    assert not stale.exists() and not b.directory.name.endswith(".tmp")


def test_failed_build_says_why(tmp_path):
    _need("icarus")
    from sim.harness import builder

    bad = tmp_path / "bad.sv"
    bad.write_text("module bad_tb; initial begin $display(\"x\") end endmodule\n")
    design = builder.Design(name="bad", testbench=bad, top="bad_tb", emit=lambda d: [],
                            sources=[bad])
    with pytest.raises(builder.HarnessError) as err:
        builder.build(design, "icarus", root=tmp_path)
    first = str(err.value).splitlines()[0]
    assert first.startswith("icarus build of bad failed (exit ") and "syntax error" in first, first
    assert list(tmp_path.glob("bad-*")) == []


def test_failed_run_says_why(tmp_path):
    """The first line of a failed run's error carries the simulator's reason, even when the
    simulator exits 0 (Icarus on an unwritable waves file)."""
    _need("icarus")
    from sim import harness
    from sim.harness import builder

    rng = np.random.default_rng(2)
    a, w = random_gemm(rng, 4, 2, 4, "mixdit")
    with pytest.raises(ValueError, match="directory .* does not exist"):
        run_gemm(a, w, SMALL, sim="icarus", waves=tmp_path / "no" / "w.vcd")
    with pytest.raises(ValueError, match="must end in .fst or .vcd"):
        run_gemm(a, w, SMALL, sim="icarus", waves=tmp_path / "w.lxt")
    # Past the checks, straight to the simulator: its own words come back.
    b = harness.build(SMALL, "icarus", depths=harness._depths("icarus", 4, 4, 2))
    p = harness.write_images(a, w, tmp_path)
    plus = ["+M=4", "+N=4", "+KG=2", f"+A={p['A']}", f"+W={p['W']}", f"+F={p['F']}",
            f"+C={tmp_path / 'C.hex'}", f"+VCD={tmp_path / 'no' / 'w.vcd'}"]
    out, _ = builder.run(b, plus, cwd=tmp_path)
    assert "Unable to open" in builder.failure_reason(out)
    with pytest.raises(builder.HarnessError, match=r"^icarus run failed \(exit 0\): HARNESS error: "
                                                   r"\+M, \+N and \+KG are required"):
        out, _ = builder.run(b, [], cwd=tmp_path)
        m = harness.re.search(r"HARNESS cycles=(\d+)", out)
        if m is None:
            raise builder.HarnessError(f"icarus run failed (exit 0): {builder.failure_reason(out)}")


def test_icarus_waves_vcd_and_fst(tmp_path):
    """Waves follow the file's suffix: VCD and FST under Icarus, same bits and cycles."""
    _need("icarus")
    rng = np.random.default_rng(3)
    a, w = random_gemm(rng, 5, 2, 6, "mixdit")
    for name in ("w.vcd", "w.fst"):
        res = _check(a, w, SMALL, "icarus", waves=tmp_path / name)
        assert res.cycles == gemm_cycles(5, 32, 6, _formats(a.fmt), _formats(w.fmt), SMALL)
        head = (tmp_path / name).read_bytes()[:64]
        assert (b"$date" in head or b"$version" in head) if name.endswith(".vcd") else \
            not head.startswith(b"$")
    assert (tmp_path / "w.vcd").stat().st_size > 1000


def test_gemm_command_waves(tmp_path, capsys):
    """``mixdit gemm --waves F.fst`` writes FST (Icarus here); a bad suffix is a one-line error."""
    _need("icarus")
    from sim.cli import main

    rng = np.random.default_rng(4)
    np.save(tmp_path / "A.npy", rng.standard_normal((5, 32)).astype(np.float32))
    np.save(tmp_path / "W.npy", rng.standard_normal((6, 32)).astype(np.float32))
    args = ["gemm", "--a", str(tmp_path / "A.npy"), "--w", str(tmp_path / "W.npy"), "--out",
            str(tmp_path / "C.npy"), "--rows", "4", "--cols", "4", "--sim", "icarus"]
    assert main([*args, "--waves", str(tmp_path / "g.fst")]) == 0
    assert (tmp_path / "g.fst").stat().st_size > 100
    capsys.readouterr()
    assert main([*args, "--waves", str(tmp_path / "g.lxt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "must end in .fst or .vcd" in err and len(err.splitlines()) == 1, err


@pytest.mark.slow
def test_verilator_hierarchical_4x4_waves(tmp_path):
    """A PE row as a hierarchical block (one model for all rows) gives the bits and cycles of the
    formula, and its traced build writes FST and VCD with the same results."""
    _need("verilator")
    rng = np.random.default_rng(44)
    a, w = random_gemm(rng, 9, 5, 7, "mixdit")
    cycles = gemm_cycles(9, 80, 7, _formats(a.fmt), _formats(w.fmt), SMALL)
    res = _check(a, w, SMALL, "verilator")
    assert res.cycles == cycles and "5.048" in res.version
    from sim import harness
    b = harness.build(SMALL, "verilator")
    assert (b.directory / "obj_dir" / "Vgemm_4x4_pe_row").is_dir(), "no hierarchical row model"
    for name in ("w.fst", "w.vcd"):
        res = _check(a, w, SMALL, "verilator", waves=tmp_path / name)
        assert res.cycles == cycles
    assert (tmp_path / "w.fst").read_bytes()[:1] != b"$"       # FST is binary
    assert b"$timescale" in (tmp_path / "w.vcd").read_bytes()[:4096]
