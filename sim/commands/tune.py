"""``mixdit tune``: MixDiT's offline hyperparameter search (paper §III-B, Fig. 8; spec §4).

Sweeps (p1, p2), scores each point by ``quality * latency ** alpha`` (quality: by default the
Frechet distance of the MixDiT samples to the FP32 samples of the same seeds, FD vs FP32 of
:mod:`golden.quality.fidelity`; latency: :mod:`golden.perf.accelerator` on the DiT's own GEMM
shapes), picks the minimum and writes it with the reordering tables it implies.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .evaluate import Evaluator, add_common

P1_GRID = (0.0, 0.01, 0.02, 0.05, 0.10, 0.20, 0.50)
P2_GRID = (0.0, 0.20, 0.50)

#: Quality figures ``--metric`` may score with (lower is better), as functions of a result row.
METRICS = {
    "fd_vs_fp32": ("FD vs FP32", lambda r: r["fd_vs_fp32"]),
    "fd_vs_real": ("FD vs real", lambda r: r["fd_vs_real"]),
    "ssim_loss": ("1 - SSIM vs FP32", lambda r: 1.0 - r["ssim"]),
    "label_disagreement": ("label disagreement", lambda r: 1.0 - r["label_agreement"]),
}


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "tune", formatter_class=formatter_class,
        help="sweep (p1, p2), score quality * latency^alpha, write the choice and its tables",
        description=(
            "Sweep p1 in {0,1,2,5,10,20,50}% and p2 in {0,20,50}%, sample the shipped DiT under\n"
            "MixDiT at each point (cached), take --metric as quality (default: the Frechet\n"
            "distance to the FP32 samples of the same seeds) and the cycle model's latency of\n"
            "the same DiT's GEMMs, and pick the minimum of quality * latency^alpha (paper\n"
            "§III-B). Writes <out-dir>/<model>/chosen.json, the reordering tables\n"
            "(tables.npz: per layer and timestep the channel order and MX9 group count, per\n"
            "attention and timestep the MX9 heads) and fig8_tradeoff_<model>.png."))
    add_common(p)
    p.add_argument("--alpha", type=float, default=0.15, help="latency exponent of the score")
    p.add_argument("--metric", choices=sorted(METRICS), default="fd_vs_fp32",
                   help="quality figure of the score (lower is better)")
    p.add_argument("--arrays", type=int, default=1,
                   help="arrays of the latency model (1: the single 16x16 array of the RTL)")
    p.add_argument("--out-dir", default="build/tune",
                   help="chosen.json and tables.npz go to its <model> subfolder")
    p.add_argument("--plot-dir", default="build/plots",
                   help="where fig8_tradeoff_<model>.png goes ('' for none)")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses
    import json

    import numpy as np

    from ..tables import print_table
    from golden.perf import accelerator, workloads
    from golden.quality import sampling
    from golden.mixdit import linear_formats
    from golden.quality.fidelity import json_safe

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
            quality = METRICS[args.metric][1](r)
            points.append({"p1": p1, "p2": p2, "quality": quality, "metric": args.metric,
                           "fd_vs_fp32": r["fd_vs_fp32"], "fd_vs_real": r["fd_vs_real"],
                           "psnr_db": r["psnr_db"], "ssim": r["ssim"],
                           "label_agreement": r["label_agreement"], "accuracy": r["accuracy"],
                           "latency_s": lat, "score": quality * lat ** args.alpha})
    best = min(points, key=lambda q: q["score"])
    label = METRICS[args.metric][0]
    print(f"MixDiT sweep on the {args.model} DiT: {args.samples} samples per point, "
          f"{args.steps} steps, quality {label}, latency of its GEMMs on {args.arrays} array(s) "
          f"of 16x16 at 500 MHz, alpha = {args.alpha}")
    print_table(["p1", "p2", label, "PSNR dB", "label agr.", "accuracy", "latency/image us",
                 "score", ""],
                [[f"{q['p1']:.0%}", f"{q['p2']:.0%}", f"{q['quality']:.4f}",
                  "inf" if q["psnr_db"] is None else f"{q['psnr_db']:.2f}",
                  f"{q['label_agreement']:.1%}", f"{q['accuracy']:.1%}",
                  f"{q['latency_s'] * 1e6:.1f}", f"{q['score']:.4f}",
                  "<- chosen" if q is best else ""] for q in points])

    out = Path(args.out_dir) / args.model
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
    (out / "chosen.json").write_text(json.dumps(json_safe(
        {"model": args.model, "p1": best["p1"], "p2": best["p2"], "alpha": args.alpha,
         "metric": args.metric, "samples": args.samples, "steps": args.steps,
         "points": points}), indent=1, allow_nan=False))
    print(f"\nchosen   (p1, p2) = ({best['p1']:.0%}, {best['p2']:.0%})")
    print(f"wrote    {out / 'chosen.json'}, {out / 'tables.npz'} ({len(tables)} table entries)")
    if args.plot_dir:
        print(f"wrote    {_plot(points, best, Path(args.plot_dir), label, args.model)}")
    return 0


def _plot(points, best, out_dir, label, model):
    """Fig. 8: quality and PSNR against latency, one line per p2, each point labelled by p1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {str(out_dir)!r}: {exc.strerror}") from None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = ((axes[0], "quality", f"{label} (lower is better)"),
              (axes[1], "psnr_db", "PSNR vs FP32, dB (higher is better)"))
    for ax, field, ylabel in panels:
        for p2 in P2_GRID:
            pts = [q for q in points if q["p2"] == p2 and q[field] is not None]
            ax.plot([q["latency_s"] * 1e6 for q in pts], [q[field] for q in pts], "o-",
                    label=f"p2 = {p2:.0%}")
            for q in pts:
                ax.annotate(f"{q['p1']:.0%}", (q["latency_s"] * 1e6, q[field]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        if best[field] is not None:
            ax.scatter([best["latency_s"] * 1e6], [best[field]], s=160, facecolors="none",
                       edgecolors="red", label="chosen (min quality x latency^alpha)")
        ax.set_xlabel("latency per image (us, cycle model)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{model} DiT: quality-latency trade-off over (p1, p2), labels p1 "
                 "(cf. paper Fig. 8)")
    fig.tight_layout()
    path = out_dir / f"fig8_tradeoff_{model}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
