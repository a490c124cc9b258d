"""``mixdit simulate-model``: a whole sampling run with every accelerator GEMM on the RTL, sharded
on a Dask cluster, bit-exact (spec §4-§7)."""

from ..errors import UsageError

_DESCRIPTION = """\
Sample the shipped DiT (DDIM, classifier-free guidance, the MixDiT scheme) with every accelerator
GEMM of every block on the accelerator top's RTL (array, reordering controller and MX converter in
one Verilog netlist), and check each GEMM's FP32 results and each next-layer MX group the top
converts them into bit for bit against the golden model (exit 1 naming the step, GEMM and element
or group word at the first difference). The host
operations (softmax, norms, GELU, adaLN, residuals, the sampler) stay FP32 and compute on the
RTL's results, so the final image is the RTL's; it must equal the image of a golden run bit for
bit. The RTL image, the golden image and the FP32 image are written as PNGs into --out, and
as float32 arrays in images.npz.

The GEMMs run as tasks on a Dask cluster: a linear layer as shards of whole row tiles (tokens:
each next-layer group is one token's), an attention head's Q K^T and P V as one GEMM per image,
each task one run of the top's file-driven harness (Verilator or Icarus); an attention layer's
groups take one more run per image, of all its heads' P V at once. --workers N starts a local cluster of N processes
(default: one per core); --scheduler ADDRESS uses a running one (dask-jobqueue on SLURM/LSF,
see the README). Every finished task is stored under build/tasks by the content of its operands
and of the harness build, so a run that was killed and is started again skips what was done.
MixDiT's calibration (channel orders, head scores) comes from FP32 samples of other seeds and
is cached with `mixdit evaluate`'s."""


def _ints(text: str, option: str) -> list:
    try:
        out = [int(s) for s in text.split(",") if s.strip() != ""]
    except ValueError:
        raise UsageError(f"{option} takes comma-separated integers, not {text!r}") from None
    if not out or any(v < 0 for v in out):
        raise UsageError(f"{option} takes non-negative integers, not {text!r}")
    return out


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "simulate-model", formatter_class=formatter_class,
        help="a whole DiT sampling run on the RTL, sharded on Dask, bit-exact to the image",
        description=_DESCRIPTION)
    p.add_argument("--model", choices=("digits", "fashion"), default="digits",
                   help="which shipped DiT")
    p.add_argument("--checkpoint", metavar="PATH", help="a DiT checkpoint instead of --model's")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps (paper §IV: 25)")
    p.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale")
    p.add_argument("--classes", default="3", metavar="C1,C2",
                   help="class labels, one image each (with --seeds: every class x seed)")
    p.add_argument("--seeds", default="0", metavar="S1,S2", help="noise seeds")
    p.add_argument("--blocks", metavar="B1,B2",
                   help="blocks whose GEMMs run on the RTL (default: all; the others on the "
                        "golden model)")
    p.add_argument("--p1", type=float, default=0.05, help="MixDiT: share of A's channels in MX9")
    p.add_argument("--p2", type=float, default=0.2, help="MixDiT: share of heads in MX9")
    p.add_argument("--calib-samples", type=int, default=8,
                   help="FP32 samples (seeds 100000 + i) that calibrate MixDiT")
    p.add_argument("--sim", default="verilator", metavar="{verilator,icarus}",
                   help="simulator of the harness")
    p.add_argument("--rows", type=int, default=16, help="array rows R")
    p.add_argument("--cols", type=int, default=16, help="array columns C")
    from sim.cluster import add_options

    add_options(p, "the GEMMs (default: a local cluster of one worker per core)",
                "one row shard per worker for a linear GEMM")
    p.add_argument("--cache-dir", default="build/cache/quality",
                   help="where the calibration is cached")
    p.add_argument("--tasks-dir", default="build/tasks", help="the task result cache")
    p.add_argument("--out", default="build/simulate-model", metavar="DIR",
                   help="where rtl.png, golden.png and fp32.png go")
    p.add_argument("--json", metavar="F.json", help="also write the report as JSON")
    p.set_defaults(func=run)


def validate(args) -> dict:
    """Everything that can be checked before work starts; returns the parsed lists."""
    from sim.harness import SIMULATORS, simulator_missing

    from ..inputs import check_fraction, env_ints, output_dir, output_file
    from ..layer import FLIP_ENVS

    output_file(args.json, "--json")
    output_dir(args.out, "--out")
    output_dir(args.tasks_dir, "--tasks-dir")
    output_dir(args.cache_dir, "--cache-dir")
    flips = tuple(env_ints(name, count, fields) for name, count, fields in FLIP_ENVS)
    check_fraction(args.p1, "--p1")
    check_fraction(args.p2, "--p2")
    for opt in ("steps", "calib_samples", "rows", "cols"):
        if getattr(args, opt) < 1:
            raise UsageError(f"--{opt.replace('_', '-')} must be a positive integer, not "
                             f"{getattr(args, opt)}")
    for opt in ("workers", "shards"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise UsageError(f"--{opt} must be a positive integer, not {v}")
    if args.sim not in SIMULATORS:
        raise UsageError(f"unknown simulator {args.sim!r}; valid: {', '.join(SIMULATORS)}")
    missing = simulator_missing(args.sim)
    if missing:
        raise UsageError(missing)
    if args.scheduler is not None:
        from sim.cluster import probe_scheduler

        probe_scheduler(args.scheduler)
    return {"classes": _ints(args.classes, "--classes"), "seeds": _ints(args.seeds, "--seeds"),
            "blocks": None if args.blocks is None else _ints(args.blocks, "--blocks"),
            "flips": flips}


def _calibration(args, model, ckpt_hash: str):
    """MixDiT's calibration for ``args.steps`` steps, through evaluate's cache."""
    from pathlib import Path

    from golden.quality.sampling import Calibration, cache_key, calibrate

    from .evaluate import CACHE_VERSION

    key = cache_key(v=CACHE_VERSION, ckpt=ckpt_hash, n=args.calib_samples, steps=args.steps,
                    guidance=args.guidance)
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    f = cache / f"calib-{key}.npz"
    if f.is_file():
        return Calibration.load(f)
    n = args.calib_samples
    labels = [i % model.cfg.num_classes for i in range(n)]
    cal = calibrate(model, labels, [100000 + i for i in range(n)], args.guidance, args.steps)
    cal.save(f)
    return cal


def format_report(rep: dict) -> str:
    lines = [
        f"model    {rep['model']}: {rep['images']} image(s) (classes {rep['classes']}, seeds "
        f"{rep['seeds']}), {rep['steps']} DDIM steps, guidance {rep['guidance']:g}, MixDiT "
        f"p1={rep['p1']:g} p2={rep['p2']:g}",
        f"cluster  {rep['workers']} worker(s) ({rep['cluster']}); {rep['array']} array under "
        f"{rep['simulator_version']}",
        f"rtl      {rep['gemms']:,} GEMMs on the RTL ({rep['netlist']}; {rep['golden_gemms']:,} "
        f"on golden), {rep['results_checked']:,} FP32 results == golden bit for bit",
        f"groups   {rep['next_layer_groups']['count']:,} next-layer MX groups from the top's "
        "converter == golden bit for bit",
        f"tasks    {rep['tasks']:,} harness runs ({rep['tasks_cached']:,} from the task cache)",
        f"image    RTL image == golden image bit for bit; against FP32: "
        f"{rep['errors_vs_fp32']['sqnr_db']:.2f} dB SQNR, rel. error "
        f"{rep['errors_vs_fp32']['rel_err']:.3e}",
        f"{'':9s}{'layer':22s} {'GEMMs':>6s} {'shards':>6s} {'cycles':>12s} {'util':>6s} "
        f"{'groups':>8s} {'wall s':>7s}",
    ]
    for name, r in rep["layers"].items():
        lines.append(f"{'':9s}{name:22s} {r['gemms']:6d} {r['shards']:6d} {r['cycles']:12,} "
                     f"{r['utilization']:6.1%} {r['groups']:8,} {r['wall_s']:7.1f}")
    lines += [
        f"cycles   {rep['cycles']:,} simulated (the shards' runs, conversion tails included; "
        f"one accelerator running each GEMM whole: {rep['model_cycles']:,} by the cycle model); "
        f"{rep['groups_cycles']:,} more in the attention layers' groups runs",
        f"time     {rep['wall_s']:.1f} s wall (golden and FP32 runs {rep['golden_s']:.1f} s, RTL "
        f"run {rep['rtl_s']:.1f} s: {rep['cycles_per_s']:,.0f} simulated cycles/s on the "
        "cluster)",
    ]
    return "\n".join(lines)


def run(args) -> int:
    import hashlib
    import time
    from pathlib import Path

    import numpy as np
    import torch

    from golden.dit.shipped import shipped
    from sim.cluster import Progress, ShardRunner, connect
    from sim.harness import HarnessError
    from sim.harness.top import build_top
    from sim.layer import array_config, progress
    from sim.model import save_grid, simulate_model
    from sim.report import write_json

    from golden.quality import metrics

    from ..inputs import load_dit

    t0 = time.perf_counter()
    opts = validate(args)
    config = array_config(args.rows, args.cols)
    path = args.checkpoint or str(shipped(args.model).checkpoint)
    model = load_dit(path)
    nblocks = len(model.blocks)
    blocks = opts["blocks"] if opts["blocks"] is not None else list(range(nblocks))
    bad = [b for b in blocks if b >= nblocks]
    if bad:
        raise UsageError(f"--blocks {args.blocks}: the model has blocks 0..{nblocks - 1}")
    bad = [c for c in opts["classes"] if c >= model.cfg.num_classes]
    if bad:
        raise UsageError(f"--classes {args.classes}: the model has classes "
                         f"0..{model.cfg.num_classes - 1}")
    labels = [c for c in opts["classes"] for _ in opts["seeds"]]
    seeds = [s for _ in opts["classes"] for s in opts["seeds"]]
    torch.set_num_threads(1)
    ckpt = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    progress(f"calibrating MixDiT on {args.calib_samples} FP32 samples ({args.steps} steps)")
    calib = _calibration(args, model, ckpt)
    built = {}

    def build(top) -> str:
        try:
            built["b"] = build_top(top, args.sim,
                                   announce=lambda line: progress(f"build: {line}"))
        except HarnessError as exc:
            raise UsageError(str(exc).splitlines()[0]) from None
        return built["b"].directory.name
    with connect(args.workers, args.scheduler) as client:
        workers = len(client.scheduler_info()["workers"])
        if workers == 0:
            raise UsageError(f"the cluster at {args.scheduler!r} has no workers")
        parts = args.shards or workers
        bar = Progress(0, "harness runs")
        runner = ShardRunner(client, config, args.sim, bar, cache=Path(args.tasks_dir).resolve())
        progress(f"golden run, then the RTL run on {workers} worker(s)")
        rep = simulate_model(model, calib, labels=labels, seeds=seeds, steps=args.steps,
                             guidance=args.guidance, p1=args.p1, p2=args.p2, blocks=blocks,
                             config=config, sim=args.sim, runner=runner, parts=parts,
                             build=build, flips=opts["flips"])
        bar.close()
        cluster = "local" if args.scheduler is None else args.scheduler
    images = rep.pop("images")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = [save_grid(out / f"{k}.png", v) for k, v in images.items()]
    np.savez(out / "images.npz", **images)
    written.append(out / "images.npz")
    rep = {
        "model": args.model if args.checkpoint is None else path, "classes": opts["classes"],
        "seeds": opts["seeds"], "images": len(labels), "steps": args.steps,
        "guidance": args.guidance, "p1": args.p1, "p2": args.p2, "blocks": blocks,
        "array": config.name, "sim": args.sim, "simulator_version": built["b"].version,
        "workers": workers, "cluster": cluster,
        "shards_per_gemm": parts, **rep,
        "errors_vs_fp32": metrics.error_report(images["rtl"], images["fp32"]),
        "wall_s": time.perf_counter() - t0,
        "png": [str(p) for p in written],
    }
    print(format_report(rep))
    print(f"wrote    {', '.join(str(p) for p in written)}")
    if args.json:
        print(f"wrote    {write_json(args.json, rep)}")
    return 0
