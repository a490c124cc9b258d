"""``mixdit analyze``: channel- and head-outlier statistics of a capture (spec §4, §7)."""

from ..errors import UsageError


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "analyze", formatter_class=formatter_class,
        help="outlier-channel and head statistics of a capture, with paper-style plots",
        description=(
            "For every captured linear layer: max/median of the per-channel mean |x|, the share\n"
            "of the top 1% magnitudes held by the top 5% channels, and the Jaccard overlap of\n"
            "the top-5% channel sets across classes, seeds and timesteps (J rand: the overlap of\n"
            "random sets). For every attention: the per-head magnitude, its max/min spread and\n"
            "the overlap of the top heads. --plots writes figures like the MixDiT paper's Fig. 3\n"
            "(weight vs activation magnitude) and Fig. 5 (token x channel magnitude maps)."))
    p.add_argument("capture", metavar="F.npz", help="a file written by 'mixdit capture'")
    p.add_argument("--plots", metavar="DIR", help="write PNG figures into DIR")
    p.add_argument("--top", type=float, default=0.05,
                   help="share of channels counted as outlier channels, in (0, 1]")
    p.set_defaults(func=run)


def run(args) -> int:
    import golden.dit.analyze as an

    from ..inputs import load_capture, output_dir

    if not 0 < args.top <= 1:
        raise UsageError(f"--top must be in (0, 1], not {args.top}")
    output_dir(args.plots, "--plots")
    arrays = load_capture(args.capture)
    try:
        layers, heads = an.analyze(arrays, args.top)
    except ValueError as exc:
        raise UsageError(f"{args.capture}: {exc}") from None
    print(an.format_tables(layers, heads, args.top))
    if args.plots:
        try:
            written = an.plot(arrays, args.plots)
        except OSError as exc:
            raise UsageError(f"cannot write plots to {args.plots!r}: {exc.strerror}") from None
        for path in written:
            print(f"wrote    {path}")
    return 0
