"""``mixdit evaluate``: image quality of the shipped DiT with every accelerator GEMM quantized.

The paper's Table III (and, with ``--table-i``, Table I) on the project's DiT (spec §7):
FP32, MX9, MX6 W / MX9 A, MX6, MixDiT (p1, p2), INT8, INT6 and FP4, and the published
methods ViDiT-Q (W8A8, W6A6, W4A8, ViDiT-Q-MP W4A8), Q-DiT (W6A6) and HQ-DiT (FP4), scored by the
digit classifier's accuracy and the Frechet distance in its feature space
(:mod:`golden.quality.sampling`).
Results are cached in ``--cache-dir`` keyed by everything that changes them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import UsageError

#: Bump when golden/sampling.py changes what a cached result means.
CACHE_VERSION = 1


def add_common(p) -> None:
    """Flags shared by ``evaluate`` and ``tune``."""
    p.add_argument("--samples", type=int, default=200,
                   help="class-conditional samples per scheme (labels i %% 10, seeds i)")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps (paper §IV: 25)")
    p.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale")
    p.add_argument("--calib-samples", type=int, default=40,
                   help="FP32 samples (other seeds) that calibrate MixDiT's channel orders and "
                        "head scores")
    p.add_argument("--emulation", choices=("fake", "exact"), default="fake",
                   help="MX GEMMs dequantized + float32 matmul (fake), or the bit-exact golden "
                        "GEMM (exact, ~40x slower)")
    p.add_argument("--checkpoint", default=None, help="DiT checkpoint (default: the shipped one)")
    p.add_argument("--batch", type=int, default=100, help="images sampled together")
    p.add_argument("--cache-dir", default="build/cache/quality", help="result cache")


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "evaluate", formatter_class=formatter_class,
        help="quality of the shipped DiT under MX, MixDiT, INT, FP4, ViDiT-Q, Q-DiT and HQ-DiT "
             "(paper Tables I and III)",
        description=(
            "Sample the shipped DiT (DDIM, classifier-free guidance) with every accelerator GEMM\n"
            "quantized and print the classifier accuracy and Frechet distance of each scheme,\n"
            "with the RMS difference of its images from the FP32 images of the same seeds."))
    add_common(p)
    p.add_argument("--p1", type=float, default=None,
                   help="MixDiT p1 (default: the tune result in --tune-dir, else 0.05)")
    p.add_argument("--p2", type=float, default=None,
                   help="MixDiT p2 (default: the tune result in --tune-dir, else 0.20)")
    p.add_argument("--tune-dir", default="build/tune", help="where `mixdit tune` wrote chosen.json")
    p.add_argument("--table-i", action="store_true",
                   help="also the W/A grid {MX9, MX6}^2 of the paper's Table I")
    p.add_argument("--json", metavar="F.json", help="write the table as JSON")
    p.add_argument("--verbose-methods", action="store_true",
                   help="also print Q-DiT's group sizes and HQ-DiT's FP4 formats per layer "
                        "(ViDiT-Q-MP's sensitivity table is always printed)")
    p.set_defaults(func=run)


class Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal, else one line per
    item)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.done, self.label, self.t0 = total, 0, label, time.monotonic()
        self.tty = sys.stderr.isatty()

    def __call__(self, n: int) -> None:
        self.done += n
        el = time.monotonic() - self.t0
        eta = el / self.done * (self.total - self.done) if self.done else 0.0
        width = 30
        fill = int(width * self.done / self.total)
        line = (f"{self.label[:38]:38s} [{'#' * fill}{'.' * (width - fill)}] "
                f"{self.done}/{self.total} {el:5.0f}s eta {eta:4.0f}s")
        if self.tty:
            print("\r" + line, end="" if self.done < self.total else "\n", file=sys.stderr,
                  flush=True)
        elif self.done >= self.total:
            print(line, file=sys.stderr, flush=True)


class Evaluator:
    """Loads the model once, calibrates once, and evaluates schemes through the cache."""

    def __init__(self, args) -> None:
        import hashlib

        import torch

        from golden.dit import CHECKPOINT_PATH, load_model

        for what in ("samples", "steps", "calib_samples", "batch"):
            if getattr(args, what) < 1:
                raise UsageError(f"--{what.replace('_', '-')} must be positive, not "
                                 f"{getattr(args, what)}")
        torch.set_num_threads(1)
        self.args = args
        path = Path(args.checkpoint) if args.checkpoint else CHECKPOINT_PATH
        try:
            self.model = load_model(path)
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(f"cannot load the DiT: {exc} (train it with `make train-dit`)") \
                from None
        self.ckpt = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        self.cache = Path(args.cache_dir)
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {str(self.cache)!r}: {exc.strerror}") from None
        self._calib = None
        self._ref = None
        self._method_calib: dict = {}

    def _key(self, **extra) -> str:
        from golden.quality.sampling import cache_key

        a = self.args
        return cache_key(v=CACHE_VERSION, ckpt=self.ckpt, n=a.samples, steps=a.steps,
                         guidance=a.guidance, calib=a.calib_samples, emu=a.emulation, **extra)

    @property
    def calib(self):
        """MixDiT's calibration, on FP32 samples of seeds 100000 + i (never evaluated)."""
        from golden.quality.sampling import Calibration, cache_key, calibrate

        if self._calib is None:
            a = self.args
            key = cache_key(v=CACHE_VERSION, ckpt=self.ckpt, n=a.calib_samples, steps=a.steps,
                            guidance=a.guidance)
            f = self.cache / f"calib-{key}.npz"
            if f.is_file():
                self._calib = Calibration.load(f)
            else:
                n = a.calib_samples
                labels = [i % self.model.cfg.num_classes for i in range(n)]
                self._calib = calibrate(self.model, labels, [100000 + i for i in range(n)],
                                        a.guidance, a.steps)
                self._calib.save(f)
        return self._calib

    def method_calib(self, scheme):
        """The published methods' calibration (golden.quality.methods), cached per kind."""
        from golden.quality import methods

        if scheme.kind not in self._method_calib:
            a = self.args
            self._method_calib[scheme.kind] = methods.load_or_calibrate(
                self.model, scheme, a.calib_samples, a.guidance, a.steps, self.cache, self.ckpt)
        return self._method_calib[scheme.kind]

    def reference(self):
        """The FP32 images of the evaluation seeds (for the RMS difference)."""
        import numpy as np

        if self._ref is None:
            f = self.cache / f"fp32-images-{self._key()}.npy"
            if not f.is_file():
                self.run_scheme("fp32")
            self._ref = np.load(f)
        return self._ref

    def run_scheme(self, key: str, scheme=None) -> dict:
        """Evaluate one scheme (by its key in SCHEMES / TABLE_I, or given), cached."""
        import dataclasses
        import json

        import numpy as np
        from threadpoolctl import threadpool_limits

        from golden.quality import sampling

        scheme = scheme or {**sampling.SCHEMES, **sampling.TABLE_I}[key]
        method = scheme.kind in sampling.METHOD_KINDS
        extra = {"methods": methods_version()} if method else {}
        f = self.cache / f"eval-{self._key(scheme=dataclasses.asdict(scheme), **extra)}.json"
        if f.is_file():
            return json.loads(f.read_text())
        a = self.args
        ref = None if scheme.kind == "fp32" else self.reference()
        calib = self.method_calib(scheme) if method else self.calib if scheme.is_mixdit else None
        with threadpool_limits(1):
            res, imgs = sampling.evaluate(self.model, scheme, a.samples, calib, a.guidance,
                                         a.steps, ref, a.batch, Progress(a.samples, scheme.name),
                                         a.emulation)
        if scheme.kind == "fp32":
            np.save(self.cache / f"fp32-images-{self._key()}.npy", imgs)
        out = dataclasses.asdict(res) | {"kind": scheme.kind, "w": scheme.w, "a": scheme.a,
                                          "p1": scheme.p1, "p2": scheme.p2, "bits": scheme.bits}
        f.write_text(json.dumps(out, indent=1))
        return out


def methods_version() -> int:
    """The cache version of golden.quality.methods (part of the method rows' cache keys)."""
    from golden.quality.methods import VERSION

    return VERSION


def chosen_p(tune_dir: str) -> "tuple[float, float] | None":
    """The (p1, p2) that ``mixdit tune`` chose, when its result exists."""
    import json

    f = Path(tune_dir) / "chosen.json"
    if not f.is_file():
        return None
    d = json.loads(f.read_text())
    return float(d["p1"]), float(d["p2"])


def print_method_reports(ev, verbose: bool) -> None:
    """The published methods' calibration tables (ViDiT-Q-MP's layer sensitivity; with
    ``verbose`` also Q-DiT's group sizes and HQ-DiT's formats)."""
    from ..tables import print_table
    from golden.quality import methods, sampling

    for scheme in sampling.SCHEMES.values():
        if scheme.kind not in sampling.METHOD_KINDS or (scheme.kind != "vidit-q-mp"
                                                        and not verbose):
            continue
        cal = ev.method_calib(scheme)
        if scheme.name not in cal.plans:   # the rows came from the cache: make the plan again
            sampling.QuantizedDiT(ev.model, scheme, cal)
        for title, headers, rows in methods.report(scheme, cal):
            print(f"\n{title}")
            print_table(headers, rows)


def run(args) -> int:
    import json

    from ..tables import print_table
    from golden.quality import sampling

    chosen = chosen_p(args.tune_dir)
    p1 = args.p1 if args.p1 is not None else (chosen[0] if chosen else 0.05)
    p2 = args.p2 if args.p2 is not None else (chosen[1] if chosen else 0.20)
    for v, name in ((p1, "--p1"), (p2, "--p2")):
        if not 0 <= v <= 1:
            raise UsageError(f"{name} must lie in [0, 1], not {v}")
    ev = Evaluator(args)
    keys = ["fp32", "mx9", "mx6w-mx9a", "mx6", "mixdit", "int8", "int6", "fp4",
            "vidit-q-w8a8", "vidit-q-w6a6", "vidit-q-w4a8", "vidit-q-mp-w4a8", "q-dit-w6a6",
            "hq-dit-w4a4"]
    if args.table_i:
        keys += ["mx9w-mx6a"]
    rows, out = [], []
    for k in keys:
        r = ev.run_scheme(k, sampling.mixdit_scheme(p1, p2) if k == "mixdit" else None)
        out.append(r)
        pp = "-" if r["p1"] is None else f"({r['p1']:.0%}, {r['p2']:.0%})"
        rmse = "-" if r["rmse_vs_fp32"] is None else f"{r['rmse_vs_fp32']:.4f}"
        rows.append([r["scheme"], pp, f"{r['accuracy']:.1%}", f"{r['frechet']:.3f}", rmse])
    print(f"Quality of the shipped DiT ({ev.model.cfg.depth} blocks, hidden "
          f"{ev.model.cfg.hidden_size}), {args.samples} samples per scheme, {args.steps} DDIM "
          f"steps, guidance {args.guidance}, MX GEMMs {args.emulation}"
          f"{' (dequantize + float32 matmul)' if args.emulation == 'fake' else ' (bit-exact)'}")
    print_table(["scheme", "(p1, p2)", "accuracy", "Frechet dist.", "RMS vs FP32"], rows)
    print_method_reports(ev, args.verbose_methods)
    if args.table_i:
        print("\nTable I grid (W / A)")
        grid = {(r["w"], r["a"]): r["frechet"] for r in out if r["kind"] == "mx"
                and r["p1"] is None}
        print_table(["W \\ A", "MX9", "MX6"],
                    [[w.upper()] + [f"{grid[(w, a)]:.3f}" for a in ("mx9", "mx6")]
                     for w in ("mx9", "mx6")])
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(out, indent=1))
        except OSError as exc:
            raise UsageError(f"cannot write {args.json!r}: {exc.strerror}") from None
        print(f"wrote    {args.json}")
    return 0
