"""The cycle and latency model (golden/accelerator.py), the workloads, the GPU model and ``mixdit perf``.

Expected values come from the paper (Table II), the DiT paper (GFLOPs and parameters of
DiT-XL/2), the RTL's own cycle functions (hw/pe.py, hw/cycles.py) and hand calculations of the
documented formulas, never from this model's output.
"""

import heapq
import itertools
import json
import subprocess
import sys

import pytest

from golden.perf import accelerator, gpu, workloads
from golden.perf.workloads import Gemm
from hw.pe import RESULT_LATENCY

# The fill and drain beyond C + rows_L (hw/cycles.py): command-to-step 1, issue register 1, the
# PE's result latency, the landing register 1, the output buffer 2, less 1 for counting both ends.
FILL = 1 + 1 + RESULT_LATENCY + 1 + 2 - 1


def mixdit(*args):
    return subprocess.run([sys.executable, "-m", "sim.cli", *args], capture_output=True,
                          text=True)


# ---- Table II ---------------------------------------------------------------------------------

def test_peak_tops_match_table_ii():
    # Table II gives 262 TOPS in MX9; MX6 x MX6 is 4x faster per group (spec §2.2): 1049.
    assert round(accelerator.peak_tops("mx9", "mx9")) == 262
    assert round(accelerator.peak_tops("mx6", "mx6")) == 1049


@pytest.mark.parametrize("fa,fw", list(itertools.product(("mx6", "mx9"), repeat=2)))
def test_group_cycles_are_the_pes(fa, fw):
    from hw.pe import cycles_per_group

    assert accelerator.group_cycles(fa, fw) == cycles_per_group(fa, fw)


def test_group_cycles_rejects_mx4():
    with pytest.raises(ValueError, match="mx4"):
        accelerator.group_cycles("mx4", "mx6")


# ---- one array (spec §3) ------------------------------------------------------------------

def _one_array(m, k, n, a_fmts, w_fmts, rows, cols):
    """The at-scale model of golden.perf restricted to one array, for one GEMM."""
    cfg = accelerator.AcceleratorConfig(rows=rows, cols=cols, arrays=1)
    s = accelerator.tile_cycles(k, a_fmts, w_fmts)
    return accelerator.repetition_cycles([(-(-m // rows) * -(-n // cols), s)], m, cfg)


def test_one_array_formula_by_hand():
    # hw/cycles.py: S + (T - 1) * max(S, max(R, C)) + C + rows_L + FILL.
    # 2 x 1 tiles of 16x16, K = 48: MX6, MX6, MX9 groups against MX6: S = 4 + 4 + 8 = 16.
    assert _one_array(32, 48, 16, ["mx6", "mx6", "mx9"], "mx6", 16, 16) == 16 + 16 + 16 + 16 + FILL
    # K = 16 in MX6: S = 4, the second tile waits for the 16-cycle period.
    assert _one_array(32, 16, 16, "mx6", "mx6", 16, 16) == 4 + 16 + 16 + 16 + FILL
    # 3 x 2 tiles (M = 33: one row in the last tile row), K = 80 in MX9 x MX9: S = 80.
    assert _one_array(33, 80, 17, "mx9", "mx9", 16, 16) == 80 + 5 * 80 + 16 + 1 + FILL


def _array_test_cases():
    """(m, k, n, a_fmts, w_fmts, rows, cols) of every GEMM the array tests time against
    hw.cycles: tests/test_harness.py's shapes x mixes on 4 x 4, its 8 x 16 and 16 x 16 cases,
    and sim/cocotb_array.py's full-speed GEMMs on 4 x 4, 8 x 16 and 16 x 16."""
    from sim.array_stimulus import MIXES, mix_codes

    names = lambda codes: ["mx9" if c else "mx6" for c in codes]
    harness = pytest.importorskip("test_harness")
    cases = []
    for (m, kg, n), mix in itertools.product(harness.SHAPES, MIXES):
        ca, cw = mix_codes(mix, kg)
        cases.append((m, 16 * kg, n, names(ca), names(cw), 4, 4))
    for rows, cols in ((4, 4), (8, 16), (16, 16)):
        for i, mix in enumerate(MIXES):
            m, kg, n = rows + 1 + i, 2 + i, cols * 2 - i
            ca, cw = mix_codes(mix, kg)
            cases.append((m, 16 * kg, n, names(ca), names(cw), rows, cols))
    cases.append((20, 1152, 35, ["mx6"] * 68 + ["mx9"] * 4, "mx6", 16, 16))
    return cases


def test_model_equals_rtl_cycle_count_on_array_test_cases():
    """The perf model on one array equals hw.cycles.gemm_cycles, the exact count the array's
    RTL tests measure, for every shape and precision mix they run (spec §3)."""
    cases = _array_test_cases()
    assert len(cases) > 20
    for m, k, n, fa, fw, rows, cols in cases:
        rtl = accelerator.array_gemm_cycles(m, k, n, fa, fw, rows, cols)
        assert _one_array(m, k, n, fa, fw, rows, cols) == rtl, (m, k, n, fa, fw, rows, cols)


def _lpt(tiles, arrays):
    loads = [0] * arrays
    heapq.heapify(loads)
    for n, c in sorted(tiles, key=lambda t: -t[1]):
        for _ in range(n):
            heapq.heappush(loads, heapq.heappop(loads) + c)
    return max(loads)


@pytest.mark.parametrize("n9,n6,arrays", [(0, 7, 3), (5, 0, 4), (3, 10, 4), (17, 50, 8),
                                          (1, 1, 16), (9, 33, 5)])
def test_spread_equals_greedy_schedule(n9, n6, arrays):
    tiles = [(n9, 80), (n6, 20)]
    assert accelerator._spread_cycles(tiles, arrays) == _lpt(tiles, arrays)


# ---- workloads: independent figures ------------------------------------------------------------

@pytest.mark.parametrize("res,gflops", [(256, 118.6), (512, 524.6)])
def test_dit_xl_gflops_match_dit_paper(res, gflops):
    # DiT paper (Peebles and Xie 2023) Table 4: XL/2 at 256 is 118.6 "Gflops" (multiply-adds),
    # at 512 it is 524.6, for one image; the workload holds 2 rows (guidance).
    w = workloads.dit_xl_2(res)
    assert w.macs_per_step / workloads.CFG_BATCH / 1e9 == pytest.approx(gflops, rel=0.005)


@pytest.mark.parametrize("name,params,tol", [("DiT-XL/2-256", 675e6, 0.01),
                                             ("SD3-medium-1024", 2.0e9, 0.05),
                                             ("PixArt-Sigma-1024", 0.6e9, 0.05)])
def test_linear_weights_match_published_sizes(name, params, tol):
    # DiT-XL/2: 675 M parameters; SD3-medium: 2 B; PixArt-Sigma: 0.6 B (the papers' figures).
    assert workloads.workload(name).weight_params == pytest.approx(params, rel=tol)


def test_attention_counts_heads_and_rows():
    w = workloads.dit_xl_2(256)
    qk = next(g for g in w.gemms if g.name == "qk")
    assert (qk.m, qk.k, qk.n, qk.count, qk.parallel, qk.heads) == (256, 72, 256, 28, 32, 16)
    assert not qk.out_in_dram


# ---- precision mixes -----------------------------------------------------------------------------

def test_mixdit_lies_between_mx6_and_mx9_and_grows_with_p():
    w = workloads.workload("SD3-medium-1024")
    t = lambda p: accelerator.workload_latency(w, p).step_s
    lo, hi = t(accelerator.FP_MX6), t(accelerator.FP_MX9)
    steps = [t(accelerator.mixdit(p1, p2)) for p1, p2 in [(0, 0), (0.01, 0), (0.05, 0.2), (0.2, 0.5)]]
    assert steps[0] == pytest.approx(lo)
    assert all(a <= b for a, b in zip(steps, steps[1:]))
    assert steps[-1] < hi


def test_linear_formats_put_mx9_last():
    a, w = accelerator.mixdit(0.05, 0).linear_formats(1152)
    # ceil(0.05 * 1152 / 16) = ceil(3.6) = 4 groups of 72 (spec §4).
    assert a == ["mx6"] * 68 + ["mx9"] * 4 and w == ["mx6"] * 72


def test_compute_bound_gemm_by_hand():
    cfg = accelerator.AcceleratorConfig(arrays=4, dram_bytes_per_s=1e15)
    g = Gemm("x", "linear", 64, 64, 64)       # 16 tiles over 4 arrays, 4 groups MX6: S = 16
    t = accelerator.gemm_latency(g, accelerator.FP_MX6, cfg)
    # Each array: 4 tiles of 16 cycles, then C + R + FILL of fill and drain.
    assert t.cycles == 4 * 16 + 16 + 16 + FILL and t.bound == "compute"
    assert t.compute_s == pytest.approx(t.cycles / 500e6)


def test_memory_bound_gemm_by_hand():
    g = Gemm("adaLN", "linear", 2, 1152, 6912)
    t = accelerator.gemm_latency(g, accelerator.FP_MX6)
    # 6 bits per MX6 element (96-bit groups of 16): A, W and the result.
    bytes_ = (2 * 1152 + 1152 * 6912 + 2 * 6912) * 6 / 8
    assert t.bytes == pytest.approx(bytes_) and t.bound == "memory"
    assert t.memory_s == pytest.approx(bytes_ / 936e9)


# ---- GPU -----------------------------------------------------------------------------------------

def test_gpu_gemm_time_by_hand():
    g = Gemm("fc1", "linear", 8192, 1152, 4608)
    flops = 2 * 8192 * 1152 * 4608
    assert gpu.gemm_time(g) == pytest.approx(flops / (71e12 * 0.7))
    assert gpu.gemm_time(g, precision="int8") == pytest.approx(flops / (284e12 * 0.7))
    small = Gemm("adaLN", "linear", 2, 1152, 6912)
    assert gpu.gemm_time(small) == pytest.approx(
        2 * (2 * 1152 + 1152 * 6912 + 2 * 6912) / (936e9 * 0.8))


def test_implied_efficiency_inverts_image_time():
    w = workloads.workload("PixArt-Sigma-1024")
    card = gpu.GpuConfig(compute_eff=0.55)
    eff = gpu.implied_efficiency(w, gpu.image_time(w, card))
    assert eff == pytest.approx(0.55, rel=1e-6)


# ---- CLI -------------------------------------------------------------------------------------------

def test_cli_perf_tables_plot_and_json(tmp_path):
    res = mixdit("perf", "--plot-dir", str(tmp_path), "--json", str(tmp_path / "p.json"),
                 "--gemms", "DiT-XL/2-256")
    assert res.returncode == 0, res.stderr
    assert "1048.6" in res.stdout and "262.1" in res.stdout and "Per-GEMM" in res.stdout
    assert (tmp_path / "fig11_speedup.png").stat().st_size > 10_000
    rep = json.loads((tmp_path / "p.json").read_text())
    assert set(rep["workloads"]) == set(workloads.WORKLOADS)
    assert rep["workloads"]["SD3-medium-1024"]["paper_speedup"] == 3.70


@pytest.mark.parametrize("args,msg", [(["--p1", "1.5"], "--p1"), (["--gpu-eff", "0"], "gpu-eff"),
                                      (["--gemms", "GPT-4"], "unknown model")])
def test_cli_perf_usage_errors(args, msg):
    res = mixdit("perf", "--plot-dir", "", *args)
    assert res.returncode == 2 and msg in res.stderr and len(res.stderr.splitlines()) == 1
