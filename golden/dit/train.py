"""Train a shipped DiT and its metric classifier from scratch: ``make train-dit`` (digits) and
``make train-dit-fashion`` (``python -m golden.dit.train --dataset fashion``).

spec §7. Steps, all seeded and on a fixed number of threads (:attr:`Recipe.threads`) so that a
rerun on the same machine reproduces the files:

1. train the metric classifier (:mod:`golden.dit.metric`) on the training images and report its
   accuracy on the held-out test images;
2. train the DiT (:data:`RECIPES`) with the DDPM loss, AdamW, a linear warm-up and cosine decay of
   the learning rate, and labels replaced by the null class 10% of the time (classifier-free
   guidance); an exponential moving average of the weights is what ships;
3. save that average as fp16 safetensors, load it back, sample 50 images per class with 25 DDIM
   steps at guidance 2, and report the classifier's accuracy on them and the Frechet distance of
   their features to the real images (and, as the floor, that of real held-out images);
4. write the loss curve, a 10 x 10 grid of samples and a JSON report to the report directory.

Resuming: every ``--save-every`` steps the whole training state (weights, average, optimizer,
random generator, loss record) is written atomically to ``--state`` (by default
``build/train-<dataset>/state.pt``). Run the same command again after an interruption and it
continues from there; the result is bit for bit that of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CHECKPOINT_PATH, FASHION_CHECKPOINT_PATH, load_model, save_model
from .data import NUM_CLASSES, load_split
from .diffusion import Schedule, ddim_sample
from .metric import (
    CLASSIFIER_PATH,
    FASHION_CLASSIFIER_PATH,
    accuracy,
    features,
    frechet_distance,
    load_classifier,
    save_classifier,
    train_classifier,
    train_fashion_classifier,
)
from .model import DIGITS_CONFIG, FASHION_CONFIG, DiT, DiTConfig

__all__ = ["main", "evaluate", "Recipe", "RECIPES", "REPORT_DIR", "FASHION_REPORT_DIR"]

_HERE = Path(__file__).resolve().parent
#: Where the digits model's loss curve, sample grid and JSON report go.
REPORT_DIR = _HERE / "report"
#: The same for the Fashion-MNIST model.
FASHION_REPORT_DIR = _HERE / "report" / "fashion"

#: Guidance scale of the shipped figures.
GUIDANCE = 2.0


@dataclass(frozen=True)
class Recipe:
    """Everything ``make train-dit[-fashion]`` does by default for one data set."""

    dataset: str
    config: DiTConfig
    steps: int
    batch: int
    lr: float
    warmup: int
    ema: float
    checkpoint: Path
    classifier: Path
    report_dir: Path
    #: Required accuracy of the samples (the run exits 1 below it).
    target: float
    #: Epochs of the metric classifier.
    classifier_epochs: int
    title: str
    #: Torch threads; a run is reproducible for a given count, not across counts.
    threads: int = 1


RECIPES: dict[str, Recipe] = {
    "digits": Recipe(
        "digits", DIGITS_CONFIG, steps=4000, batch=128, lr=6e-4, warmup=200, ema=0.999,
        checkpoint=CHECKPOINT_PATH, classifier=CLASSIFIER_PATH, report_dir=REPORT_DIR,
        target=0.80, classifier_epochs=60, title="DiT on 8x8 digits",
    ),
    # Sized for one core of the reference machine: about 0.9 CPU seconds per batch-128 step, 3,000
    # steps (6.4 epochs) in about 45 CPU minutes (issue 13). One thread: on a loaded machine two
    # threads spent 7x the CPU time per step spinning at barriers. 900 steps of batch 64 (one
    # epoch) gave samples no classifier could tell apart (10.8% accuracy).
    "fashion": Recipe(
        "fashion", FASHION_CONFIG, steps=3000, batch=128, lr=8e-4, warmup=200, ema=0.999,
        checkpoint=FASHION_CHECKPOINT_PATH, classifier=FASHION_CLASSIFIER_PATH,
        report_dir=FASHION_REPORT_DIR, target=0.70, classifier_epochs=4,
        title="DiT on Fashion-MNIST (32x32, patch 4)",
    ),
}


def _lr(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def evaluate(
    model: DiT, classifier: torch.nn.Module, real: np.ndarray, per_class: int = 50,
    guidance: float = GUIDANCE, seed0: int = 0, batch: int = 250,
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Sample ``per_class`` images of every class and score them.

    Returns
    -------
    accuracy, frechet, images, labels:
        Classifier accuracy on the samples, their Frechet distance to ``real`` in the
        classifier's feature space, and the samples with their labels (class-major order; image
        ``i`` uses seed ``seed0 + i``).
    """
    labels = np.repeat(np.arange(NUM_CLASSES), per_class)
    seeds = list(range(seed0, seed0 + len(labels)))
    images = np.concatenate([
        ddim_sample(model, labels[i:i + batch].tolist(), seeds[i:i + batch],
                    guidance=guidance).numpy()
        for i in range(0, len(labels), batch)
    ])
    acc = accuracy(classifier, images, labels)
    fd = frechet_distance(features(classifier, images), features(classifier, real))
    return acc, fd, images, labels


def _plot(report_dir: Path, losses: list[tuple[int, float]], grid: np.ndarray, title: str) -> None:
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
    ax.set_title(title)
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


def _save_state(path: Path, state: dict) -> None:
    """Write the training state atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _fingerprint(args: argparse.Namespace, cfg: DiTConfig) -> dict:
    """What must match for a saved state to be resumed."""
    return {
        "dataset": args.dataset, "config": dataclasses.asdict(cfg), "steps": args.steps,
        "batch": args.batch, "lr": args.lr, "warmup": args.warmup, "ema": args.ema,
        "seed": args.seed, "train_subset": args.train_subset, "threads": args.threads,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train a DiT and its metric classifier (spec §7); resumable.",
    )
    parser.add_argument("--dataset", choices=sorted(RECIPES), default="digits")
    parser.add_argument("--steps", type=int, help="training steps (recipe default)")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--ema", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, help="override the recipe's hidden size")
    parser.add_argument("--depth", type=int, help="override the recipe's depth")
    parser.add_argument("--heads", type=int, help="override the recipe's head count")
    parser.add_argument("--train-subset", type=int, default=0,
                        help="train on the first N training images only (tests)")
    parser.add_argument("--classifier-epochs", type=int)
    parser.add_argument("--per-class", type=int, default=50, help="samples per class scored")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--classifier", type=Path)
    parser.add_argument("--report-dir", type=Path)
    parser.add_argument("--state", type=Path,
                        help="resumable training state (default build/train-<dataset>/state.pt)")
    parser.add_argument("--save-every", type=int, default=100, help="steps between states")
    parser.add_argument("--stop-after", type=int, default=0,
                        help="stop (state saved) after this many steps in total; 0: run to the end")
    parser.add_argument("--target", type=float, help="required sample accuracy")
    parser.add_argument("--threads", type=int, help="torch threads (recipe default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m golden.dit.train``; returns 1 when the target is missed."""
    args = _parser().parse_args(argv)
    recipe = RECIPES[args.dataset]
    for field in ("steps", "batch", "lr", "warmup", "ema", "checkpoint", "classifier",
                  "report_dir", "target", "classifier_epochs", "threads"):
        if getattr(args, field) is None:
            setattr(args, field, getattr(recipe, field))
    overrides = {k: v for k, v in (("hidden_size", args.hidden), ("depth", args.depth),
                                   ("num_heads", args.heads)) if v is not None}
    cfg = dataclasses.replace(recipe.config, **overrides)
    if args.state is None:
        args.state = Path("build") / f"train-{args.dataset}" / "state.pt"

    # The classifier trains on one thread, the DiT on a fixed count (--threads, one by default):
    # reproducible.
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    start = time.time()
    x_tr, y_tr, x_te, y_te = load_split(args.dataset)
    if args.train_subset:
        x_tr, y_tr = x_tr[: args.train_subset], y_tr[: args.train_subset]

    fingerprint = _fingerprint(args, cfg)
    state = None
    if args.state.is_file():
        state = torch.load(args.state, weights_only=False)
        if state["fingerprint"] != fingerprint:
            print(f"{args.state}: saved for other settings; starting afresh", flush=True)
            state = None
        else:
            print(f"resuming from {args.state} at step {state['step']}", flush=True)

    # The classifier depends only on the data, the seed and its epochs: it is kept beside the
    # state and reused by any later run with those settings.
    state_clf = args.state.with_name(
        f"classifier-{args.dataset}-s{args.seed}-e{args.classifier_epochs}"
        f"-n{args.train_subset}.safetensors")
    if not state_clf.is_file():
        if args.dataset == "fashion":
            classifier = train_fashion_classifier(
                x_tr, y_tr, epochs=args.classifier_epochs, seed=args.seed,
                progress=lambda m: print(f"{m} ({time.time() - start:.0f} s)", flush=True),
            )
        else:
            classifier = train_classifier(x_tr, y_tr, epochs=args.classifier_epochs,
                                          seed=args.seed)
        save_classifier(classifier, state_clf)
    classifier = load_classifier(state_clf)
    # Training the classifier draws from the global generator only to initialise it (after
    # seeding it); replay that, so that the DiT's initialisation below is the same whether the
    # classifier was trained a moment ago or loaded.
    torch.manual_seed(args.seed)
    type(classifier)()
    torch.set_num_threads(args.threads)
    save_classifier(classifier, args.classifier)
    clf_test_acc = accuracy(classifier, x_te, y_te)
    print(f"classifier: test accuracy {clf_test_acc:.4f} ({time.time() - start:.0f} s)", flush=True)

    model = DiT(cfg)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed)
    losses: list[tuple[int, float]] = []
    window: list[float] = []
    first, train_seconds = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        losses, window = state["losses"], state["window"]
        first, train_seconds = state["step"], state["train_seconds"]
    schedule = Schedule()
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    last = args.steps if not args.stop_after else min(args.steps, args.stop_after)
    session_start = time.time()

    def snapshot(step: int) -> None:
        _save_state(args.state, {
            "fingerprint": fingerprint, "step": step, "model": model.state_dict(),
            "ema": ema.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
            "losses": losses, "window": window,
            "train_seconds": train_seconds + time.time() - session_start,
        })

    for step in range(first, last):
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
            if (step + 1) % 100 == 0:
                elapsed = train_seconds + time.time() - session_start
                print(f"step {step + 1}/{args.steps}: loss {losses[-1][1]:.4f} "
                      f"({elapsed:.0f} s)", flush=True)
        if (step + 1) % args.save_every == 0 or step + 1 == last:
            snapshot(step + 1)
    if last < args.steps:
        print(f"stopped at step {last} of {args.steps}; state in {args.state}; run the same "
              "command again to resume", flush=True)
        return 0
    if window:
        losses.append((args.steps, float(np.mean(window))))
        window = []
    train_seconds += time.time() - session_start

    save_model(ema, args.checkpoint)
    shipped = load_model(args.checkpoint)
    # The digits are scored against their (larger) training split, as shipped; Fashion-MNIST
    # against its 10,000 test images, with 10,000 training images as the real-vs-real floor.
    if args.dataset == "fashion":
        real, floor = x_te, x_tr[:10_000]
    else:
        real, floor = x_tr, x_te
    acc, fd, images, labels = evaluate(shipped, classifier, real, per_class=args.per_class)
    fd_real = frechet_distance(features(classifier, floor), features(classifier, real))
    ref = "test" if args.dataset == "fashion" else "train"
    other = "train" if args.dataset == "fashion" else "test"
    total_seconds = time.time() - start
    report = {
        "dataset": args.dataset,
        "config": dataclasses.asdict(cfg),
        "parameters": sum(p.numel() for p in shipped.parameters()),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(total_seconds, 1),
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "threads": args.threads,
        "final_loss": losses[-1][1],
        "classifier_test_accuracy": clf_test_acc,
        "sample_accuracy": acc,
        f"frechet_samples_vs_{ref}": fd,
        f"frechet_{other}_vs_{ref}": fd_real,
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
    _plot(args.report_dir, losses, grid, recipe.title)
    print(
        f"trained {args.steps} steps in {train_seconds:.0f} s; final loss {losses[-1][1]:.4f}; "
        f"sample accuracy {acc:.4f} at guidance {GUIDANCE}; Frechet to {ref} {fd:.3f} "
        f"(real {other} vs {ref} {fd_real:.3f})", flush=True,
    )
    if acc < args.target:
        print(f"sample accuracy {acc:.4f} is below the target {args.target}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
