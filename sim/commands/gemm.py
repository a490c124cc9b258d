"""``mixdit gemm``: run an MX GEMM on the array's RTL and check it bit for bit (spec §3, §6)."""

from ..errors import CheckFailed, UsageError
from ..inputs import load_array, output_file


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "gemm", formatter_class=formatter_class,
        help="run C = A @ W.T on the systolic array's RTL, checked bit for bit against golden",
        description=(
            "Quantize A (float32 [M, K]) and W (float32 [N, K]) per spec §1.1, run the GEMM on\n"
            "the R x C array's RTL through the file-driven harness (Verilator or Icarus), check\n"
            "the RTL's FP32 result against the golden model bit for bit (exit 1 if they differ),\n"
            "write it to C and print the cycles and the PE utilization. With --a-mx9-groups G\n"
            "the last G groups of A's K axis are MX9 (MixDiT's placement, spec §4).\n\n"
            "--workers N (a local Dask cluster) or --scheduler ADDRESS (a running one) cuts the\n"
            "GEMM into shards of whole output-column tiles, one harness run each, run in\n"
            "parallel and put back side by side (the array computes each column tile alone, so\n"
            "the bits are the same; each shard pays its own fill and drain). Finished shards\n"
            "are cached under build/tasks by content, so a rerun skips them."))
    p.add_argument("--a", required=True, metavar="A.npy", help="activations, float [M, K]")
    p.add_argument("--w", required=True, metavar="W.npy", help="weights, float [N, K]")
    p.add_argument("--out", required=True, metavar="C.npy",
                   help="RTL result, float32 [M, N] (.npy is appended when missing)")
    p.add_argument("--a-fmt", choices=("mx6", "mx9"), default="mx6", help="format of A's groups")
    p.add_argument("--a-mx9-groups", type=int, default=0, metavar="G",
                   help="put the last G groups of A in MX9 (the rest in --a-fmt)")
    p.add_argument("--w-fmt", choices=("mx6", "mx9"), default="mx6", help="format of W's groups")
    p.add_argument("--rounding", choices=("trunc", "rne"), default="trunc",
                   help="element rounding of the quantizer (spec §1.1)")
    p.add_argument("--sim", default="verilator", metavar="{verilator,icarus}",
                   help="simulator of the harness")
    p.add_argument("--rows", type=int, default=16, help="array rows R")
    p.add_argument("--cols", type=int, default=16, help="array columns C")
    p.add_argument("--waves", "--vcd", dest="waves", metavar="F.fst",
                   help="dump waves: FST for F.fst, VCD for F.vcd (Verilator: from a separate "
                        "build with tracing on, cached like the plain one; --vcd is the old name)")
    from sim.cluster import add_options

    add_options(p, "the GEMM's output columns", "4 per worker")
    p.add_argument("--tasks-dir", default="build/tasks", help="the shard result cache")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses
    import sys
    import threading
    import time

    import numpy as np

    from golden import gemm, mx
    from golden.formats import GROUP_SIZE
    from hw.config import ArrayConfig
    from hw.cycles import gemm_cycles, no_overlap_cycles, tile_cycles, tiles
    from sim.harness import HarnessError, run_gemm, simulator_missing

    missing = simulator_missing(args.sim)
    if missing:
        raise UsageError(missing)
    try:
        config = dataclasses.replace(ArrayConfig(), rows=args.rows, cols=args.cols)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = output_file(args.out, "--out", ".npy")
    waves = output_file(args.waves, "--waves")
    cluster = args.workers is not None or args.scheduler is not None
    for opt in ("workers", "shards"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise UsageError(f"--{opt} must be a positive integer, not {v}")
    if cluster and waves is not None:
        raise UsageError("--waves needs one harness run; leave out --workers/--scheduler")
    if args.shards is not None and not cluster:
        raise UsageError("--shards applies with --workers or --scheduler")
    if args.scheduler is not None:
        from sim.cluster import probe_scheduler

        probe_scheduler(args.scheduler)
    # NaN and Inf are allowed (NaN groups, spec §1.1), a tensor with no finite value is not.
    x = load_array(args.a, "A", ndim=2, finite="some")
    y = load_array(args.w, "W", ndim=2, finite="some")
    m, k = x.shape
    n = y.shape[0]
    if y.shape[1] != k:
        raise UsageError(f"K differs: A is {list(x.shape)}, W is {list(y.shape)}; both need "
                         "[*, K] with the same K")
    kg = -(-k // GROUP_SIZE)
    if not 0 <= args.a_mx9_groups <= kg:
        raise UsageError(f"--a-mx9-groups must lie in [0, {kg}] (K = {k} has {kg} groups), not "
                         f"{args.a_mx9_groups}")
    a_fmts = [args.a_fmt] * (kg - args.a_mx9_groups) + ["mx9"] * args.a_mx9_groups
    if m > config.max_m or n > config.max_n or kg > config.max_groups:
        raise UsageError(f"GEMM {m}x{k}x{n} exceeds the array's limits (M <= {config.max_m}, "
                         f"N <= {config.max_n}, K <= {16 * config.max_groups})")

    a = mx.quantize(x, a_fmts, args.rounding)
    w = mx.quantize(y, args.w_fmt, args.rounding)
    expect = gemm_cycles(m, k, n, a_fmts, args.w_fmt, config)
    print(f"gemm     {m} x {k} x {n} on a {config.rows} x {config.cols} array under {args.sim}: "
          f"{tiles(m, n, config)} tiles, about {expect:,} cycles", flush=True)
    t0 = time.perf_counter()
    done = threading.Event()

    def heartbeat() -> None:
        # A progress line every 20 s on long runs (build, then simulation).
        while not done.wait(20.0):
            print(f"...      {time.perf_counter() - t0:.0f} s elapsed", file=sys.stderr, flush=True)

    threading.Thread(target=heartbeat, daemon=True).start()
    try:
        if cluster:
            res, parts = _sharded(args, a, w, config)
            expect = sum(gemm_cycles(m, k, s.n1 - s.n0, a_fmts, args.w_fmt, config)
                         for s, _ in parts)
        else:
            res = run_gemm(a, w, config, sim=args.sim,
                           waves=None if waves is None else str(waves),
                           announce=lambda line: print(f"build    {line}", flush=True))
    except (HarnessError, ValueError) as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    finally:
        done.set()
    ref = gemm.mx_matmul(a, w)
    wall = time.perf_counter() - t0
    diff = res.c.view(np.uint32) != ref.view(np.uint32)
    if diff.any():
        i, j = map(int, np.argwhere(diff)[0])
        raise CheckFailed(f"RTL and golden differ in {int(diff.sum())} of {diff.size} results; "
                          f"first C[{i}, {j}]: RTL 0x{int(res.c.view(np.uint32)[i, j]):08x}, "
                          f"golden 0x{int(ref.view(np.uint32)[i, j]):08x}")
    try:
        np.save(out, res.c)
    except OSError as exc:
        raise UsageError(f"--out: cannot write {str(out)!r}: {exc.strerror}") from None
    busy = tiles(m, n, config) * tile_cycles(k, a_fmts, args.w_fmt, config)
    anchor = no_overlap_cycles(m, k, n, a_fmts, args.w_fmt, config)
    print(f"check    RTL == golden bit for bit ({m * n:,} results)")
    if cluster:
        one = gemm_cycles(m, k, n, a_fmts, args.w_fmt, config)
        print(f"shards   {len(parts)} column shards on {res.workers} worker(s), "
              f"{sum(r.cached for _, r in parts)} from the task cache; one unsharded run would "
              f"take {one:,} cycles")
    print(f"cycles   {res.cycles:,} (model {expect:,}); without overlapped drain {anchor:,}")
    print(f"util     {busy / res.cycles:.1%} of PE cycles busy (no-overlap anchor "
          f"{busy / anchor:.1%})")
    if cluster:
        print(f"time     {wall:.1f} s (build {res.build_s:.1f} s, cluster {res.sim_s:.1f} s: "
              f"{res.cycles / max(res.sim_s, 1e-9):,.0f} simulated cycles per wall second)")
    else:
        print(f"time     {wall:.1f} s (build {res.build_s:.1f} s, simulation {res.sim_s:.1f} s: "
              f"{res.cycles / max(res.sim_s, 1e-9):,.0f} simulated cycles per second of "
              "simulation)")
    print(f"wrote    {out}")
    if waves is not None:
        print(f"wrote    {waves}")
    if res.cycles != expect:
        print(f"note     measured cycles differ from the model by {res.cycles - expect}",
              file=sys.stderr)
    return 0


def _sharded(args, a, w, config):
    """The GEMM as column shards on a Dask cluster: a result shaped like the harness's (its
    ``cycles`` the shards' sum, ``sim_s`` the cluster's wall time) and the shards."""
    import time
    from pathlib import Path
    from types import SimpleNamespace

    from sim import harness
    from sim.cluster import Progress, ShardRunner, connect, sharded_gemm

    b = harness.build(config, args.sim, announce=lambda line: print(f"build    {line}", flush=True))
    with connect(args.workers, args.scheduler) as client:
        workers = len(client.scheduler_info()["workers"])
        if workers == 0:
            raise UsageError(f"the cluster at {args.scheduler!r} has no workers")
        runner = ShardRunner(client, config, args.sim, Progress(0, "shards"),
                             cache=Path(args.tasks_dir).resolve())
        t0 = time.perf_counter()
        c, parts = sharded_gemm(runner, a, w, args.shards or 4 * workers, b.directory.name)
        sim_s = time.perf_counter() - t0
    res = SimpleNamespace(c=c, cycles=sum(r.cycles for _, r in parts), sim_s=sim_s,
                          build_s=b.build_s, workers=workers)
    return res, parts
