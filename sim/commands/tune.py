"""``mixdit tune``: MixDiT's offline hyperparameter search (paper §III-B, Fig. 8; spec §4).

Sweeps (p1, p2), scores each point by ``quality * latency ** alpha`` (quality: the Frechet
distance of :mod:`golden.quality.sampling`; latency: :mod:`golden.perf.accelerator` on the shipped DiT's own GEMM
shapes), picks the minimum and writes it with the reordering tables it implies.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .evaluate import Evaluator, add_common

P1_GRID = (0.0, 0.01, 0.02, 0.05, 0.10, 0.20, 0.50)
P2_GRID = (0.0, 0.20, 0.50)


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "tune", formatter_class=formatter_class,
        help="sweep (p1, p2), score quality * latency^alpha, write the choice and its tables",
        description=(
            "Sweep p1 in {0,1,2,5,10,20,50}% and p2 in {0,20,50}%, sample the shipped DiT under\n"
            "MixDiT at each point (cached), take the Frechet distance as quality and the cycle\n"
            "model's latency of the same DiT's GEMMs, and pick the minimum of\n"
            "quality * latency^alpha (paper §III-B). Writes chosen.json, the reordering tables\n"
            "(tables.npz: per layer and timestep the channel order and MX9 group count, per\n"
            "attention and timestep the MX9 heads) and fig8_tradeoff.png."))
    add_common(p)
    p.add_argument("--alpha", type=float, default=0.15, help="latency exponent of the score")
    p.add_argument("--arrays", type=int, default=1,
                   help="arrays of the latency model (1: the single 16x16 array of the RTL)")
    p.add_argument("--out-dir", default="build/tune", help="chosen.json and tables.npz")
    p.add_argument("--plot-dir", default="build/plots", help="fig8_tradeoff.png ('' for none)")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses
    import json

    import numpy as np

    from ..tables import print_table
    from golden.perf import accelerator, workloads
    from golden.quality import sampling
    from golden.mixdit import linear_formats

    if args.alpha < 0:
        raise UsageError(f"--alpha must be non-negative, not {args.alpha}")
    if args.arrays < 1:
        raise UsageError(f"--arrays must be positive, not {args.arrays}")
    ev = Evaluator(args)
    cfg = dataclasses.replace(accelerator.PAPER_CONFIG, arrays=args.arrays)
    work = workloads.from_dit_config(ev.model.cfg)
    points = []
    for p2 in P2_GRID:
        for p1 in P1_GRID:
            r = ev.run_scheme("mixdit", sampling.mixdit_scheme(p1, p2))
            lat = accelerator.workload_latency(work, accelerator.mixdit(p1, p2), cfg).image_s
            score = r["frechet"] * lat ** args.alpha
            points.append({"p1": p1, "p2": p2, "frechet": r["frechet"],
                           "accuracy": r["accuracy"], "latency_s": lat, "score": score})
    best = min(points, key=lambda q: q["score"])
    print(f"MixDiT sweep on the shipped DiT: {args.samples} samples per point, {args.steps} "
          f"steps, latency of its GEMMs on {args.arrays} array(s) of 16x16 at 500 MHz, "
          f"alpha = {args.alpha}")
    print_table(["p1", "p2", "accuracy", "Frechet", "latency/image us", "score", ""],
                [[f"{q['p1']:.0%}", f"{q['p2']:.0%}", f"{q['accuracy']:.1%}",
                  f"{q['frechet']:.3f}", f"{q['latency_s'] * 1e6:.1f}", f"{q['score']:.4f}",
                  "<- chosen" if q is best else ""] for q in points])

    out = Path(args.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {str(out)!r}: {exc.strerror}") from None
    calib = ev.calib
    tables = {}
    for layer, means in calib.channels.items():
        for step in range(means.shape[0]):
            fm = linear_formats(means.shape[1], best["p1"])
            tables[f"{layer}/s{step}/perm"] = calib.perm(layer, step)
            tables[f"{layer}/s{step}/mx9_groups"] = np.int64(sum(f == "mx9" for f in fm))
    for attn, scores in calib.heads.items():
        for step in range(scores.shape[0]):
            fm = calib.head_formats(attn, step, best["p2"])
            tables[f"{attn}/s{step}/mx9_heads"] = np.array([f == "mx9" for f in fm])
    np.savez(out / "tables.npz", **tables)
    (out / "chosen.json").write_text(json.dumps(
        {"p1": best["p1"], "p2": best["p2"], "alpha": args.alpha, "samples": args.samples,
         "steps": args.steps, "points": points}, indent=1))
    print(f"\nchosen   (p1, p2) = ({best['p1']:.0%}, {best['p2']:.0%})")
    print(f"wrote    {out / 'chosen.json'}, {out / 'tables.npz'} ({len(tables)} table entries)")
    if args.plot_dir:
        print(f"wrote    {_plot(points, best, Path(args.plot_dir))}")
    return 0


def _plot(points, best, out_dir):
    """Fig. 8: quality (Frechet distance) against latency, one line per p2, labelled by p1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {str(out_dir)!r}: {exc.strerror}") from None
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for p2 in P2_GRID:
        pts = [q for q in points if q["p2"] == p2]
        ax.plot([q["latency_s"] * 1e6 for q in pts], [q["frechet"] for q in pts], "o-",
                label=f"p2 = {p2:.0%}")
        for q in pts:
            ax.annotate(f"{q['p1']:.0%}", (q["latency_s"] * 1e6, q["frechet"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    ax.scatter([best["latency_s"] * 1e6], [best["frechet"]], s=160, facecolors="none",
               edgecolors="red", label="chosen (min FD x latency^alpha)")
    ax.set_xlabel("latency per image (us, cycle model)")
    ax.set_ylabel("Frechet distance (lower is better)")
    ax.set_title("Quality-latency trade-off over (p1, p2) (cf. paper Fig. 8)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / "fig8_tradeoff.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
