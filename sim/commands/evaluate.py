"""``mixdit evaluate``: fidelity of a shipped DiT with every accelerator GEMM quantized.

The paper's Tables I and III on the project's DiTs (spec §7; ``--model digits|fashion``): FP32,
the W/A grid {MX9, MX6}^2, MixDiT (p1, p2), INT8, INT6, FP4, the OCP MX formats of GPUs and the
published methods ViDiT-Q (W8A8, W6A6, W4A8, ViDiT-Q-MP W4A8), Q-DiT (W6A6) and HQ-DiT (FP4), each
sampled on the same labels and seeds as FP32 and scored by :mod:`golden.quality.fidelity` (PSNR
and SSIM against the FP32 twin, FD vs FP32, FD vs the real test images, label agreement,
accuracy). Results are cached in ``--cache-dir`` keyed by everything that changes them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import UsageError

#: Bump when golden/quality changes what a cached result means.
CACHE_VERSION = 2

#: The columns of ``--json`` rows every consumer may rely on.
JSON_FIELDS = ("model", "scheme", "psnr_db", "ssim", "fd_vs_fp32", "fd_vs_real",
               "label_agreement", "accuracy")


def add_common(p) -> None:
    """Flags shared by ``evaluate`` and ``tune``."""
    p.add_argument("--model", default="digits", choices=("digits", "fashion"),
                   help="which shipped DiT (and its metric classifier and test images)")
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
    p.add_argument("--checkpoint", default=None,
                   help="DiT checkpoint (default: the --model's shipped one)")
    p.add_argument("--classifier", default=None,
                   help="metric classifier (default: the --model's shipped one)")
    p.add_argument("--batch", type=int, default=100, help="images sampled together")
    p.add_argument("--cache-dir", default="build/cache/quality", help="result cache")


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "evaluate", formatter_class=formatter_class,
        help="fidelity of a shipped DiT under MX, MixDiT, INT, FP4, OCP MX, ViDiT-Q, Q-DiT and "
             "HQ-DiT (paper Tables I and III)",
        description=(
            "Sample a shipped DiT (DDIM, classifier-free guidance) with every accelerator GEMM\n"
            "quantized, on the labels and seeds of the FP32 run, and print per scheme: PSNR and\n"
            "SSIM of each image against its FP32 twin (mean and worst), the Frechet distance of\n"
            "the classifier features to the FP32 samples (FD vs FP32) and to the real test\n"
            "images (FD vs real), the share of images labelled as their FP32 twin (label\n"
            "agreement) and as the class asked for (accuracy)."))
    add_common(p)
    p.add_argument("--p1", type=float, default=None,
                   help="MixDiT p1 (default: the tune result in --tune-dir, else 0.05)")
    p.add_argument("--p2", type=float, default=None,
                   help="MixDiT p2 (default: the tune result in --tune-dir, else 0.20)")
    p.add_argument("--tune-dir", default="build/tune",
                   help="where `mixdit tune` wrote chosen.json (the --model's subfolder)")
    p.add_argument("--schemes", default=None, metavar="K1,K2",
                   help="only these scheme keys (default: all; FP32 always runs)")
    p.add_argument("--table-i", action="store_true",
                   help="also print the W/A grid {MX9, MX6}^2 of the paper's Table I")
    p.add_argument("--json", metavar="F.json", help="write the rows as strict JSON")
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
    """Loads the model and its judge once, calibrates once, evaluates schemes through the cache."""

    def __init__(self, args) -> None:
        import hashlib

        import torch

        from golden.dit import load_model
        from golden.dit.data import DatasetMissing
        from golden.dit.metric import load_classifier
        from golden.dit.shipped import shipped
        from golden.quality import sampling
        from golden.quality.fidelity import Judge

        for what in ("samples", "steps", "calib_samples", "batch"):
            if getattr(args, what) < 1:
                raise UsageError(f"--{what.replace('_', '-')} must be positive, not "
                                 f"{getattr(args, what)}")
        if args.samples < 2:
            raise UsageError("--samples must be at least 2 (a Frechet distance needs two)")
        sampling.load_extensions()
        torch.set_num_threads(1)
        self.args = args
        spec = shipped(args.model)
        self.model_name = args.model
        path = Path(args.checkpoint) if args.checkpoint else spec.checkpoint
        try:
            self.model = load_model(path)
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(f"cannot load the DiT: {exc} (train it with "
                             f"`{spec.train_command}`)") from None
        clf_path = Path(args.classifier) if args.classifier else spec.classifier
        try:
            classifier = load_classifier(clf_path)
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(f"cannot load the classifier: {exc}") from None
        try:
            real, _ = spec.test_images()
        except DatasetMissing as exc:
            raise UsageError(str(exc)) from None
        cfg = self.model.cfg
        if real.shape[1:] != (cfg.in_channels, cfg.input_size, cfg.input_size):
            raise UsageError(f"the DiT makes {cfg.in_channels}x{cfg.input_size}x{cfg.input_size}"
                             f" images but --model {args.model}'s are "
                             f"{'x'.join(map(str, real.shape[1:]))}; pick the matching --model")
        self.judge = Judge(classifier, real)
        self.ckpt = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        self.clf = hashlib.sha256(clf_path.read_bytes()).hexdigest()[:16]
        self.clf_path = clf_path
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
        return cache_key(v=CACHE_VERSION, ckpt=self.ckpt, clf=self.clf, n=a.samples,
                         steps=a.steps, guidance=a.guidance, calib=a.calib_samples,
                         emu=a.emulation, **extra)

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
                self.model, scheme, a.calib_samples, a.guidance, a.steps, self.cache, self.ckpt,
                classifier=self.clf_path, clf=self.clf)
        return self._method_calib[scheme.kind]

    def reference(self):
        """The FP32 images of the evaluation labels and seeds, sampled once and cached."""
        import numpy as np

        from golden.quality import sampling

        if self._ref is None:
            a = self.args
            f = self.cache / f"fp32-images-{self._key()}.npy"
            if not f.is_file():
                labels, seeds = sampling.eval_labels(a.samples, self.model.cfg.num_classes)
                imgs = sampling.sample(self.model, sampling.SCHEMES["fp32"], labels, seeds, None,
                                       a.guidance, a.steps, a.batch,
                                       Progress(a.samples, "FP32"))
                np.save(f, imgs)
            self._ref = np.load(f)
        return self._ref

    def run_scheme(self, key: str, scheme=None) -> dict:
        """Evaluate one scheme (by its key in SCHEMES, or given), cached; a JSON-ready row."""
        import dataclasses
        import json

        from threadpoolctl import threadpool_limits

        from golden.quality import sampling
        from golden.quality.fidelity import json_safe

        scheme = scheme or sampling.SCHEMES[key]
        method = scheme.kind in sampling.METHOD_KINDS
        extra = {"methods": methods_version()} if method else {}
        f = self.cache / f"eval-{self._key(scheme=dataclasses.asdict(scheme), **extra)}.json"
        if f.is_file():
            return json.loads(f.read_text())
        a = self.args
        ref = self.reference()
        calib = self.method_calib(scheme) if method else self.calib if scheme.is_mixdit else None
        with threadpool_limits(1):
            if scheme.kind == "fp32":
                labels, _ = sampling.eval_labels(a.samples, self.model.cfg.num_classes)
                res = sampling.EvalResult(scheme.name, self.judge.score(ref, labels, ref))
            else:
                res, _ = sampling.evaluate(self.model, scheme, a.samples, calib, a.guidance,
                                           a.steps, ref, self.judge, a.batch,
                                           Progress(a.samples, scheme.name), a.emulation)
        out = {"model": self.model_name, "key": key, **res.as_dict(), "kind": scheme.kind,
               "w": scheme.w, "a": scheme.a, "p1": scheme.p1, "p2": scheme.p2,
               "quant": scheme.quant, "steps": a.steps, "guidance": a.guidance,
               "emulation": a.emulation}
        out = json_safe(out)
        f.write_text(json.dumps(out, indent=1, allow_nan=False))
        return out


def methods_version() -> int:
    """The cache version of golden.quality.methods (part of the method rows' cache keys)."""
    from golden.quality.methods import VERSION

    return VERSION


def chosen_p(tune_dir: Path) -> "tuple[float, float] | None":
    """The (p1, p2) that ``mixdit tune`` chose, when its result exists."""
    import json

    f = Path(tune_dir) / "chosen.json"
    if not f.is_file():
        return None
    d = json.loads(f.read_text())
    return float(d["p1"]), float(d["p2"])


def _fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None else format(v, spec)


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
    from golden.quality.fidelity import json_safe
    from ..inputs import output_file

    json_path = output_file(args.json, "--json")   # before minutes of sampling, not after
    chosen = chosen_p(Path(args.tune_dir) / args.model)
    p1 = args.p1 if args.p1 is not None else (chosen[0] if chosen else 0.05)
    p2 = args.p2 if args.p2 is not None else (chosen[1] if chosen else 0.20)
    for v, name in ((p1, "--p1"), (p2, "--p2")):
        if not 0 <= v <= 1:
            raise UsageError(f"{name} must lie in [0, 1], not {v}")
    ev = Evaluator(args)
    keys = sampling.evaluate_keys()
    if args.schemes:
        wanted = [k.strip() for k in args.schemes.split(",") if k.strip()]
        unknown = [k for k in wanted if k not in keys]
        if unknown:
            raise UsageError(f"unknown scheme {unknown[0]!r}; choose from {', '.join(keys)}")
        keys = ["fp32"] + [k for k in keys if k in wanted and k != "fp32"]
    rows, out = [], []
    for k in keys:
        r = ev.run_scheme(k, sampling.mixdit_scheme(p1, p2) if k == sampling.MIXDIT else None)
        out.append(r)
        pp = "-" if r["p1"] is None else f"({r['p1']:.0%}, {r['p2']:.0%})"
        rows.append([r["scheme"], pp,
                     _fmt(r["psnr_db"], ".2f", "inf"), _fmt(r["psnr_worst_db"], ".2f", "inf"),
                     _fmt(r["ssim"], ".4f"), _fmt(r["ssim_worst"], ".4f"),
                     _fmt(r["fd_vs_fp32"], ".3f"), _fmt(r["fd_vs_real"], ".3f"),
                     _fmt(r["label_agreement"], ".1%"), _fmt(r["accuracy"], ".1%")])
    cfg = ev.model.cfg
    print(f"Fidelity of the {args.model} DiT ({cfg.depth} blocks, hidden {cfg.hidden_size}, "
          f"{cfg.num_tokens} tokens), {args.samples} samples per scheme, {args.steps} DDIM "
          f"steps, guidance {args.guidance}, MX GEMMs {args.emulation}"
          f"{' (dequantize + float32 matmul)' if args.emulation == 'fake' else ' (bit-exact)'}")
    print_table(["scheme", "(p1, p2)", "PSNR dB", "worst", "SSIM", "worst", "FD vs FP32",
                 "FD vs real", "label agr.", "accuracy"], rows)
    print_method_reports(ev, args.verbose_methods)
    if args.table_i:
        grid = {(r["w"], r["a"]): r for r in out if r["kind"] == "mx" and r["p1"] is None}
        if len(grid) == 4:
            print("\nTable I grid (W / A): FD vs FP32, PSNR dB")
            print_table(["W \\ A", "MX9", "MX6"],
                        [[w.upper()] + [f"{grid[(w, a)]['fd_vs_fp32']:.3f}, "
                                        f"{_fmt(grid[(w, a)]['psnr_db'], '.2f', 'inf')}"
                                        for a in ("mx9", "mx6")] for w in ("mx9", "mx6")])
    if json_path is not None:
        try:
            json_path.write_text(json.dumps(json_safe(out), indent=1, allow_nan=False))
        except OSError as exc:
            raise UsageError(f"cannot write {args.json!r}: {exc.strerror}") from None
        print(f"wrote    {json_path}")
    return 0
