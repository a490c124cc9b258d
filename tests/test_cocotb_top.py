"""Run the cocotb testbench of the accelerator top (sim/cocotb_top.py) on its emitted Verilog
(spec §3-§6) under Icarus and Verilator: real DiT layers with their consumers' calibrated order
tables and MX6/MX9 maps, and random layers under gaps and back-pressure.

The quick case is a 4 x 4 top with a buffer of 8 tokens x 128 channels on the first 8 tokens of
blocks.0.attn.proj (into mlp.fc1's order); the 16 x 16 top on whole layers (32 tokens) is a slow
regression. ``MIXDIT_TOP_SEED`` replaces the random layers' seed (printed, so a failure replays).
"""

import os
from dataclasses import replace

import pytest

from hw.config import ArrayConfig
from hw.top import MixDiTTop
from sim.harness.top import top_config
from sim.runner import ROOT, SIMULATORS, run_cocotb

SEED = int(os.environ.get("MIXDIT_TOP_SEED", "11"))


def _run(sim: str, rows: int, cols: int, tokens: int, channels: int, layers: str,
         dit_tokens: int, randoms: int) -> None:
    cfg = top_config(replace(ArrayConfig(), rows=rows, cols=cols), max_tokens=tokens,
                     max_channels=channels)
    name = f"top{rows}x{cols}_t{tokens}_k{channels}"
    print(f"seed {SEED} (MIXDIT_TOP_SEED={SEED} replays it)")
    run_cocotb(MixDiTTop(cfg, pe_module=f"{name}_pe"), name=name, case=f"top-{rows}x{cols}",
               test_module="cocotb_top", test_dir=ROOT / "sim", sim=sim,
               extra_env={"TOP_ROWS": str(rows), "TOP_COLS": str(cols), "TOP_TOKENS": str(tokens),
                          "TOP_CHANNELS": str(channels), "TOP_ROUNDING": cfg.reorder.rounding,
                          "TOP_LAYERS": layers, "TOP_DIT_TOKENS": str(dit_tokens),
                          "TOP_SEED": str(SEED), "TOP_RANDOM": str(randoms)})


@pytest.mark.parametrize("sim", SIMULATORS)
def test_top_4x4(sim):
    """A 4 x 4 top: 8 tokens of a real layer at full rate and under stalls, two random layers."""
    _run(sim, 4, 4, 8, 128, "attn.proj", 8, 2)


@pytest.mark.slow
@pytest.mark.parametrize("sim", SIMULATORS)
def test_top_16x16(sim):
    """The 16 x 16 top on whole real layers (32 tokens: proj into fc1, fc1 into fc2, qkv into
    attention's heads) and four random layers."""
    _run(sim, 16, 16, 32, 512, "attn.proj,mlp.fc1,attn.qkv", 0, 4)
