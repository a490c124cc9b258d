"""Outlier statistics of captured DiT activations, and the paper's Fig. 3 and Fig. 5 plots.

spec §4 rests on two observations the MixDiT paper makes of DiT-XL (Sec. III-A): large
activation magnitudes concentrate in a few input channels, and those channels (and, in attention,
the large heads) are the same whatever the prompt, so a permutation calibrated offline holds. This
module measures both on a capture (:mod:`golden.dit.capture`).

Per linear layer (``blocks.{b}.{attn.qkv,attn.proj,mlp.fc1,mlp.fc2}``), with ``m[k]`` the mean
``|x|`` of input channel ``k`` over rows and tokens:

- ``max/med``: ``max(m) / median(m)``, how far the largest channel stands out;
- ``top5%ch``: of the entries in the top 1% of ``|x|``, the share that falls in the 5% of
  channels with the largest ``m`` (0.05 when magnitudes are spread evenly);
- ``J cls``, ``J seed``, ``J time``: mean pairwise Jaccard overlap of the top-5% channel sets
  computed separately per class, per seed and per timestep (1: always the same channels);
  ``J rand`` is the expected overlap of random sets of that size.

Per attention (``blocks.{b}.attn``): the per-head magnitude ``(mean |Q| + mean |K|) / 2``, the
spread ``max/min`` over heads, and the Jaccard overlap of the top ``ceil(heads / 4)`` heads across
classes and timesteps. Figures and ``max/med`` are averaged over the captured timesteps.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from pathlib import Path

import numpy as np

__all__ = [
    "LayerStats",
    "HeadStats",
    "channel_means",
    "top_set",
    "jaccard",
    "outlier_share",
    "analyze",
    "format_tables",
    "summarize",
    "format_summary",
    "plot",
]

_KEY = re.compile(
    r"^blocks\.(\d+)\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2|attn\.q|attn\.k|attn\.v)/t(\d+)$"
)
LINEARS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


@dataclasses.dataclass(frozen=True)
class LayerStats:
    """Channel-outlier statistics of one linear layer's input (see the module docstring)."""

    name: str
    channels: int
    max_over_median: float
    top_share: float
    j_class: float | None
    j_seed: float | None
    j_time: float | None
    j_random: float


@dataclasses.dataclass(frozen=True)
class HeadStats:
    """Head-magnitude statistics of one attention layer."""

    name: str
    head_magnitude: tuple[float, ...]
    spread: float
    j_class: float | None
    j_time: float | None


def channel_means(x: np.ndarray) -> np.ndarray:
    """Mean ``|x|`` of every channel (last axis) over all other axes, float64."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    return a.reshape(-1, a.shape[-1]).mean(axis=0)


def top_set(values: np.ndarray, frac: float = 0.05, count: int | None = None) -> frozenset[int]:
    """Indices of the ``count`` (default ``ceil(frac * len(values))``) largest values.

    Ties are broken by the lower index.
    """
    if count is None:
        count = max(1, math.ceil(frac * len(values)))
    order = np.argsort(-np.asarray(values), kind="stable")
    return frozenset(int(i) for i in order[:count])


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    """``|a & b| / |a | b|``."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def mean_pairwise_jaccard(sets: list[frozenset[int]]) -> float | None:
    """Mean Jaccard overlap over all pairs, or None for fewer than two sets."""
    pairs = list(itertools.combinations(sets, 2))
    return float(np.mean([jaccard(a, b) for a, b in pairs])) if pairs else None


def random_jaccard(k: int, n: int) -> float:
    """Expected Jaccard overlap of two random ``k``-subsets of ``n`` items."""
    expected = 0.0
    for i in range(k + 1):
        p = math.comb(k, i) * math.comb(n - k, k - i) / math.comb(n, k)
        expected += p * i / (2 * k - i)
    return expected


def outlier_share(x: np.ndarray, frac_channels: float = 0.05, frac_values: float = 0.01) -> float:
    """Share of the top ``frac_values`` of ``|x|`` lying in the top ``frac_channels`` channels."""
    a = np.abs(np.asarray(x, dtype=np.float64)).reshape(-1, np.shape(x)[-1])
    threshold = np.quantile(a, 1 - frac_values)
    big = a >= threshold
    channels = sorted(top_set(a.mean(axis=0), frac_channels))
    return float(big[:, channels].sum() / big.sum())


def _collect(arrays: dict[str, np.ndarray]) -> dict[tuple[int, str], dict[int, np.ndarray]]:
    groups: dict[tuple[int, str], dict[int, np.ndarray]] = {}
    for key, value in arrays.items():
        match = _KEY.match(key)
        if match:
            block, layer, t = int(match[1]), match[2], int(match[3])
            groups.setdefault((block, layer), {})[t] = value
    return groups


def _conditional_rows(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Indices of the conditional rows (the unconditional half of guidance is left out)."""
    labels = arrays["meta/labels"]
    mask = arrays.get("meta/conditional", np.ones(len(labels), dtype=bool))
    return np.flatnonzero(mask)


def analyze(
    arrays: dict[str, np.ndarray], frac_channels: float = 0.05
) -> tuple[list[LayerStats], list[HeadStats]]:
    """Statistics of every captured linear layer and attention, in block then layer order.

    Raises
    ------
    ValueError
        When ``arrays`` holds no captured layers or lacks ``meta/labels`` and ``meta/seeds``.
    """
    if "meta/labels" not in arrays or "meta/seeds" not in arrays:
        raise ValueError("not a capture: meta/labels and meta/seeds are missing")
    groups = _collect(arrays)
    if not groups:
        raise ValueError("the capture holds no layer activations")
    rows = _conditional_rows(arrays)
    cond_labels, cond_seeds = arrays["meta/labels"][rows], arrays["meta/seeds"][rows]
    by_class = [np.flatnonzero(cond_labels == c) for c in np.unique(cond_labels)]
    by_seed = [np.flatnonzero(cond_seeds == s) for s in np.unique(cond_seeds)]

    layers: list[LayerStats] = []
    heads: list[HeadStats] = []
    for block in sorted({b for b, _ in groups}):
        for layer in LINEARS:
            per_t = groups.get((block, layer))
            if not per_t:
                continue
            xs = [per_t[t][rows] for t in sorted(per_t, reverse=True)]
            k = xs[0].shape[-1]
            ratios, shares, j_cls, j_seed = [], [], [], []
            for x in xs:
                m = channel_means(x)
                ratios.append(m.max() / np.median(m))
                shares.append(outlier_share(x, frac_channels))
                jc = mean_pairwise_jaccard(
                    [top_set(channel_means(x[i]), frac_channels) for i in by_class])
                js = mean_pairwise_jaccard(
                    [top_set(channel_means(x[i]), frac_channels) for i in by_seed])
                if jc is not None:
                    j_cls.append(jc)
                if js is not None:
                    j_seed.append(js)
            j_time = mean_pairwise_jaccard([top_set(channel_means(x), frac_channels) for x in xs])
            count = max(1, math.ceil(frac_channels * k))
            layers.append(LayerStats(
                name=f"blocks.{block}.{layer}", channels=k,
                max_over_median=float(np.mean(ratios)), top_share=float(np.mean(shares)),
                j_class=float(np.mean(j_cls)) if j_cls else None,
                j_seed=float(np.mean(j_seed)) if j_seed else None,
                j_time=j_time, j_random=random_jaccard(count, k),
            ))
        q_t, k_t = groups.get((block, "attn.q")), groups.get((block, "attn.k"))
        if q_t and k_t:
            ts = sorted(q_t, reverse=True)

            def head_mag(sel: np.ndarray | slice, t_list: list[int]) -> np.ndarray:
                q = np.concatenate([np.abs(q_t[t][rows][sel]) for t in t_list])
                kk = np.concatenate([np.abs(k_t[t][rows][sel]) for t in t_list])
                return (q.mean(axis=(0, 2, 3)) + kk.mean(axis=(0, 2, 3))) / 2

            mag = head_mag(slice(None), ts)
            n_top = max(1, math.ceil(len(mag) / 4))
            heads.append(HeadStats(
                name=f"blocks.{block}.attn",
                head_magnitude=tuple(float(v) for v in mag),
                spread=float(mag.max() / mag.min()),
                j_class=mean_pairwise_jaccard(
                    [top_set(head_mag(i, ts), count=n_top) for i in by_class]),
                j_time=mean_pairwise_jaccard(
                    [top_set(head_mag(slice(None), [t]), count=n_top) for t in ts]),
            ))
    return layers, heads


def _fmt(v: float | None, width: int = 7) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width}.2f}"


def format_tables(
    layers: list[LayerStats], heads: list[HeadStats], frac_channels: float = 0.05
) -> str:
    """The statistics as two plain-text tables (``frac_channels`` names the share column)."""
    share = f"top{100 * frac_channels:g}%ch"
    lines = [
        f"{'layer':<22}{'K':>5}{'max/med':>9}{share:>9}{'J cls':>7}{'J seed':>7}"
        f"{'J time':>7}{'J rand':>7}",
    ]
    for s in layers:
        lines.append(
            f"{s.name:<22}{s.channels:>5}{s.max_over_median:>9.2f}{s.top_share:>9.2f}"
            f"{_fmt(s.j_class)}{_fmt(s.j_seed)}{_fmt(s.j_time)}{_fmt(s.j_random)}"
        )
    if heads:
        lines += ["", f"{'attention':<22}{'spread':>7}{'J cls':>7}{'J time':>7}  head magnitude"]
        for h in heads:
            mags = " ".join(f"{v:.2f}" for v in h.head_magnitude)
            lines.append(f"{h.name:<22}{h.spread:>7.2f}{_fmt(h.j_class)}{_fmt(h.j_time)}  {mags}")
    return "\n".join(lines)


def summarize(layers: list[LayerStats], heads: list[HeadStats]) -> dict[str, dict[str, float]]:
    """Per layer kind (``attn.qkv`` ... ``mlp.fc2``, and ``heads``), the figures over blocks.

    Returns ``{kind: {"max/med": mean, "max/med max": largest, "top share": mean,
    "J cls": mean, "J time": mean, "J rand": mean}}``; for ``heads``: ``spread`` (mean and
    largest), ``J cls`` and ``J time``. A figure no block has is NaN.
    """
    def mean(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else math.nan

    out: dict[str, dict[str, float]] = {}
    for kind in LINEARS:
        sel = [s for s in layers if s.name.endswith("." + kind)]
        if sel:
            out[kind] = {
                "max/med": mean([s.max_over_median for s in sel]),
                "max/med max": float(max(s.max_over_median for s in sel)),
                "top share": mean([s.top_share for s in sel]),
                "J cls": mean([s.j_class for s in sel]),
                "J time": mean([s.j_time for s in sel]),
                "J rand": mean([s.j_random for s in sel]),
            }
    if heads:
        out["heads"] = {
            "spread": mean([h.spread for h in heads]),
            "spread max": float(max(h.spread for h in heads)),
            "J cls": mean([h.j_class for h in heads]),
            "J time": mean([h.j_time for h in heads]),
        }
    return out


def format_summary(named: dict[str, dict[str, dict[str, float]]]) -> str:
    """Side-by-side :func:`summarize` results of several captures (keys: their names)."""
    names = list(named)
    lines = ["summary over blocks (mean; 'max' the largest block)",
             f"{'layer kind':<12}{'figure':<13}" + "".join(f"{n:>12}" for n in names)]
    kinds = list(dict.fromkeys(k for summary in named.values() for k in summary))
    for kind in kinds:
        figures = list(dict.fromkeys(f for summary in named.values() for f in summary.get(kind, {})))
        for fig in figures:
            cells = []
            for n in names:
                v = named[n].get(kind, {}).get(fig)
                cells.append(f"{'-':>12}" if v is None or math.isnan(v) else f"{v:>12.2f}")
            lines.append(f"{kind:<12}{fig:<13}" + "".join(cells))
    return "\n".join(lines)


def plot(arrays: dict[str, np.ndarray], out_dir: Path | str) -> list[Path]:
    """Write the paper-style figures for every captured block; returns the files written.

    - ``fig3_block{b}.png`` (like the paper's Fig. 3): per input channel, mean ``|W|`` of the
      weight and mean ``|x|`` of the activation, each divided by its median, for the four linears;
      activation outliers stand out as spikes the weight does not have.
    - ``fig5_block{b}.png`` (like Fig. 5): token x channel maps of ``|x|`` of the four linear
      inputs at the middle captured timestep, one row per class (first seed), showing that the
      bright channels are the same for every class.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = _collect(arrays)
    rows = _conditional_rows(arrays)
    labels, seeds = arrays["meta/labels"][rows], arrays["meta/seeds"][rows]
    written: list[Path] = []
    for block in sorted({b for b, _ in groups}):
        present = [layer for layer in LINEARS if (block, layer) in groups]
        if not present:
            continue
        fig, axes = plt.subplots(len(present), 2, figsize=(10, 2.2 * len(present)), squeeze=False)
        for r, layer in enumerate(present):
            per_t = groups[(block, layer)]
            act = channel_means(np.concatenate([per_t[t][rows].reshape(-1, per_t[t].shape[-1])
                                                for t in per_t]))
            weight = arrays.get(f"blocks.{block}.{layer}/weight")
            panels = [("weight mean |W|", weight), ("activation mean |x|", act)]
            for c, (title, values) in enumerate(panels):
                ax = axes[r, c]
                if values is None:
                    ax.set_axis_off()
                    continue
                ax.bar(np.arange(len(values)), values / np.median(values), width=1.0,
                       color="tab:blue" if c == 0 else "tab:red")
                ax.set_title(f"blocks.{block}.{layer}: {title} / median", fontsize=9)
                ax.set_xlabel("input channel", fontsize=8)
        fig.tight_layout()
        path = out_dir / f"fig3_block{block}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

        ts = sorted(groups[(block, present[0])], reverse=True)
        t_mid = ts[len(ts) // 2]
        classes = list(dict.fromkeys(int(v) for v in labels))[:4]
        first = [int(rows[np.flatnonzero((labels == c) & (seeds == seeds[0]))[0]])
                 for c in classes]
        fig, axes = plt.subplots(len(first), len(present),
                                 figsize=(3.2 * len(present), 2.0 * len(first)), squeeze=False)
        for r, (cls, row) in enumerate(zip(classes, first)):
            for c, layer in enumerate(present):
                ax = axes[r, c]
                ax.imshow(np.abs(groups[(block, layer)][t_mid][row]), aspect="auto", cmap="viridis")
                ax.set_title(f"{layer} class {cls} t={t_mid}", fontsize=8)
                ax.set_xlabel("channel", fontsize=7)
                ax.set_ylabel("token", fontsize=7)
        fig.tight_layout()
        path = out_dir / f"fig5_block{block}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
