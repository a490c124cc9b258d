"""Large GEMMs on a Dask cluster (issue: a whole image on the RTL, sharded on Dask).

Prints, for DiT-XL/2's QKV projection (256 x 1152 times 3456 x 1152, 5% of A's groups in MX9)
on the default 16 x 16 array under Verilator, sharded by whole output-column tiles
(:func:`sim.cluster.sharded_gemm`), each variant in this one run on a fresh task cache:
- wall time and CPU seconds (this process and every worker and simulator under it) with 1 and
  with 2 local workers, bit-exact against the golden model;
- the per-task overhead: tiny GEMMs (16 x 16 x 16) as tasks on 2 workers, wall per task beside
  the harness's own run time;
- the projection to 8, 64 and 512 workers from the measured time per column tile and per-task
  overhead. Only whole column tiles are shards, so a 3456-column GEMM has at most 216; past 216
  workers the projection stops improving (splitting rows as well would lift that bound).

``BENCH_CLUSTER_QUICK=1`` runs the QKV projection's first 512 output columns instead.
"""

import math
import os
import resource
import tempfile
import time

import numpy as np

from sim.tables import print_table

QKV = (256, 1152, 3456)


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _operands(n: int):
    from golden import mx

    m, k, _ = QKV
    rng = np.random.default_rng(0)
    kg = k // 16
    mx9 = math.ceil(0.05 * kg)
    a = mx.quantize(rng.standard_normal((m, k)).astype(np.float32),
                    ["mx6"] * (kg - mx9) + ["mx9"] * mx9)
    w = mx.quantize(rng.standard_normal((n, k)).astype(np.float32), "mx6")
    return a, w


def _run(workers: int, a, w, config, build_id: str, shards: int) -> dict:
    from sim.cluster import Progress, ShardRunner, connect, sharded_gemm

    with tempfile.TemporaryDirectory(prefix="mixdit-bench-tasks-") as cache:
        t0, c0 = time.perf_counter(), _cpu()
        with connect(workers) as client:
            up = time.perf_counter() - t0
            runner = ShardRunner(client, config, "verilator", Progress(0, "shards", every_s=30),
                                 cache=cache)
            t1 = time.perf_counter()
            c, parts = sharded_gemm(runner, a, w, shards, build_id, "QKV")
            gemm_s = time.perf_counter() - t1
        return {"c": c, "parts": parts, "wall": time.perf_counter() - t0, "gemm_s": gemm_s,
                "up": up, "cpu": _cpu() - c0}


def _overhead(config, build_id: str, n_tasks: int = 40) -> dict:
    from golden import mx
    from sim.cluster import Progress, ShardRunner, connect
    from sim.shard import shards

    rng = np.random.default_rng(1)
    jobs = []
    for _ in range(n_tasks):
        a = mx.quantize(rng.standard_normal((16, 16)).astype(np.float32), "mx6")
        w = mx.quantize(rng.standard_normal((16, 16)).astype(np.float32), "mx6")
        jobs.append(shards(a, w, config, 1, build_id))
    with tempfile.TemporaryDirectory(prefix="mixdit-bench-tasks-") as cache:
        with connect(2) as client:
            runner = ShardRunner(client, config, "verilator", Progress(n_tasks, every_s=1e9),
                                 cache=cache)
            t0 = time.perf_counter()
            done = runner.run(jobs, "tiny")
            wall = time.perf_counter() - t0
    sim_s = sum(r[0].sim_s for r in done)
    return {"tasks": n_tasks, "wall_per_task": 2 * wall / n_tasks,
            "harness_per_task": sim_s / n_tasks}


def main() -> None:
    from golden import gemm
    from hw.config import ArrayConfig
    from sim import harness

    os.nice(5)
    quick = os.environ.get("BENCH_CLUSTER_QUICK", "") not in ("", "0")
    config = ArrayConfig()
    m, k, n = QKV
    n = 512 if quick else n
    a, w = _operands(n)
    b = harness.build(config, "verilator")
    ref = gemm.mx_matmul(a, w)
    rows, runs = [], {}
    for workers in (1, 2):
        r = _run(workers, a, w, config, b.directory.name, 4 * workers)
        runs[workers] = r
        exact = np.array_equal(r["c"].view(np.uint32), ref.view(np.uint32))
        cycles = sum(p[1].cycles for p in r["parts"])
        rows.append([workers, len(r["parts"]), f"{r['up']:.1f}", f"{r['gemm_s']:.1f}",
                     f"{r['wall']:.1f}", f"{r['cpu']:.1f}", f"{cycles:,}",
                     f"{cycles / r['gemm_s']:,.0f}", "yes" if exact else "NO"])
    print(f"DiT-XL/2 QKV projection {m} x {k} x {n} (5% MX9 A) on the 16 x 16 array, Verilator, "
          f"column shards on a LocalCluster ({os.cpu_count()} CPUs, shared machine):")
    print_table(["workers", "shards", "start s", "GEMM s", "wall s", "CPU s", "cycles",
                 "cycles/s", "bit-exact"], rows)

    ov = _overhead(config, b.directory.name)
    print(f"\nPer-task overhead ({ov['tasks']} tiny 16 x 16 x 16 GEMMs on 2 workers): "
          f"{ov['wall_per_task'] * 1e3:.0f} ms of worker time per task, of which the harness "
          f"run (process, images, simulation) {ov['harness_per_task'] * 1e3:.0f} ms")

    one = runs[1]
    col_tiles = -(-n // config.cols)
    per_tile = sum(p[1].sim_s for p in one["parts"]) / col_tiles
    task = max(ov["wall_per_task"] - ov["harness_per_task"], 0.0)
    proj = []
    for workers in (1, 2, 8, 64, 512):
        shards_ = min(workers, col_tiles)
        tiles_per = -(-col_tiles // shards_)
        proj.append([workers, shards_, tiles_per,
                     f"{tiles_per * per_tile + ov['harness_per_task'] + task:.1f}"])
    print(f"\nProjection (one shard per worker; {per_tile:.2f} s per column tile of {m} rows, "
          f"measured with 1 worker; {(ov['harness_per_task'] + task) * 1e3:.0f} ms per task; "
          "cluster start and scheduler latency not included):")
    print_table(["workers", "shards", "column tiles each", "GEMM s"], proj)
