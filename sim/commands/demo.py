"""``mixdit demo``: the project's main job at its current stage.

Quantizes activations with outlier channels (shaped like a DiT-XL/2 linear layer input) into MX6,
MX9 and the MixDiT mix, and runs the layer's GEMM through the bit-exact golden MX model, printing
the error of each against FP32.
"""


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "demo", formatter_class=formatter_class,
        help="quantize DiT-like activations with outlier channels and compare MX6/MX9/MixDiT",
        description=__doc__)
    p.add_argument("--tokens", type=int, default=256, help="rows of A")
    p.add_argument("--channels", type=int, default=1152, help="K, input channels")
    p.add_argument("--out-channels", type=int, default=1152, help="N, output channels")
    p.add_argument("--p1", type=float, default=0.05, help="share of A's channels in MX9")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    import time

    import numpy as np

    from golden import gemm, metrics, mixdit, mx
    from golden.synthetic import outlier_activations

    from ..errors import UsageError
    from ..inputs import check_fraction

    check_fraction(args.p1, "--p1")
    for name in ("tokens", "channels", "out_channels"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    x, outliers = outlier_activations(args.tokens, args.channels, seed=args.seed)
    rng = np.random.default_rng(args.seed + 1)
    w = (rng.standard_normal((args.out_channels, args.channels)) /
         np.sqrt(args.channels)).astype(np.float32)
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    plan = mixdit.plan_linear(x, args.p1)
    print(f"A: {args.tokens} x {args.channels} activations, {outliers.size} outlier channels "
          f"30-100x larger; W: {args.out_channels} x {args.channels}")
    print(f"MixDiT plan: p1 = {args.p1:.0%} -> {plan.mx9_groups} of {len(plan.a_formats)} "
          f"groups of A in MX9 after sorting channels by mean |x|\n")
    print(f"{'scheme':18s} {'A rel_err':>10s} {'A sqnr_db':>10s} {'GEMM rel_err':>13s} "
          f"{'GEMM sqnr_db':>13s} {'golden ms':>10s}")
    schemes = {
        "MX9 (A) x MX6 (W)": ("mx9", None),
        "MX6 (A) x MX6 (W)": ("mx6", None),
        "MixDiT x MX6 (W)": (None, plan),
    }
    for name, (fmt, p) in schemes.items():
        t0 = time.perf_counter()
        if p is None:
            a, wq = mx.quantize(x, fmt), mx.quantize(w, "mx6")
            a_deq = a.dequantize()
        else:
            a, wq = mixdit.quantize_linear(x, w, p)
            a_deq = np.empty_like(x)
            a_deq[:, p.perm] = a.dequantize()
        out = gemm.mx_matmul(a, wq)
        ms = (time.perf_counter() - t0) * 1e3
        ea = metrics.error_report(a_deq, x)
        eg = metrics.error_report(out, ref)
        print(f"{name:18s} {ea['rel_err']:10.3e} {ea['sqnr_db']:10.2f} {eg['rel_err']:13.3e} "
              f"{eg['sqnr_db']:13.2f} {ms:10.1f}")
    print("\nThe GEMM runs through the bit-exact golden model of the PE (DESIGN §2.1); the RTL "
          "is checked against it bit for bit.")
    return 0
