"""golden.quality.q_dit: the group-size search, checked against brute force."""

import itertools

import numpy as np
import pytest

from golden.quality import q_dit
from golden.quality.operands import Operands


def brute_force(errors, budget):
    layers = list(errors)
    best = None
    for combo in itertools.product(*[sorted(errors[l]) for l in layers]):
        if sum(combo) < budget * len(layers):
            continue
        e = sum(errors[l][g] for l, g in zip(layers, combo))
        if best is None or e < best[0]:
            best = (e, dict(zip(layers, combo)))
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("budget", [0, 40, 64, 100, 128])
def test_group_search_is_the_constrained_optimum(seed, budget):
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    errors = {f"L{i}": {g: float(rng.uniform(0, 1)) for g in q_dit.GROUP_CANDIDATES}
              for i in range(5)}
    got = q_dit.search_group_sizes(errors, budget)
    e_bf, want = brute_force(errors, budget)
    assert np.mean(list(got.values())) >= budget
    assert sum(errors[l][g] for l, g in got.items()) == pytest.approx(e_bf, abs=1e-12)
    assert got == want                     # continuous random errors: the optimum is unique


def test_group_search_unreachable_budget():
    with pytest.raises(ValueError, match="mean"):
        q_dit.search_group_sizes({"L0": {16: 0.1, 32: 0.2}}, 64)


def reference_layer_error(x, w, g, wb, ab):
    """Group quantization written as a plain loop over groups, float64."""
    def q(m, bits):
        out = np.empty_like(m, dtype=np.float64)
        for r in range(m.shape[0]):
            for c in range(0, m.shape[1], g):
                v = m[r, c:c + g].astype(np.float64)
                lo, hi = min(v.min(), 0.0), max(v.max(), 0.0)
                s = (hi - lo) / (2 ** bits - 1)
                z = np.clip(np.rint(-lo / s), 0, 2 ** bits - 1)
                out[r, c:c + g] = (np.clip(np.rint(v / s) + z, 0, 2 ** bits - 1) - z) * s
        return out
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    y = q(x, ab) @ q(w, wb).T
    return np.sum((y - ref) ** 2) / np.sum(ref ** 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_plan_picks_each_layers_best_candidate_without_a_budget(seed):
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    weights, rows = {}, {}
    for i, k in enumerate((64, 128)):
        x = rng.standard_normal((12, k)) * np.exp(rng.standard_normal(k))
        rows[f"L{i}"] = x.astype(np.float32)
        weights[f"L{i}"] = (rng.standard_normal((8, k)) * np.exp(rng.standard_normal(k))).astype(
            np.float32)
    groups, errors = q_dit.plan(weights, Operands({}, rows), 6, 6, budget=0)
    for name, w in weights.items():
        ref = {g: reference_layer_error(rows[name], w, g, 6, 6)
               for g in q_dit.candidates(w.shape[1])}
        for g, e in ref.items():
            assert errors[name][g] == pytest.approx(e, rel=1e-3)   # float32 vs float64 quantizer
        assert groups[name] == min(ref, key=ref.get)


def test_candidates_divide_k():
    assert q_dit.candidates(128) == [16, 32, 64, 128]
    assert q_dit.candidates(96) == [16, 32]
    with pytest.raises(ValueError):
        q_dit.candidates(8)
