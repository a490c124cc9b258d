"""``mixdit perf``: peak throughput, per-step and per-image latency, speedup over the RTX 3090.

Reproduces the paper's Table II peak figures and Fig. 11 speedups from the cycle model
(:mod:`golden.perf.accelerator`), the workloads' real GEMM shapes (:mod:`golden.perf.workloads`) and a roofline
model of the GPU (:mod:`golden.perf.gpu`); see spec §3 and §4.
"""

from __future__ import annotations

from ..errors import UsageError

#: The paper's Fig. 11 MixDiT speedups over the RTX 3090 (FP16), and its Table III (p1, p2).
PAPER_SPEEDUP = {"DiT-XL/2-256": 2.10, "DiT-XL/2-512": 2.23, "SD3-medium-1024": 3.70,
                 "PixArt-Sigma-1024": 5.32}
PAPER_P = {"DiT-XL/2-256": (0.0, 0.0), "DiT-XL/2-512": (0.01, 0.0),
           "SD3-medium-1024": (0.05, 0.20), "PixArt-Sigma-1024": (0.01, 0.20)}
#: Table II: peak TOPS in MX9 (given) and in MX6 (four times, from spec §2.2's cycles).
PAPER_PEAK = {("mx9", "mx9"): 262, ("mx6", "mx6"): 1049}


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "perf", formatter_class=formatter_class,
        help="cycle and latency model: peak TOPS, latency per step and image, speedup vs RTX 3090",
        description=(
            "Peak TOPS of the paper's configuration (Table II: 1024 arrays of 16x16 PEs, 500 MHz,\n"
            "936 GB/s, 28 MB on chip), per-step and per-image latency of DiT-XL/2 256 and 512,\n"
            "SD3-medium 1024 and PixArt-Sigma 1024 (25 steps, classifier-free guidance doubling\n"
            "the batch) in MX9, MX6 and the MixDiT mix, and the speedup over an RTX 3090 roofline\n"
            "model beside the paper's Fig. 11. Every GEMM is the larger of its compute time and\n"
            "its off-chip traffic time; host operations (softmax, norms, GELU) are left out on\n"
            "both sides."))
    p.add_argument("--p1", type=float, default=None,
                   help="MixDiT p1 for every model (default: the paper's Table III per model)")
    p.add_argument("--p2", type=float, default=None,
                   help="MixDiT p2 for every model (default: the paper's Table III per model)")
    p.add_argument("--gpu-eff", type=float, default=0.70,
                   help="fraction of the GPU's tensor peak its GEMMs reach")
    p.add_argument("--gpu-mem-eff", type=float, default=0.80,
                   help="fraction of the GPU's 936 GB/s its GEMMs reach")
    p.add_argument("--arrays", type=int, default=1024, help="systolic arrays")
    p.add_argument("--bandwidth", type=float, default=936.0, help="accelerator GB/s")
    p.add_argument("--gemms", metavar="MODEL",
                   help="also print the per-GEMM breakdown of MODEL (e.g. SD3-medium-1024)")
    p.add_argument("--plot-dir", default="build/plots",
                   help="directory for fig11_speedup.png ('' for no plot)")
    p.add_argument("--json", metavar="F.json", help="write every figure as JSON")
    p.set_defaults(func=run)


def _fmt_s(s: float) -> str:
    return f"{s * 1e3:8.2f} ms" if s < 1 else f"{s:8.3f} s "


def run(args) -> int:
    import dataclasses

    from ..inputs import output_dir, output_file
    from ..report import write_json
    from ..tables import print_table
    from golden.perf import accelerator, gpu, workloads

    if not 0 < args.gpu_eff <= 1 or not 0 < args.gpu_mem_eff <= 1:
        raise UsageError(f"--gpu-eff and --gpu-mem-eff must lie in (0, 1], not "
                         f"{args.gpu_eff} and {args.gpu_mem_eff}")
    for name in ("p1", "p2"):
        v = getattr(args, name)
        if v is not None and not 0 <= v <= 1:
            raise UsageError(f"--{name} must lie in [0, 1], not {v}")
    if args.arrays < 1 or args.bandwidth <= 0:
        raise UsageError(f"--arrays and --bandwidth must be positive, not {args.arrays} and "
                         f"{args.bandwidth}")
    json_path = output_file(args.json, "--json")
    plot_dir = output_dir(args.plot_dir, "--plot-dir")
    if args.gemms is not None and args.gemms not in workloads.WORKLOADS:
        raise UsageError(f"unknown model {args.gemms!r}; known: {', '.join(workloads.WORKLOADS)}")
    cfg = dataclasses.replace(accelerator.PAPER_CONFIG, arrays=args.arrays,
                              dram_bytes_per_s=args.bandwidth * 1e9)
    card = dataclasses.replace(gpu.RTX_3090, compute_eff=args.gpu_eff,
                               memory_eff=args.gpu_mem_eff)
    report: dict = {"config": dataclasses.asdict(cfg), "gpu": dataclasses.asdict(card),
                    "cycle_model": accelerator.CYCLE_MODEL}

    print(f"Accelerator: {cfg.arrays} arrays of {cfg.rows}x{cfg.cols} PEs, "
          f"{cfg.freq_hz / 1e6:.0f} MHz, {cfg.dram_bytes_per_s / 1e9:.0f} GB/s, "
          f"{cfg.onchip_bytes / 2**20:.0f} MB on chip (paper Table II)")
    print(f"Cycle model per array: {accelerator.CYCLE_MODEL}")
    rows = []
    for fa, fw in (("mx9", "mx9"), ("mx9", "mx6"), ("mx6", "mx6")):
        tops = accelerator.peak_tops(fa, fw, cfg)
        paper = PAPER_PEAK.get((fa, fw))
        rows.append([f"{fa.upper()} x {fw.upper()}", accelerator.group_cycles(fa, fw), f"{tops:.1f}",
                     "-" if paper is None else str(paper)])
        report.setdefault("peak_tops", {})[f"{fa}x{fw}"] = tops
    print("\nPeak throughput (2 ops per MAC)")
    print_table(["operands", "cycles/group", "TOPS (model)", "TOPS (paper)"], rows)
    print(f"RTX 3090 peaks used: FP16 tensor (FP32 accumulate) {card.fp16_flops / 1e12:.0f} "
          f"TFLOPS, INT8 {card.int8_ops / 1e12:.0f} TOPS, {card.dram_bytes_per_s / 1e9:.0f} GB/s; "
          f"assumed efficiency {card.compute_eff:.0%} compute, {card.memory_eff:.0%} memory")

    results = {}
    lat_rows, speed_rows = [], []
    for name in workloads.WORKLOADS:
        w = workloads.workload(name)
        p1, p2 = PAPER_P[name]
        p1 = p1 if args.p1 is None else args.p1
        p2 = p2 if args.p2 is None else args.p2
        precs = (accelerator.FP_MX9, accelerator.FP_MX6, accelerator.mixdit(p1, p2))
        times = {pr.name: accelerator.workload_latency(w, pr, cfg) for pr in precs}
        g16 = gpu.step_time(w, card, "fp16")
        g8 = gpu.step_time(w, card, "int8")
        mix = times[precs[2].name]
        entry = {"macs_per_step": w.macs_per_step, "weights": w.weight_params,
                 "gpu_fp16_step_s": g16, "gpu_int8_step_s": g8, "steps": w.steps,
                 "accelerator": {k: {"step_s": t.step_s, "image_s": t.image_s,
                                     "compute_s": t.compute_s, "memory_s": t.memory_s,
                                     "effective_tops": t.effective_tops}
                                 for k, t in times.items()},
                 "mixdit": {"p1": p1, "p2": p2}}
        lat_rows.append([name, f"{2 * w.macs_per_step / 1e12:.2f}", "RTX 3090 FP16",
                         _fmt_s(g16), _fmt_s(g16 * w.steps), "-", "-"])
        lat_rows.append(["", "", "RTX 3090 INT8 (W8A8)", _fmt_s(g8), _fmt_s(g8 * w.steps),
                         "-", "-"])
        for k, t in times.items():
            n_mem = sum(gt.bound == "memory" for gt in t.gemms)
            lat_rows.append(["", "", k, _fmt_s(t.step_s), _fmt_s(t.image_s),
                             f"{t.effective_tops:.0f}", f"{n_mem}/{len(t.gemms)}"])
        sp = {k: g16 / t.step_s for k, t in times.items()}
        sp["ViDiT-Q (INT8)"] = g16 / g8
        paper = PAPER_SPEEDUP[name]
        mix_sp = sp[precs[2].name]
        # What reproduces the paper: the share of our modelled accelerator throughput that gives
        # its speedup with this GPU model, and the GPU efficiency that would, with ours fixed.
        acc_share = paper / mix_sp
        gpu_eff = gpu.implied_efficiency(w, mix.image_s * paper, card, "fp16")
        entry.update(speedup=sp, paper_speedup=paper, implied_accelerator_share=acc_share,
                     implied_gpu_eff=gpu_eff)
        speed_rows.append([name, f"({p1:.0%}, {p2:.0%})", f"{sp['MX9']:.2f}", f"{sp['MX6']:.2f}",
                           f"{sp['ViDiT-Q (INT8)']:.2f}", f"{mix_sp:.2f}", f"{paper:.2f}",
                           f"{acc_share:.0%}",
                           f"{gpu_eff:.0%}" if gpu_eff < 4 else ">400%"])
        results[name] = (w, times, sp)
        report.setdefault("workloads", {})[name] = entry

    print("\nLatency (one step = one model evaluation with both guidance rows; one image = "
          "25 steps)")
    print_table(["model", "TFLOP/step", "engine", "per step", "per image", "eff. TOPS",
                 "mem-bound GEMMs"], lat_rows)
    print("\nSpeedup over the RTX 3090 in FP16 (GEMMs only)")
    print_table(["model", "MixDiT (p1, p2)", "MX9", "MX6", "ViDiT-Q INT8", "MixDiT",
                 "paper MixDiT", "acc. share to match", "GPU eff. to match"], speed_rows)
    print("'acc. share to match': the fraction of this model's MixDiT throughput at which the\n"
          "accelerator would give the paper's speedup against this GPU model; 'GPU eff. to\n"
          "match': the GPU compute efficiency at which this accelerator model gives it.")
    sd3 = workloads.workload("SD3-medium-1024")
    eff = gpu.implied_efficiency(sd3, gpu.SD3_MEASURED_S, card)
    report["sd3_measured_implied_gpu_eff"] = eff
    print(f"\nCheck of the GPU model: the paper's measured {gpu.SD3_MEASURED_S} s for one SD3 "
          f"1024x1024 image (§II-A)\nimplies {eff:.0%} of the FP16 tensor peak if all of it were "
          f"GEMM time (model at {card.compute_eff:.0%}: {gpu.image_time(sd3, card):.2f} s).")

    if args.gemms:
        w, times, _ = results[args.gemms]
        t = times[list(times)[2]]
        print(f"\nPer-GEMM breakdown of {args.gemms}, {t.precision.name}, one step")
        rows = []
        for gt in t.gemms:
            g = gt.gemm
            rows.append([g.name, g.kind, f"{g.m}x{g.k}x{g.n}", f"{g.count}x{g.parallel}",
                         f"{gt.compute_s * 1e6:.1f}", f"{gt.memory_s * 1e6:.1f}", gt.bound,
                         f"{gt.utilization:.0%}", f"{gt.largest_operand / 2**20:.1f}"])
        print_table(["GEMM", "kind", "MxKxN", "reps x par", "compute us", "memory us", "bound",
                     "util", "largest operand MB"], rows)

    if plot_dir is not None:
        path = _plot(results, plot_dir)
        print(f"\nwrote    {path}")
    if json_path is not None:
        print(f"wrote    {write_json(json_path, report)}")
    return 0


def _plot(results: dict, out_dir) -> "object":
    """Fig. 11 of the paper: speedup bars per model, the paper's MixDiT figures as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {str(out_dir)!r}: {exc.strerror}") from None
    names = list(results)
    series = ["FP16", "MX9", "MX6", "ViDiT-Q (INT8)", "MixDiT"]
    vals = {s: [] for s in series}
    for name in names:
        _, times, sp = results[name]
        vals["FP16"].append(1.0)
        vals["MX9"].append(sp["MX9"])
        vals["MX6"].append(sp["MX6"])
        vals["ViDiT-Q (INT8)"].append(sp["ViDiT-Q (INT8)"])
        vals["MixDiT"].append(sp[list(times)[2]])
    x = np.arange(len(names))
    width = 0.16
    fig, ax = plt.subplots(figsize=(9, 4.2))
    colors = ["#9e9e9e", "#5b8bd0", "#8cc084", "#e0a458", "#c0392b"]
    for i, (s, c) in enumerate(zip(series, colors)):
        bars = ax.bar(x + (i - 2) * width, vals[s], width, label=s, color=c)
        if s == "MixDiT":
            ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.scatter(x + 2 * width, [PAPER_SPEEDUP[n] for n in names], marker="D", color="black",
               zorder=5, label="paper's MixDiT (Fig. 11)")
    for xi, n in zip(x, names):
        ax.annotate(f"{PAPER_SPEEDUP[n]:.2f}", (xi + 2 * width, PAPER_SPEEDUP[n]),
                    textcoords="offset points", xytext=(6, -3), fontsize=8)
    ax.set_ylim(0, 1.3 * max(max(v) for v in vals.values()))
    ax.set_xticks(x, names)
    ax.set_ylabel("speedup over RTX 3090 FP16")
    ax.set_title("Latency speedup (GEMM roofline model; cf. paper Fig. 11)")
    ax.legend(fontsize=8, ncol=3, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out_dir / "fig11_speedup.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
