"""Golden model speed: quantize throughput and the DiT-XL/2 QKV GEMM (issue: golden model)."""

import os
import time

import numpy as np

from sim.tables import print_table


def _best(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    from golden import gemm, mx
    from golden.synthetic import outlier_activations

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2048, 4608)).astype(np.float32)
    rows = []
    for fmt in ("mx6", "mx9"):
        for rounding in ("trunc", "rne"):
            t = _best(lambda: mx.quantize(x, fmt, rounding))
            rows.append([fmt, rounding, f"{x.size / 1e6:.1f} M", f"{t * 1e3:.0f}",
                         f"{x.size / t / 1e6:.0f}"])
    print(f"quantize, one process (OMP/BLAS threads: {os.environ.get('OMP_NUM_THREADS', 'default')})")
    print_table(["format", "rounding", "elements", "ms", "M elem/s"], rows)

    a_f, _ = outlier_activations(256, 1152, seed=0)
    w_f = (rng.standard_normal((3456, 1152)) / 34).astype(np.float32)
    fmts = ["mx6"] * 68 + ["mx9"] * 4
    a, w = mx.quantize(a_f, fmts), mx.quantize(w_f, "mx6")
    t_mx = _best(lambda: gemm.mx_matmul(a, w), 2)
    t_f32 = _best(lambda: a_f @ w_f.T, 3)
    print("\nDiT-XL/2 QKV projection, 256 x 1152 times 3456 x 1152 (5% of A's groups in MX9)")
    print_table(["GEMM", "seconds", "ratio"],
                [["golden.gemm.mx_matmul (bit-exact)", f"{t_mx:.3f}", f"{t_mx / t_f32:.0f}x"],
                 ["numpy float32 a @ w.T", f"{t_f32:.4f}", "1x"]])
