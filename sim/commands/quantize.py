"""``mixdit quantize``: quantize a tensor into MX and report its error against FP32."""

from ..errors import UsageError
from ..inputs import check_fraction, load_array, output_file


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "quantize", formatter_class=formatter_class,
        help="quantize a tensor to MX6, MX9 or the MixDiT mix and print its error",
        description=(
            "Quantize X (a float .npy array, grouped in 16s along its last axis) and print the\n"
            "error of the dequantized result against X: relative Frobenius error, SQNR in dB and\n"
            "max abs error. 'mixdit' calibrates the mean |x| of each channel on X itself, sorts\n"
            "the channels (spec §4) and puts the last ceil(p1*K/16) groups in MX9, the rest in\n"
            "MX6."))
    p.add_argument("--in", dest="inp", required=True, metavar="X.npy", help="input tensor")
    p.add_argument("--fmt", required=True, choices=("mx6", "mx9", "mx4", "mixdit"),
                   help="target format")
    p.add_argument("--p1", type=float, default=None,
                   help="share of channels in MX9, in [0, 1]; only with --fmt mixdit "
                        "(default 0.05)")
    p.add_argument("--rounding", choices=("trunc", "rne"), default="trunc",
                   help="element rounding (spec §1.1)")
    p.add_argument("--out", metavar="F.npz",
                   help="write the MX fields (exp, micro, sign, mant, fmt codes), the channel "
                        "order (perm) and the dequantized tensor (.npz is appended when missing)")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from golden import mixdit, mx
    from golden.quality import metrics

    if args.p1 is not None and args.fmt != "mixdit":
        raise UsageError(f"--p1 applies only to --fmt mixdit, not to --fmt {args.fmt}")
    p1 = check_fraction(0.05 if args.p1 is None else args.p1, "--p1")
    out = output_file(args.out, "--out", ".npz")
    x = load_array(args.inp, "input")
    k = x.shape[-1]
    perm = np.arange(k)
    if args.fmt == "mixdit":
        plan = mixdit.plan_linear(x, p1)
        perm = plan.perm
        t = mx.quantize(x[..., perm], list(plan.a_formats), args.rounding)
    else:
        t = mx.quantize(x, args.fmt, args.rounding)
    deq = np.empty_like(x)
    deq[..., perm] = t.dequantize()
    rep = metrics.error_report(deq, x)
    n9 = int((t.fmt == mx.format_of("mx9").code).sum())
    print(f"input    {args.inp}: shape {list(x.shape)}, {t.groups} groups of 16 per row")
    print(f"{'format':8s} {'mx9 groups':>10s} {'rel_err':>10s} {'sqnr_db':>9s} {'max_abs_err':>12s}")
    print(f"{args.fmt:8s} {f'{n9}/{t.groups}':>10s} {rep['rel_err']:10.3e} "
          f"{rep['sqnr_db']:9.2f} {rep['max_abs_err']:12.4e}")
    if out is not None:
        try:
            np.savez(out, exp=t.exp, micro=t.micro, sign=t.sign, mant=t.mant, fmt=t.fmt,
                     perm=perm, dequantized=deq, rounding=args.rounding)
        except OSError as exc:
            raise UsageError(f"--out: cannot write {str(out)!r}: {exc.strerror}") from None
        print(f"wrote    {out}")
    return 0
