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
            "(weight vs activation magnitude) and Fig. 5 (token x channel magnitude maps).\n"
            "Without a file, the shipped fixture capture of --model; --beside prints a summary\n"
            "of each layer kind beside that of other captures (model names or files)."))
    p.add_argument("capture", metavar="F.npz", nargs="?",
                   help="a file written by 'mixdit capture' (default: --model's fixture)")
    p.add_argument("--model", default="digits", choices=("digits", "fashion"),
                   help="whose shipped fixture capture to analyze when no file is given")
    p.add_argument("--beside", nargs="+", metavar="MODEL|F.npz", default=[],
                   help="also summarize these captures (digits, fashion or files) side by side")
    p.add_argument("--plots", metavar="DIR", help="write PNG figures into DIR")
    p.add_argument("--top", type=float, default=0.05,
                   help="share of channels counted as outlier channels, in (0, 1]")
    p.set_defaults(func=run)


def _load(what: str):
    """A capture by model name (its shipped fixture) or file; the arrays and a display name."""
    from golden.dit.capture import FIXTURES

    from ..inputs import load_capture

    path = FIXTURES[what][0] if what in FIXTURES else what
    return load_capture(path), (what if what in FIXTURES else str(path))


def _stats(arrays, name: str, top: float):
    import golden.dit.analyze as an

    try:
        return an.analyze(arrays, top)
    except ValueError as exc:
        raise UsageError(f"{name}: {exc}") from None


def run(args) -> int:
    import golden.dit.analyze as an

    if not 0 < args.top <= 1:
        raise UsageError(f"--top must be in (0, 1], not {args.top}")
    from ..inputs import output_dir

    output_dir(args.plots, "--plots")
    arrays, name = _load(args.capture or args.model)
    layers, heads = _stats(arrays, name, args.top)
    print(f"capture: {name}")
    print(an.format_tables(layers, heads, args.top))
    if args.beside:
        named = {name if len(name) <= 12 else "this": an.summarize(layers, heads)}
        for other in args.beside:
            o_arrays, o_name = _load(other)
            label = o_name if len(o_name) <= 12 else f"beside{len(named)}"
            named[label] = an.summarize(*_stats(o_arrays, o_name, args.top))
        print()
        print(an.format_summary(named))
    if args.plots:
        try:
            written = an.plot(arrays, args.plots)
        except OSError as exc:
            raise UsageError(f"cannot write plots to {args.plots!r}: {exc.strerror}") from None
        for path in written:
            print(f"wrote    {path}")
    return 0
