"""``mixdit capture``: record the GEMM operands of a DiT while it samples (spec §7)."""

from ..errors import UsageError


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "capture", formatter_class=formatter_class,
        help="sample with a DiT and record its GEMM inputs and per-head Q, K, V to an .npz",
        description=(
            "Run the 25-step DDIM sampler with classifier-free guidance and record, with forward\n"
            "hooks, the inputs of attn.qkv, attn.proj, mlp.fc1, mlp.fc2 and the per-head Q, K, V\n"
            "of the chosen blocks at the chosen timesteps, as float32. Keys are\n"
            "'blocks.{b}.mlp.fc1/t{T}' etc.; see golden/dit/capture.py. Without --checkpoint or\n"
            "--diffusers the shipped digits DiT is used. A diffusers directory (DiT, PixArt or\n"
            "SD3 transformer) is read with local_files_only and run once per timestep on seeded\n"
            "noise; nothing is ever downloaded."))
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", metavar="PATH",
                     help="a .safetensors written by 'make train-dit', or an official DiT .pt")
    src.add_argument("--diffusers", metavar="DIR",
                     help="a local diffusers model directory (or its transformer/ subfolder)")
    p.add_argument("--blocks", type=int, nargs="+",
                   help="block indices; None means the first and the last block")
    p.add_argument("--timesteps", type=int, nargs="+", default=[960, 480, 0],
                   help="diffusion timesteps among those the sampler visits (960, 920, ..., 0)")
    p.add_argument("--classes", type=int, nargs="+", default=[3, 7], help="class labels")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="noise seeds")
    p.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps")
    p.add_argument("--with-uncond", action="store_true",
                   help="also keep the unconditional rows of the guided batch")
    p.add_argument("--out", required=True, metavar="F.npz", help="where to write the capture (.npz is appended when missing)")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from golden.dit import loaders
    from golden.dit.capture import save_capture

    from ..inputs import load_dit, output_file

    if args.steps < 1:
        raise UsageError(f"--steps must be positive, not {args.steps}")
    out = output_file(args.out, "--out", ".npz")
    if args.diffusers:
        try:
            model = loaders.load_diffusers(args.diffusers)
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(f"--diffusers: {exc}") from None
        source = f"diffusers:{os.path.abspath(args.diffusers)}"
    else:
        model = load_dit(args.checkpoint)
        source = os.path.abspath(args.checkpoint) if args.checkpoint else "shipped"
    blocks = args.blocks if args.blocks is not None else [0, loaders.depth_of(model) - 1]
    try:
        arrays = loaders.capture_any(
            model, blocks=blocks, timesteps=args.timesteps, classes=args.classes,
            seeds=args.seeds, guidance=args.guidance, num_steps=args.steps,
            with_uncond=args.with_uncond, source=source)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        save_capture(arrays, out)
    except OSError as exc:
        raise UsageError(f"--out: cannot write {str(out)!r}: {exc.strerror}") from None
    layers = sum(1 for k in arrays if not k.startswith("meta/") and "/t" in k)
    rows = len(arrays["meta/labels"])
    print(f"captured {layers} arrays ({rows} rows, blocks {sorted(set(blocks))}, "
          f"timesteps {[int(t) for t in arrays['meta/timesteps']]}) from {source}")
    print(f"wrote    {out}")
    return 0

