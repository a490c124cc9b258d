"""``mixdit simulate-layer``: a real DiT layer (or block) on the RTL, bit-exact (spec §4-§7)."""

from ..errors import UsageError

_DESCRIPTION = """\
Run one GEMM layer of the shipped DiT (or a whole block with --block) on the accelerator's RTL and
check every result bit for bit against the golden model (exit 1 at the first difference).

Activations are captured now from the checkpoint (classes 3 and 7, seed 0; DDIM-25 with guidance 2)
or read from a capture file (--activations, see 'mixdit capture'). The layer's MixDiT plan is
calibrated on them for the timestep (spec §4): channel order and MX6/MX9 map of A for linear
layers, head-wise formats for attention. Linear layers (attn.qkv, attn.proj, mlp.fc1, mlp.fc2) run
as one GEMM, the bias added on the host in FP32; attention (blocks.N.attn) runs QK^T and
softmax(.)V per image and head, the softmax on the host in FP32. The GEMMs run on the Verilog of
the accelerator top (array, output buffer, reordering controller, MX converter; a file-driven
testbench), which also turns the layer's FP32 output into the next layer's packed A groups,
checked word for word. The report gives the layer's cycles through the top beside the array's,
PE utilization, the share of MX9 groups, and the error against the FP32 layer for MixDiT beside
MX6-only and MX9-only.

--block N runs every GEMM of block N on the RTL, with layer norm, adaLN, softmax, GELU and the
residuals on the host in FP32, and checks the block output bit for bit against the golden run.

--workers N (a local Dask cluster) or --scheduler ADDRESS (a running one) runs each layer as
shards on the cluster: a linear layer by ranges of whole row tiles (tokens) of A, attention by
ranges of images, each shard one run of the top's testbench checked on its worker (results and
next-layer groups, which are per token row, so every shard's are complete). The cycles are then
the shards' sum, each paying its own fill, drain and weight loads. The MIXDIT_TEST_FLIP_* hooks
count GEMMs and words within each shard."""


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "simulate-layer", formatter_class=formatter_class,
        help="run a DiT layer or block on the RTL, bit-exact, with MixDiT vs MX6 vs MX9 errors",
        description=_DESCRIPTION)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", metavar="PATH",
                     help="DiT checkpoint (default: the shipped golden/dit/weights/"
                          "dit_digits.safetensors); activations are captured from it")
    src.add_argument("--activations", metavar="F.npz",
                     help="a capture file instead of capturing now (weights still come from the "
                          "shipped checkpoint)")
    p.add_argument("--model", choices=("digits", "fashion"),
                   help="a shipped DiT by name instead of --checkpoint (fashion: the "
                        "Fashion-MNIST DiT, golden/dit/weights/dit_fashion.safetensors)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--layer", metavar="NAME",
                       help="blocks.N.attn.qkv, blocks.N.attn.proj, blocks.N.mlp.fc1, "
                            "blocks.N.mlp.fc2 or blocks.N.attn")
    where.add_argument("--block", type=int, metavar="N", help="run the whole block N")
    p.add_argument("--timestep", type=int, metavar="T",
                   help="diffusion timestep (default: the middle one available)")
    p.add_argument("--p1", type=float, default=0.05, help="share of A's channels in MX9")
    p.add_argument("--p2", type=float, default=0.2, help="share of attention heads in MX9")
    p.add_argument("--rounding", default="trunc", metavar="{trunc,rne}",
                   help="quantizer rounding (spec §1.1)")
    p.add_argument("--sim", default="verilator", metavar="{verilator,icarus}",
                   help="simulator of the top's testbench")
    p.add_argument("--rows", type=int, default=16, help="array rows R")
    p.add_argument("--cols", type=int, default=16, help="array columns C")
    p.add_argument("--tokens", type=int, metavar="M",
                   help="quick runs: only the first M rows of a linear layer's A, or query tokens "
                        "of each attention head (calibration still sees every activation)")
    p.add_argument("--images", type=int, metavar="I",
                   help="quick runs: attention on the first I images only")
    p.add_argument("--out-channels", type=int, metavar="N",
                   help="quick runs: only the first N output channels of a linear layer (skips "
                        "the next-layer groups)")
    p.add_argument("--no-convert", action="store_true",
                   help="do not convert the output into next-layer groups")
    p.add_argument("--vcd", metavar="F.vcd", help="dump the waves of the layer's run (Verilator: a separate traced build of the "
                        "top, minutes the first time)")
    p.add_argument("--json", metavar="F.json", help="also write the report as JSON")
    from sim.cluster import add_options

    add_options(p, "each layer", "one per worker")
    p.set_defaults(func=run)


def validate(args) -> None:
    """One-line :class:`UsageError` for options that are wrong before anything is loaded."""
    from golden.mx import ROUNDINGS
    from sim.harness import SIMULATORS, simulator_missing

    from ..inputs import check_fraction, output_file

    from ..inputs import env_ints
    from ..layer import FLIP_ENVS

    # Output paths and test hooks first: a bad one is an error now, not after minutes.
    output_file(args.json, "--json")
    output_file(args.vcd, "--vcd")
    for name, count, fields in FLIP_ENVS:
        env_ints(name, count, fields)
    if getattr(args, "model", None) is not None:
        from golden.dit.shipped import shipped

        if args.checkpoint:
            raise UsageError("give --model or --checkpoint, not both")
        args.checkpoint = str(shipped(args.model).checkpoint)
    check_fraction(args.p1, "--p1")
    check_fraction(args.p2, "--p2")
    if args.rounding not in ROUNDINGS:
        raise UsageError(f"unknown rounding {args.rounding!r}; valid: {', '.join(ROUNDINGS)}")
    if args.sim not in SIMULATORS:
        raise UsageError(f"unknown simulator {args.sim!r}; valid: {', '.join(SIMULATORS)}")
    missing = simulator_missing(args.sim)
    if missing:
        other = [s for s in SIMULATORS if s != args.sim and simulator_missing(s) is None]
        raise UsageError(f"{missing}; installed simulators: {', '.join(other) or 'none'}")
    for opt in ("tokens", "images", "out_channels", "workers", "shards"):
        value = getattr(args, opt, None)
        if value is not None and value < 1:
            raise UsageError(f"--{opt.replace('_', '-')} must be a positive integer, not {value}")
    cluster = getattr(args, "workers", None) is not None or getattr(args, "scheduler", None)
    if getattr(args, "shards", None) is not None and not cluster:
        raise UsageError("--shards applies with --workers or --scheduler")
    if cluster and args.vcd:
        raise UsageError("--vcd needs one run of the top; leave out --workers/--scheduler")
    if getattr(args, "scheduler", None):
        from sim.cluster import probe_scheduler

        probe_scheduler(args.scheduler)


def format_layer(rep: dict) -> str:
    """The human-readable report of one layer."""
    lines = [
        f"layer    {rep['layer']} at t={rep['timestep']}: {rep['shape']}",
        f"source   {rep['source']}",
        f"plan     p1={rep['p1']:g} p2={rep['p2']:g} rounding={rep['rounding']}; heads "
        f"{' '.join(h.upper() for h in rep['heads'])}; {rep['mx9_share']:.1%} of A groups in MX9",
        f"rtl      {rep['gemms']} GEMM(s) on the top {rep['netlist']} ({rep['array']} array) "
        f"under {rep['simulator_version']}: {rep['results_checked']:,} FP32 results == golden "
        "bit for bit",
    ]
    tail = ""
    if "skipped" in rep.get("next_layer", {}):
        lines.append(f"convert  skipped: {rep['next_layer']['skipped']}")
    elif "next_layer_groups" in rep:
        nl = rep["next_layer_groups"]
        lines.append(f"convert  {nl['count']:,} next-layer groups for {nl['consumer']} "
                     f"({nl['mx9_share']:.1%} MX9) from the same netlist == golden bit for bit")
        tail = f", reorder/convert tail {rep['tail_cycles']:,} (bound {rep['tail_bound']:,})"
    lines += [
        f"cycles   {rep['cycles']:,} through the top: array {rep['array_cycles']:,} (cycle model "
        f"{rep['model_cycles']:,}){tail}; PE utilization {rep['utilization']:.1%}",
        f"time     {rep['wall_s']:.1f} s wall (simulation {rep['sim_s']:.1f} s, build "
        f"{rep['build_s']:.1f} s)",
        "", format_errors(rep["errors"], "layer output"),
    ]
    return "\n".join(lines)


def format_errors(errors: dict, what: str) -> str:
    """The MixDiT / MX6 / MX9 table against FP32."""
    rows = [f"{'scheme':8s} {'rel_err':>10s} {'SQNR dB':>8s} {'cycles':>10s}   error of the {what} "
            "against FP32"]
    names = {"mixdit": "MixDiT", "mx6": "MX6", "mx9": "MX9"}
    for key, name in names.items():
        e = errors[key]
        rows.append(f"{name:8s} {e['rel_err']:10.3e} {e['sqnr_db']:8.2f} {e['model_cycles']:10,}")
    return "\n".join(rows)


def format_block(rep: dict) -> str:
    """The human-readable report of a whole block."""
    lines = [
        f"block    blocks.{rep['block']} at t={rep['timestep']} on the top {rep['netlist']} "
        f"({rep['array']} array) under {rep['simulator_version']}",
        f"source   {rep['source']}",
        f"plan     p1={rep['p1']:g} p2={rep['p2']:g}; heads "
        f"{' '.join(h.upper() for h in rep['heads'])}",
        f"rtl      {rep['gemms']} GEMMs, {rep['results_checked']:,} FP32 results and "
        f"{rep['next_layer_groups']['count']:,} next-layer groups == golden bit for bit",
        f"{'':9s}{'layer':10s} {'GEMMs':>5s} {'cycles':>10s} {'array':>10s} {'groups':>7s} "
        f"{'util':>6s} {'MX9':>6s} {'sim s':>7s}",
    ]
    for kind, r in rep["layers"].items():
        groups = r.get("next_layer_groups", {}).get("count", 0)
        lines.append(f"{'':9s}{kind:10s} {r['gemms']:5d} {r['cycles']:10,} "
                     f"{r['array_cycles']:10,} {groups:7,} {r['utilization']:6.1%} "
                     f"{r['mx9_share']:6.1%} {r['sim_s']:7.1f}")
    lines += [
        f"cycles   {rep['cycles']:,} through the top: array {rep['array_cycles']:,} (cycle model "
        f"{rep['model_cycles']:,}); PE utilization {rep['utilization']:.1%}",
        f"time     {rep['wall_s']:.1f} s wall (simulation {rep['sim_s']:.1f} s, build "
        f"{rep['build_s']:.1f} s)",
        "", format_errors(rep["errors"], "block output"),
    ]
    return "\n".join(lines)


def run(args) -> int:
    validate(args)
    if args.workers is None and args.scheduler is None:
        return _run(args, None)
    from sim.cluster import connect

    with connect(args.workers, args.scheduler) as client:
        workers = len(client.scheduler_info()["workers"])
        if workers == 0:
            raise UsageError(f"the cluster at {args.scheduler!r} has no workers")
        return _run(args, (client, args.shards or workers))


def _run(args, cluster) -> int:
    from golden.layer import parse_layer
    from sim.report import write_json
    from sim.layer import array_config, load_source, simulate_block, simulate_layer

    config = array_config(args.rows, args.cols)
    if args.block is not None:
        if args.activations:
            raise UsageError("--block captures the block's input now; leave out --activations")
        for opt in ("vcd", "tokens", "images", "out_channels"):
            if getattr(args, opt) is not None:
                raise UsageError(f"--{opt.replace('_', '-')} applies to --layer only, not to "
                                 "--block")
        src, t = load_source(args.checkpoint, None, args.block, args.timestep)
        rep = simulate_block(src, args.block, t, p1=args.p1, p2=args.p2, rounding=args.rounding,
                             config=config, sim=args.sim, cluster=cluster)
        text = format_block(rep)
    else:
        block = args.layer.split(".")[1] if args.layer.count(".") >= 2 else ""
        if not block.isdigit():
            raise UsageError(f"no layer {args.layer!r}; layers are named blocks.N.attn.qkv, "
                             "blocks.N.attn.proj, blocks.N.mlp.fc1, blocks.N.mlp.fc2 and "
                             "blocks.N.attn")
        try:
            parse_layer(args.layer, [int(block)])
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        src, t = load_source(args.checkpoint, args.activations, int(block), args.timestep)
        layer = parse_layer(args.layer, src.blocks)
        rep = simulate_layer(src, layer, t, p1=args.p1, p2=args.p2, rounding=args.rounding,
                             config=config, sim=args.sim, vcd=args.vcd, tokens=args.tokens,
                             images=args.images, out_channels=args.out_channels,
                             convert=not args.no_convert, cluster=cluster)
        text = format_layer(rep)
        if "shards" in rep:
            text += (f"\nshards   {rep['shards']} on {len(cluster[0].scheduler_info()['workers'])} "
                     "worker(s); cycles are the shards' sum")
    print(text)
    if args.json:
        print(f"wrote    {write_json(args.json, rep)}")
    if args.vcd and args.block is None:
        print(f"wrote    {args.vcd} (waves of the first GEMM)")
    return 0
