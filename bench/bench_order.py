"""Does the reordering controller hide behind the array? Sorted vs bank-conflict-free orders (issue 11).

The controller reads a layer's output from ``C`` banks (channel ``n`` in bank ``n mod C``) one
word per bank and cycle, so a group of the consumer's order costs the controller its largest bank
load (:func:`hw.reorder.group_cycles`). Two orders of the consumer's K:

* sorted: ascending mean |x| (the paper's, :func:`golden.mixdit.channel_order`);
* conflict-free: :func:`golden.mixdit.conflict_free_order` for the array's ``C`` columns (every
  group ``ceil(16 / C)`` cycles; the MX9 groups hold every bank class's largest channels).

Tables:

1. The shipped DiT (16 x 16 top, the fixture capture's blocks and timesteps, 32 tokens): per
   producing layer, the array's cycles (:func:`hw.cycles.gemm_cycles`) and the controller's
   (tokens x the schedule's cycles per token) under each order, the top's cycles from the
   pipeline model below, and the consumer layer's output error against FP32 under each order
   (MixDiT, W in MX6; the quality cost of the conflict-free order). fc2's consumer, the next
   block's qkv, is not in the fixture: the same block's qkv stands in for it.
2. DiT-XL/2 at 256 pixels (2 x 256 tokens, one 16 x 16 top, p1 = 5 %): the same cycle figures;
   the consumer orders come from synthetic outlier activations (no DiT-XL/2 capture is shipped).

Pipeline model of the top: the array completes the tokens of tile row ``r`` when it finishes
that row's last column tile; the controller converts tokens in order, token ``t`` from the
cycle it is complete (or the previous token is done) for ``sum(group_cycles)`` cycles; the top
ends :data:`hw.top.TAIL_LATENCY` cycles after the last token. It is what the RTL does when the
array never waits; the RTL's own counts for the shipped DiT are ``mixdit simulate-layer``'s.
"""

import math

import numpy as np

from sim.tables import print_table

_P1 = 0.05
_C = 16


def _order_cycles(order, banks: int = _C) -> list[int]:
    from hw.reorder import group_cycles

    return [group_cycles(order[g:g + 16], banks) for g in range(0, len(order), 16)]


def _top_cycles(m: int, n: int, array: int, per_token: int, config) -> int:
    from hw.cycles import FIXED_OVERHEAD
    from hw.top import TAIL_LATENCY

    rows, cols = config.rows, config.cols
    tile_rows = -(-m // rows)
    col_tiles = -(-n // cols)
    drain = cols + rows + FIXED_OVERHEAD        # fill and drain of the array (hw/cycles.py)
    period = (array - drain) / (tile_rows * col_tiles)
    t_end = 0.0
    for tok in range(m):
        r = tok // rows
        done = drain - rows + period * col_tiles * (r + 1) + (tok % rows) + 1
        t_end = max(t_end, done) + per_token
    return math.ceil(t_end) + TAIL_LATENCY


def _shipped_rows() -> list[list[object]]:
    from golden import mixdit
    from golden.dit.capture import FIXTURE_PATH, load_capture
    from golden.dit.checkpoint import load_model
    from golden.gemm import mx_matmul
    from golden.layer import block_params
    from golden.quality import metrics
    from hw.config import ArrayConfig
    from hw.cycles import gemm_cycles

    config = ArrayConfig()
    acts = load_capture(FIXTURE_PATH)
    model = load_model()
    rows = []
    # fc2 feeds the next block's qkv, which the fixture does not hold: the same block's qkv
    # order and activations stand in for it. qkv feeds attention, whose Q, K, V heads are read
    # in channel order (conflict-free under both).
    pairs = [("attn.qkv", None), ("attn.proj", "mlp.fc1"), ("mlp.fc1", "mlp.fc2"),
             ("mlp.fc2", "attn.qkv")]
    for b in [int(x) for x in acts["meta/blocks"]]:
        params = block_params(model, b)
        for t in [int(x) for x in acts["meta/timesteps"]]:
            for prod, cons in pairs:
                x = acts[f"blocks.{b}.{prod}/t{t}"].reshape(-1, acts[f"blocks.{b}.{prod}/t{t}"]
                                                          .shape[-1])
                w = params.weights[prod]
                m, k, n = x.shape[0], x.shape[1], w.shape[0]
                fmts = mixdit.linear_formats(k, _P1)
                array = gemm_cycles(m, k, n, fmts, "mx6", config)
                if cons is None:
                    per_token = sum(_order_cycles(np.arange(n)))
                    top = _top_cycles(m, n, array, per_token, config)
                    rows.append([f"blocks.{b}.{prod} t={t}", f"{m}x{k}x{n}", array,
                                 m * per_token, top, m * per_token, top, "-", "-", "-"])
                    continue
                xc = acts[f"blocks.{b}.{cons}/t{t}"]
                xc = xc.reshape(-1, xc.shape[-1])
                wc = params.weights[cons]
                mean = mixdit.calibrate(xc)
                ref = (xc.astype(np.float64) @ wc.astype(np.float64).T).astype(np.float32)
                cells = [f"blocks.{b}.{prod} t={t}", f"{m}x{k}x{n}", array]
                errs = []
                for banks in (None, _C):
                    order = mixdit.channel_order(mean, banks)
                    per_token = sum(_order_cycles(order))
                    cells += [m * per_token, _top_cycles(m, n, array, per_token, config)]
                    plan = mixdit.LinearPlan(order, tuple(mixdit.linear_formats(n, _P1)))
                    a, wq = mixdit.quantize_linear(xc, wc, plan)
                    errs.append(metrics.error_report(mx_matmul(a, wq), ref)["rel_err"])
                cells += [f"{errs[0]:.4f}", f"{errs[1]:.4f}", f"{errs[1] / errs[0] - 1:+.1%}"]
                rows.append(cells)
    return rows


def _xl_rows() -> list[list[object]]:
    from golden import mixdit
    from golden.perf.workloads import dit_xl_2
    from golden.synthetic import outlier_activations
    from hw.config import ArrayConfig
    from hw.cycles import gemm_cycles
    from hw.reorder import ReorderConfig
    from hw.top import TopConfig, tail_cycles

    config = ArrayConfig()
    top = TopConfig(config, ReorderConfig(max_channels=4608, max_tokens=512, gated=True))
    gemms = {g.name: g for g in dit_xl_2(256).gemms}
    rows = []
    for name in ("qkv", "proj", "fc1", "fc2"):
        g = gemms[name]
        array = gemm_cycles(g.m, g.k, g.n, mixdit.linear_formats(g.k, _P1), "mx6", config)
        cells = [name, f"{g.m}x{g.k}x{g.n}", array]
        if name == "qkv":                      # Q, K, V heads in channel order: conflict-free
            orders = [np.arange(g.n)] * 2
        else:
            calib, _ = outlier_activations(tokens=64, channels=g.n, seed=1)
            mean = mixdit.calibrate(calib)
            orders = [mixdit.channel_order(mean), mixdit.channel_order(mean, _C)]
        for order in orders:
            per_token = sum(_order_cycles(order))
            cells += [g.m * per_token, _top_cycles(g.m, g.n, array, per_token, config)]
        cells.append(tail_cycles(g.m, g.n // 16, top))
        rows.append(cells)
    return rows


def main() -> None:
    print(f"Shipped DiT on a {_C}x{_C} top (fixture capture; consumer error = the next layer's "
          "MixDiT output against FP32)")
    print_table(["producer", "MxKxN", "array", "ctrl sorted", "top sorted", "ctrl conflict-free",
                 "top conflict-free", "err sorted", "err conflict-free", "error cost"],
                _shipped_rows())
    print(f"\nDiT-XL/2-256 on one {_C}x{_C} top (batch 2, p1 = {_P1:.0%}; synthetic outlier orders)")
    print_table(["layer", "MxKxN", "array", "ctrl sorted", "top sorted", "ctrl conflict-free",
                 "top conflict-free", "tail bound"], _xl_rows())
