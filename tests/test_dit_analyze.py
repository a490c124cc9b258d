"""Tests of golden/dit/analyze.py on synthetic captures with known outlier structure."""

import itertools
import math

import numpy as np
import pytest

from golden.dit.analyze import (
    analyze,
    format_tables,
    jaccard,
    outlier_share,
    plot,
    random_jaccard,
    top_set,
)

K, TOKENS, HEADS = 64, 8, 4


def _capture(consistent: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Two classes x two seeds, three timesteps; outlier channels shared or drawn per row."""
    rng = np.random.default_rng(seed)
    classes, seeds, steps = [0, 1], [0, 1], [960, 480, 0]
    labels = np.array([c for c in classes for _ in seeds])
    row_seeds = np.array([s for _ in classes for s in seeds])
    arrays: dict[str, np.ndarray] = {
        "meta/labels": labels, "meta/seeds": row_seeds,
        "meta/timesteps": np.array(steps), "meta/conditional": np.ones(4, bool),
    }
    fixed = np.array([3, 40, 41, 60])
    for t in steps:
        x = rng.normal(size=(4, TOKENS, K)).astype(np.float32)
        for r in range(4):
            chans = fixed if consistent else rng.choice(K, 4, replace=False)
            x[r, :, chans] *= 30
        arrays[f"blocks.0.mlp.fc1/t{t}"] = x
        q = rng.normal(size=(4, HEADS, TOKENS, 16)).astype(np.float32)
        q[:, 2] *= 5 if consistent else 1
        arrays[f"blocks.0.attn.q/t{t}"] = q
        arrays[f"blocks.0.attn.k/t{t}"] = q.copy()
    arrays["blocks.0.mlp.fc1/weight"] = np.abs(rng.normal(size=K)).astype(np.float32)
    return arrays


def test_helpers():
    assert top_set(np.array([1.0, 5.0, 3.0, 4.0]), 0.5) == frozenset({1, 3})
    assert jaccard(frozenset({1, 2}), frozenset({2, 3})) == pytest.approx(1 / 3)
    x = np.ones((10, 100))
    x[0, 7] = 50.0
    assert outlier_share(x, 0.01, 0.001) == 1.0


def test_random_jaccard_matches_enumeration():
    n, k = 7, 3
    subsets = [frozenset(s) for s in itertools.combinations(range(n), k)]
    exact = np.mean([jaccard(a, b) for a in subsets for b in subsets])
    assert random_jaccard(k, n) == pytest.approx(exact)


def test_consistent_outliers_give_full_overlap():
    layers, heads = analyze(_capture(consistent=True))
    (fc1,) = layers
    assert fc1.name == "blocks.0.mlp.fc1" and fc1.channels == K
    # ceil(0.05 * 64) = 4 top channels: exactly the planted ones, everywhere
    assert fc1.j_class == fc1.j_seed == fc1.j_time == 1.0
    assert fc1.top_share > 0.9 and fc1.max_over_median > 10
    assert fc1.j_random == pytest.approx(random_jaccard(math.ceil(0.05 * K), K))
    (attn,) = heads
    assert attn.spread > 4 and attn.j_class == attn.j_time == 1.0
    assert int(np.argmax(attn.head_magnitude)) == 2


def test_inconsistent_outliers_give_low_overlap():
    layers, heads = analyze(_capture(consistent=False))
    (fc1,) = layers
    assert fc1.j_class < 0.5 and fc1.j_seed < 0.5 and fc1.j_time < 0.5
    assert heads[0].spread < 1.2


def test_table_and_plots(tmp_path):
    arrays = _capture(consistent=True)
    text = format_tables(*analyze(arrays))
    assert "blocks.0.mlp.fc1" in text and "blocks.0.attn" in text
    written = plot(arrays, tmp_path)
    assert [p.name for p in written] == ["fig3_block0.png", "fig5_block0.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_not_a_capture_is_rejected():
    with pytest.raises(ValueError, match="not a capture"):
        analyze({"a": np.zeros(3)})
    with pytest.raises(ValueError, match="no layer"):
        analyze({"meta/labels": np.zeros(1), "meta/seeds": np.zeros(1)})
