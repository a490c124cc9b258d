"""The accelerator top as one netlist (issue: the accelerator simulated whole, and fast).

Prints, for the 16 x 16 top under Verilator (a row of its PEs verilated once as a
hierarchical block, :class:`hw.array.PERow`):
- its build: generated C++, build wall and CPU seconds (a cached build reports the figures
  recorded when it was made);
- the top harness's per-run overhead: a 1 x 16 x 16 command end to end (images written, process
  started, results read), best and median of 5;
- DiT-XL/2's QKV projection (256 x 1152 times 3456 x 1152, 5% of A's groups in MX9) through the
  top, its 3456 results per token converted into the next layer's groups (a bank-conflict-free
  order, 5% of the groups in MX9): in one run, and as row shards on 1 and 2 local Dask workers
  (:mod:`sim.cluster`, a fresh task cache each); cycles, wall and CPU seconds, cycles per second,
  and every FP32 result and next-layer group compared with golden bit for bit;
- the cocotb testbench of the top (``sim/cocotb_top.py``, its real-layer test on a 4 x 4 top)
  under Verilator beside Icarus: simulated cycles per second and the build.

``BENCH_TOP_QUICK=1`` runs the QKV projection's first 32 tokens and skips the cocotb rows.
"""

import json
import math
import os
import resource
import sys
import tempfile
import time
import warnings
import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np

from sim.tables import print_table

QKV = (256, 1152, 3456)


def _cpu() -> float:
    """CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _announce(line: str) -> None:
    print(f"... {line}", file=sys.stderr, flush=True)


def qkv_case(m: int):
    """A and W of the QKV projection (``m`` tokens), the consumer's order and MX9 map."""
    from golden import mx
    from golden.mixdit import conflict_free_order, linear_formats
    from golden.formats import MX9

    _, k, n = QKV
    rng = np.random.default_rng(0)
    kg = k // 16
    n9 = math.ceil(0.05 * kg)
    x = rng.standard_normal((m, k)).astype(np.float32)
    x[:, rng.choice(k, k // 20, replace=False)] *= 8          # outlier channels
    a = mx.quantize(x, ["mx6"] * (kg - n9) + ["mx9"] * n9)
    w = mx.quantize((rng.standard_normal((n, k)) / 34).astype(np.float32), "mx6")
    order = conflict_free_order(rng.random(n) + 1.0, 16)
    mx9 = np.array([f == MX9.name for f in linear_formats(n, 0.05)], dtype=bool)
    return a, w, order, mx9


def _golden(a, w, order, mx9):
    """The golden FP32 bits and the tagged next-layer words (what the top must give)."""
    from golden import gemm, mx

    c = gemm.mx_matmul(a, w)
    fmts = ["mx9" if f else "mx6" for f in mx9]
    return c.view(np.uint32), list(mx.pack_tagged(mx.quantize(c[:, order], fmts)).reshape(-1))


def build_table(top) -> object:
    from sim.harness.top import build_top, netlist_name

    b = build_top(top, "verilator", announce=_announce)
    st = b.stats()
    print(f"\nThe top {netlist_name(top)} under {b.version}, a PE row a hierarchical block")
    print_table(["C++ MB", "build wall s", "build CPU s", "cached"],
                [[f"{st.get('cpp_bytes', 0) / 1e6:.1f}", f"{st.get('wall_s', 0):.0f}",
                  f"{st.get('cpu_s', 0):.0f}", "yes" if b.build_s == 0 else "no"]])
    return b


def overhead_table(top) -> None:
    from golden import mx
    from sim.harness.top import TopCommand, run_top

    rng = np.random.default_rng(2)
    a = mx.quantize(rng.standard_normal((1, 16)).astype(np.float32), "mx6")
    w = mx.quantize(rng.standard_normal((16, 16)).astype(np.float32), "mx6")
    cmd = [TopCommand(a, w, True, 0, 1)]
    order, mx9 = np.arange(16), np.zeros(1, dtype=bool)
    run_top(cmd, order, mx9, top)
    walls, cpus = [], []
    for _ in range(5):
        t0, c0 = time.perf_counter(), _cpu()
        res = run_top(cmd, order, mx9, top)
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    print("\nTop harness per-run overhead: run_top of a 1 x 16 x 16 command with its one group "
          "(best and median of 5)")
    print_table(["cycles", "best wall s", "best CPU s", "median wall s"],
                [[res.cycles, f"{min(walls):.3f}", f"{min(cpus):.3f}", f"{sorted(walls)[2]:.3f}"]])


def _one_run(top, a, w, order, mx9) -> dict:
    from sim.harness.top import TopCommand, run_top

    t0, c0 = time.perf_counter(), _cpu()
    res = run_top([TopCommand(a, w, True, 0, len(mx9))], order, mx9, top)
    return {"c": res.c[0], "words": res.groups, "cycles": res.cycles, "shards": 1,
            "sim_s": res.sim_s, "wall": time.perf_counter() - t0, "cpu": _cpu() - c0}


def _sharded(top, workers: int, shards: int, build_id: str, a, w, order, mx9) -> dict:
    from sim.cluster import Progress, ShardRunner, connect
    from sim.shard import top_row_shards

    pieces = top_row_shards(a, w, order, mx9, top.array.rows, shards, build_id)
    with tempfile.TemporaryDirectory(prefix="mixdit-bench-tasks-") as cache, \
            warnings.catch_warnings():
        # Each shard carries W (10 MB): Dask warns of the large graph, which it is, once.
        warnings.filterwarnings("ignore", "Sending large graph")
        t0, c0 = time.perf_counter(), _cpu()
        with connect(workers) as client:
            runner = ShardRunner(client, top.array, "verilator",
                                 Progress(len(pieces), "shards", every_s=30), cache=cache,
                                 top=top)
            done = [r[0] for r in runner.run([[p] for p in pieces], "QKV")]
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"c": np.concatenate([r.c[0] for r in done]),
            "words": [x for r in done for x in r.words], "cycles": sum(r.cycles for r in done),
            "shards": len(pieces), "sim_s": max(r.sim_s for r in done), "wall": wall,
            "cpu": cpu}


def qkv_table(top, b, m: int) -> None:
    from hw.cycles import gemm_cycles
    from hw.top import tail_cycles

    a, w, order, mx9 = qkv_case(m)
    want_c, want_words = _golden(a, w, order, mx9)
    _, k, n = QKV
    model = gemm_cycles(m, k, n, list(a.formats), list(w.formats), top.array)
    rows = []
    for label, run in (("one run", lambda: _one_run(top, a, w, order, mx9)),
                       ("1 worker", lambda: _sharded(top, 1, 4, b.directory.name, a, w, order,
                                                     mx9)),
                       ("2 workers", lambda: _sharded(top, 2, 8, b.directory.name, a, w, order,
                                                      mx9))):
        _announce(f"QKV through the top: {label}")
        r = run()
        exact = (np.array_equal(r["c"].view(np.uint32), want_c) and r["words"] == want_words)
        rows.append([label, r["shards"], f"{r['cycles']:,}", f"{r['wall']:.1f}",
                     f"{r['cpu']:.1f}", f"{r['cycles'] / r['wall']:,.0f}",
                     f"{len(r['words']):,}", "yes" if exact else "NO"])
    print(f"\nDiT-XL/2 QKV projection {m} x {k} x {n} (5% MX9 A) through the 16 x 16 top, "
          f"converted into {len(mx9)} next-layer groups per token (5% MX9) by the same netlist; "
          f"array cycle model {model:,} + tail bound {tail_cycles(m, len(mx9), top):,} "
          f"({os.cpu_count()} CPUs, shared machine; wall includes the cluster's start)")
    print_table(["run", "shards", "cycles", "wall s", "CPU s", "cycles/s", "groups",
                 "bit-exact"], rows)


def _cocotb_row(sim: str) -> list:
    """The cocotb top's real-layer test on a 4 x 4 top: cycles/s from cocotb's results."""
    from hw.config import ArrayConfig
    from hw.top import MixDiTTop
    from sim.harness.top import top_config
    from sim.cocotb_top import PERIOD_NS
    from sim.runner import BUILD, ROOT, run_cocotb, skip_reason

    if skip_reason(sim):
        return [sim, "-", "-", "-", "-", skip_reason(sim)]
    cfg = top_config(replace(ArrayConfig(), rows=4, cols=4), max_tokens=8, max_channels=128)
    name = "top4x4_t8_k128"
    case = "bench-top-4x4"
    c0 = _cpu()
    results = run_cocotb(MixDiTTop(cfg, pe_module=f"{name}_pe"), name=name, case=case,
                         test_module="cocotb_top", test_dir=ROOT / "sim", sim=sim,
                         testcase=["dit_layers"],
                         extra_env={"TOP_ROWS": "4", "TOP_COLS": "4", "TOP_TOKENS": "8",
                                    "TOP_CHANNELS": "128", "TOP_ROUNDING": "trunc",
                                    "TOP_LAYERS": "attn.proj", "TOP_DIT_TOKENS": "8",
                                    "TOP_SEED": "11", "TOP_RANDOM": "0"})
    cpu = _cpu() - c0
    case_el = next(ET.parse(results).iter("testcase"))
    props = {p.get("name"): p.get("value") for p in case_el.iter("property")}
    if props.get("sim_time_unit") != "ns":
        raise RuntimeError(f"cocotb reported simulated time in {props.get('sim_time_unit')!r}")
    cycles = float(props["sim_time_duration"]) / PERIOD_NS
    wall = float(case_el.get("time"))
    timing = json.loads((BUILD / f"{case}-{sim}" / "timing.json").read_text())
    return [sim, f"{cycles:,.0f}", f"{wall:.1f}", f"{cycles / wall:,.0f}",
            f"{timing.get('build_s', 0):.0f}", f"{cpu:.1f}"]


def cocotb_table() -> None:
    rows = [_cocotb_row(sim) for sim in ("verilator", "icarus")]
    print("\ncocotb testbench of the top (sim/cocotb_top.py: dit_layers, 8 tokens of "
          "blocks.0.attn.proj at full rate and under stalls) on a 4 x 4 top")
    print_table(["simulator", "cycles", "test wall s", "cycles/s", "build s",
                 "CPU s (build + test)"], rows)


def main() -> None:
    from hw.config import ArrayConfig
    from sim.harness import simulator_missing
    from sim.harness.top import top_config

    quick = os.environ.get("BENCH_TOP_QUICK", "") not in ("", "0")
    os.nice(5)
    if simulator_missing("verilator"):
        print(f"top: skipped ({simulator_missing('verilator')})")
        return
    m, _, n = QKV
    top = top_config(ArrayConfig(), max_tokens=m, max_channels=n)
    b = build_table(top)
    overhead_table(top)
    qkv_table(top, b, 32 if quick else m)
    if not quick:
        cocotb_table()


if __name__ == "__main__":
    main()
