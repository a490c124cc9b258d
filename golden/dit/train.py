"""Train the shipped DiT and its metric classifier from scratch: ``make train-dit``.

spec §7. Steps, all seeded and single-threaded so that a rerun on the same machine reproduces
the files:

1. train the metric classifier (:mod:`golden.dit.metric`) on the training digits and report its
   accuracy on the held-out test digits;
2. train the DiT (:data:`~golden.dit.model.DIGITS_CONFIG`) with the DDPM loss, AdamW, a linear
   warm-up and cosine decay of the learning rate, and labels replaced by the null class 10% of the
   time (classifier-free guidance); an exponential moving average of the weights is what ships;
3. save that average as fp16 safetensors, load it back, sample 50 images per class with 25 DDIM
   steps at guidance 2, and report the classifier's accuracy on them and the Frechet distance of
   their features to the real training images (and, as the floor, of the real test images);
4. write the loss curve, a 10 x 10 grid of samples and a JSON report to ``golden/dit/report/``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CHECKPOINT_PATH, load_model, save_model
from .data import NUM_CLASSES, load_digits_split
from .diffusion import Schedule, ddim_sample
from .metric import (
    CLASSIFIER_PATH,
    accuracy,
    features,
    frechet_distance,
    save_classifier,
    train_classifier,
)
from .model import DIGITS_CONFIG, DiT

__all__ = ["main", "evaluate", "REPORT_DIR"]

#: Where the loss curve, the sample grid and the JSON report go.
REPORT_DIR = Path(__file__).resolve().parent / "report"

#: Guidance scale of the shipped figures.
GUIDANCE = 2.0


def _lr(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def evaluate(
    model: DiT, classifier: torch.nn.Module, real_train: np.ndarray, per_class: int = 50,
    guidance: float = GUIDANCE, seed0: int = 0,
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Sample ``per_class`` images of every class and score them.

    Returns
    -------
    accuracy, frechet, images, labels:
        Classifier accuracy on the samples, their Frechet distance to ``real_train`` in the
        classifier's feature space, and the samples with their labels (class-major order; image
        ``i`` uses seed ``seed0 + i``).
    """
    labels = np.repeat(np.arange(NUM_CLASSES), per_class)
    seeds = list(range(seed0, seed0 + len(labels)))
    images = ddim_sample(model, labels.tolist(), seeds, guidance=guidance).numpy()
    acc = accuracy(classifier, images, labels)
    fd = frechet_distance(features(classifier, images), features(classifier, real_train))
    return acc, fd, images, labels


def _plot(report_dir: Path, losses: list[tuple[int, float]], grid: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, values = zip(*losses)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, values)
    ax.set_xlabel("step")
    ax.set_ylabel("DDPM loss (mean of 50 steps)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.set_title("DiT on 8x8 digits")
    fig.tight_layout()
    fig.savefig(report_dir / "loss_curve.png", dpi=100)
    plt.close(fig)

    rows, cols = grid.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 0.8))
    for r in range(rows):
        for c in range(cols):
            axes[r, c].imshow(grid[r, c, 0], cmap="gray_r", vmin=-1, vmax=1)
            axes[r, c].axis("off")
    fig.suptitle(f"class-conditional DDIM-25 samples, guidance {GUIDANCE} (row = class)")
    fig.tight_layout()
    fig.savefig(report_dir / "samples.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m golden.dit.train``; returns 1 when the target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT_PATH)
    parser.add_argument("--classifier", type=Path, default=CLASSIFIER_PATH)
    parser.add_argument("--report-dir", type=Path, default=REPORT_DIR)
    parser.add_argument("--target", type=float, default=0.80, help="required sample accuracy")
    args = parser.parse_args(argv)

    # Single-threaded: reproducible, and the reference machine shares two cores.
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    start = time.time()
    x_tr, y_tr, x_te, y_te = load_digits_split()

    classifier = train_classifier(x_tr, y_tr, seed=args.seed)
    save_classifier(classifier, args.classifier)
    clf_test_acc = accuracy(classifier, x_te, y_te)
    print(f"classifier: test accuracy {clf_test_acc:.4f} ({time.time() - start:.0f} s)", flush=True)

    model = DiT(DIGITS_CONFIG)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    schedule = Schedule()
    gen = torch.Generator().manual_seed(args.seed)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    losses: list[tuple[int, float]] = []
    window: list[float] = []
    train_start = time.time()
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = _lr(step, args.steps, args.lr, args.warmup)
        idx = torch.randint(0, len(xt), (args.batch,), generator=gen)
        y = yt[idx].clone()
        y[torch.rand(args.batch, generator=gen) < 0.1] = NUM_CLASSES
        loss = schedule.loss(model, xt[idx], y, gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        window.append(loss.item())
        if len(window) == 50:
            losses.append((step + 1, float(np.mean(window))))
            window = []
            if (step + 1) % 500 == 0:
                print(
                    f"step {step + 1}: loss {losses[-1][1]:.4f} "
                    f"({time.time() - train_start:.0f} s)", flush=True,
                )
    if window:
        losses.append((args.steps, float(np.mean(window))))
    train_seconds = time.time() - train_start

    save_model(ema, args.checkpoint)
    shipped = load_model(args.checkpoint)
    acc, fd, images, labels = evaluate(shipped, classifier, x_tr)
    fd_real = frechet_distance(features(classifier, x_te), features(classifier, x_tr))
    total_seconds = time.time() - start
    report = {
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(total_seconds, 1),
        "steps": args.steps,
        "batch": args.batch,
        "final_loss": losses[-1][1],
        "classifier_test_accuracy": clf_test_acc,
        "sample_accuracy": acc,
        "frechet_samples_vs_train": fd,
        "frechet_test_vs_train": fd_real,
        "guidance": GUIDANCE,
        "samples": int(len(labels)),
        "loss_curve": losses,
    }
    save_model(
        ema, args.checkpoint,
        extra={k: json.dumps(v) for k, v in report.items() if k != "loss_curve"},
    )
    args.report_dir.mkdir(parents=True, exist_ok=True)
    (args.report_dir / "train_report.json").write_text(json.dumps(report, indent=1) + "\n")
    grid = images.reshape(NUM_CLASSES, -1, *images.shape[1:])[:, :10]
    _plot(args.report_dir, losses, grid)
    print(
        f"trained {args.steps} steps in {train_seconds:.0f} s; final loss {losses[-1][1]:.4f}; "
        f"sample accuracy {acc:.4f} at guidance {GUIDANCE}; Frechet {fd:.3f} "
        f"(real test vs train {fd_real:.3f})", flush=True,
    )
    if acc < args.target:
        print(f"sample accuracy {acc:.4f} is below the target {args.target}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
