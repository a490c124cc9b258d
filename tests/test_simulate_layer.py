"""``mixdit simulate-layer`` and ``mixdit demo`` on the shipped DiT's fixture activations (spec §4-§7).

Quick cases run each layer kind on a 4 x 4 accelerator top under Icarus. Icarus runs this top at
tens to hundreds of cycles per second here, so they slice the real activations (the first 4
tokens, 16 output channels of a linear layer, one image of attention); the calibration still sees
every captured activation. The full layers at 16 x 16 under Verilator, a whole block and the demo
are marked slow (the 16 x 16 Verilator build of the top takes minutes the first time; it is cached
under build/harness/).

Bit-exactness is what the command checks itself (exit 1 on any difference); the tests check that
it ran, that it bites when one RTL bit or one packed word is corrupted, that its numbers add up
(results checked = M * N, the array's measured cycles = the cycle model's plus the top's
ARRAY_LATENCY per command, the layer's = the array's plus a tail within hw.top.tail_cycles), and
the host FP32 block against the torch model.
"""

import json
import shutil

import numpy as np
import pytest

from sim.harness import simulator_missing
import torch

from golden.dit.capture import FIXTURE_PATH, load_capture
from golden.dit.checkpoint import CHECKPOINT_PATH, load_model
from golden.layer import (
    Executor, LINEAR_KINDS, Runner, block_params, calibrate_block, parse_layer, run_block,
)
from hw.top import ARRAY_LATENCY
from sim.cli import main

needs_data = pytest.mark.skipif(not (FIXTURE_PATH.is_file() and CHECKPOINT_PATH.is_file()),
                                reason="the shipped checkpoint and fixture capture are missing")
needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="no Icarus Verilog")
needs_verilator = pytest.mark.skipif(simulator_missing("verilator") is not None,
                                     reason="no Verilator (scripts/install-tools.sh, make venv)")

FIXTURE = ["--activations", str(FIXTURE_PATH), "--timestep", "480"]
SMALL = ["--sim", "icarus", "--rows", "4", "--cols", "4", "--tokens", "4"]


def simulate(tmp_path, capsys, *args) -> tuple[int, dict, str, str]:
    out = tmp_path / "report.json"
    rc = main(["simulate-layer", *args, "--json", str(out)])
    cap = capsys.readouterr()
    report = json.loads(out.read_text()) if rc == 0 else {}
    return rc, report, cap.out, cap.err


@needs_data
@needs_icarus
@pytest.mark.parametrize("kind", LINEAR_KINDS)
def test_linear_layer_icarus_4x4(tmp_path, capsys, kind):
    vcd = tmp_path / "waves.vcd"
    rc, rep, out, err = simulate(tmp_path, capsys, *FIXTURE, "--layer", f"blocks.5.{kind}",
                                 *SMALL, "--out-channels", "16", "--vcd", str(vcd))
    assert rc == 0, err
    assert vcd.stat().st_size > 0
    assert rep["results_checked"] == 4 * 16 and rep["gemms"] == 1
    assert rep["array_cycles"] == rep["model_cycles"] + ARRAY_LATENCY > ARRAY_LATENCY
    assert rep["array_cycles"] <= rep["cycles"] <= rep["array_cycles"] + 2
    assert rep["netlist"].startswith("mixdit_top_4x4") and "Icarus" in rep["simulator_version"]
    assert rep["next_layer"] == {"skipped": "output channels sliced (--out-channels)"}
    assert 0 < rep["utilization"] <= 1
    errs = rep["errors"]
    assert errs["mx9"]["rel_err"] < errs["mx6"]["rel_err"]
    assert errs["mx9"]["model_cycles"] > errs["mixdit"]["model_cycles"] >= \
        errs["mx6"]["model_cycles"]
    assert "== golden bit for bit" in out


@needs_data
@needs_icarus
def test_attention_icarus_4x4_with_next_layer_groups(tmp_path, capsys):
    rc, rep, out, err = simulate(tmp_path, capsys, *FIXTURE, "--layer", "blocks.5.attn",
                                 *SMALL, "--images", "1")
    assert rc == 0, err
    heads = 4
    assert rep["gemms"] == 2 * heads
    # QK^T is 4 x 16 per head, PV 4 x 32.
    assert rep["results_checked"] == heads * (4 * 16 + 4 * 32)
    assert rep["mx9_share"] == pytest.approx(rep["heads"].count("mx9") / heads)
    nl = rep["next_layer_groups"]
    assert nl["consumer"] == "attn.proj" and nl["count"] == 4 * 128 // 16
    assert nl["source"] == "rtl" and nl["bit_exact"] is True
    # 8 commands (QK^T and P V per head), each the array's cycles plus its latency.
    assert rep["array_cycles"] == rep["model_cycles"] + 2 * heads * ARRAY_LATENCY
    assert 0 < rep["tail_cycles"] <= rep["tail_bound"]
    assert rep["cycles"] > rep["array_cycles"]
    assert rep["errors"]["mixdit"]["rel_err"] < rep["errors"]["mx6"]["rel_err"]


@needs_data
@needs_icarus
def test_a_flipped_rtl_bit_fails_the_check(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MIXDIT_TEST_FLIP_RTL", "0,1,2,7")
    rc, _, _, err = simulate(tmp_path, capsys, *FIXTURE, "--layer", "blocks.5.attn.qkv",
                             *SMALL, "--out-channels", "16")
    assert rc == 1
    assert "CHECK FAILED" in err and "differ in 1 of 64" in err and "C[1, 2]" in err


@needs_data
@needs_icarus
def test_a_flipped_next_layer_word_fails_the_check(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MIXDIT_TEST_FLIP_GROUP", "3,20")
    rc, _, _, err = simulate(tmp_path, capsys, *FIXTURE, "--layer", "blocks.5.attn",
                             "--sim", "icarus", "--rows", "4", "--cols", "4", "--tokens", "1",
                             "--images", "1")
    assert rc == 1
    assert "CHECK FAILED" in err and "word 3 (token 0, group 3" in err


@needs_data
@pytest.mark.parametrize("args, msg", [
    (["--layer", "blocks.5.mlp.fc3"], "valid layers: blocks.5.attn.qkv"),
    (["--layer", "blocks.2.mlp.fc1"], "valid blocks: 0, 5"),
    (["--layer", "fc1"], "blocks.N.mlp.fc1"),
    (["--layer", "blocks.5.mlp.fc1", "--timestep", "123"], "valid timesteps: 960, 480, 0"),
    (["--layer", "blocks.5.mlp.fc1", "--p1", "1.5"], "--p1 must lie in [0, 1]"),
    (["--layer", "blocks.5.mlp.fc1", "--p2", "-0.1"], "--p2 must lie in [0, 1]"),
    (["--layer", "blocks.5.mlp.fc1", "--sim", "xsim"], "valid: verilator, icarus"),
    (["--layer", "blocks.5.mlp.fc1", "--rounding", "up"], "valid: trunc, rne"),
    (["--layer", "blocks.5.mlp.fc1", "--rows", "0"], "positive integer"),
    (["--block", "5"], "leave out --activations"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args, msg):
    rc = main(["simulate-layer", "--activations", str(FIXTURE_PATH), *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert msg in err and len(err.strip().splitlines()) == 1, err


def test_missing_simulator_is_exit_2(capsys, monkeypatch):
    import sim.harness

    monkeypatch.setattr(sim.harness.shutil, "which", lambda exe: None)
    rc = main(["simulate-layer", "--layer", "blocks.5.attn", "--sim", "icarus"])
    err = capsys.readouterr().err
    assert rc == 2 and "not installed" in err and "installed simulators: none" in err


@needs_icarus
def test_missing_checkpoint_is_exit_2(capsys, tmp_path):
    rc = main(["simulate-layer", "--checkpoint", str(tmp_path / "no.safetensors"),
               "--layer", "blocks.0.attn", "--sim", "icarus"])
    assert rc == 2 and "no DiT checkpoint" in capsys.readouterr().err


def test_parse_layer_lists_valid_names():
    assert str(parse_layer("blocks.0.attn", [0])) == "blocks.0.attn"
    with pytest.raises(ValueError, match="blocks.0.mlp.fc2"):
        parse_layer("blocks.0.mlp.fc9", [0])


@needs_data
def test_host_fp32_block_matches_the_torch_block():
    """The host half of a block run (golden/layer.py) against the model's own forward, in FP32:
    approximate, because torch and NumPy sum in different orders."""
    model = load_model()
    acts = load_capture(FIXTURE_PATH)
    plans = calibrate_block(acts, 5, 480, 0.05, 0.2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 128)).astype(np.float32)
    c = rng.standard_normal((2, 128)).astype(np.float32)
    with torch.no_grad():
        ref = model.blocks[5](torch.from_numpy(x), torch.from_numpy(c)).numpy()
    got = run_block(x, c, block_params(model, 5), Executor("fp32", plans), 5)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@needs_data
def test_golden_block_runs_every_gemm_through_the_backend():
    model = load_model()
    acts = load_capture(FIXTURE_PATH)
    plans = calibrate_block(acts, 5, 480, 0.05, 0.2)
    x = acts["blocks.5.attn.qkv/t480"]
    c = np.zeros((2, 128), dtype=np.float32)
    runner = Runner()
    run_block(x, c, block_params(model, 5), Executor("mixdit", plans, runner=runner), 5)
    names = [r.name for r in runner.records]
    assert names[0] == "blocks.5.attn.qkv" and names[-2:] == ["blocks.5.mlp.fc1",
                                                             "blocks.5.mlp.fc2"]
    assert len(names) == 4 + 2 * 2 * 4          # four linears, QK and PV per image and head


@pytest.mark.slow
@needs_data
@needs_verilator
@pytest.mark.parametrize("layer", [*(f"blocks.5.{k}" for k in LINEAR_KINDS), "blocks.5.attn"])
def test_full_layer_verilator_16x16(tmp_path, capsys, layer):
    rc, rep, _, err = simulate(tmp_path, capsys, *FIXTURE, "--layer", layer)
    assert rc == 0, err
    if layer.endswith("attn"):
        assert rep["array_cycles"] == rep["model_cycles"] + 16 * ARRAY_LATENCY
    else:
        assert rep["array_cycles"] == rep["model_cycles"] + ARRAY_LATENCY
    if not layer.endswith("fc2"):
        # The controller hides behind the array: only the documented tail follows it.
        assert rep["next_layer_groups"]["count"] > 0
        assert rep["tail_cycles"] <= rep["tail_bound"]


@needs_data
@needs_verilator
def test_whole_block_on_a_2x2_top_under_verilator(tmp_path, capsys):
    """Every layer of block 5 on a 2 x 2 top (captured now): 20 GEMMs and the next-layer groups of
    four layers (fc2 of the last block feeds the host), each layer's array cycles the cycle
    model's plus the top's latency per command, each tail within its bound."""
    rc, rep, out, err = simulate(tmp_path, capsys, "--block", "5", "--timestep", "480",
                                 "--rows", "2", "--cols", "2")
    assert rc == 0, err
    assert rep["gemms"] == 4 + 2 * 2 * 4 and rep["netlist"].startswith("mixdit_top_2x2")
    assert rep["array_cycles"] == rep["model_cycles"] + rep["gemms"] * ARRAY_LATENCY
    layers = rep["layers"]
    # qkv: 32 tokens x 384 / 16; attention and proj: 32 x 128 / 16; fc1: 32 x 512 / 16.
    want = {"attn.qkv": 768, "attn": 256, "attn.proj": 256, "mlp.fc1": 1024}
    for kind, count in want.items():
        assert layers[kind]["next_layer_groups"]["count"] == count
        assert layers[kind]["tail_cycles"] > 0
        if kind != "attn":
            # Linear layers hide the controller behind the array. Attention converts after the
            # last head's P V, a GEMM too short on a 2 x 2 array to hide 16 tokens' groups.
            assert layers[kind]["tail_cycles"] <= layers[kind]["tail_bound"]
    assert "next_layer_groups" not in layers["mlp.fc2"]
    assert rep["next_layer_groups"]["count"] == sum(want.values())
    assert "next-layer groups == golden bit for bit" in out


@pytest.mark.slow
@needs_data
@needs_verilator
def test_whole_block_verilator_16x16(tmp_path, capsys):
    rc, rep, out, err = simulate(tmp_path, capsys, "--block", "5", "--timestep", "480")
    assert rc == 0, err
    assert rep["gemms"] == 4 + 2 * 2 * 4
    assert rep["next_layer_groups"]["count"] > 0 and rep["next_layer_groups"]["source"] == "rtl"
    assert "next-layer groups == golden bit for bit" in out
    assert rep["errors"]["mixdit"]["rel_err"] < rep["errors"]["mx6"]["rel_err"]


@needs_data
@needs_verilator
@pytest.mark.parametrize("size", [
    pytest.param(16, marks=pytest.mark.slow),
    4,   # what make demo runs, on a small array: the quick suite runs the command itself
])
def test_demo(capsys, tmp_path, size):
    assert main(["demo", "--out", str(tmp_path / "rtl"), "--rows", str(size), "--cols",
                 str(size)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "rtl" / "top.v").is_file()
    # Each layer: its FP32 results and its next-layer groups, both checked.
    assert out.count("== golden bit for bit") == 4, out
    assert out.count(f"({size}x{size} array)") == 2, out
