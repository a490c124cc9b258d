"""GEMM shapes of one denoising step of the paper's four workloads (paper §IV, Fig. 11).

Each workload is the list of GEMMs the accelerator runs for one model evaluation with
classifier-free guidance (the conditional and the unconditional rows in one batch of 2, paper §IV:
guidance scale 4.0 for DiT-XL, 5.0 for SD3; PixArt-Sigma uses guidance too). A GEMM is
``M x K x N`` with ``K`` the reduction axis, repeated ``count`` times (heads times batch, or the
layer's repetition over blocks).

Kinds (spec §4):

- ``"linear"``: weight-activation GEMMs (QKV, projections, FFN, adaLN, embedders). Under MixDiT
  the last ``ceil(p1 * K / 16)`` groups of A are MX9 and W is MX6.
- ``"attention"``: activation-activation GEMMs (Q K^T and P V of one head). Under MixDiT the top
  ``ceil(p2 * heads)`` heads run with MX9 operands, the others with MX6.

Softmax, layer norm, GELU, adaLN modulation and residual adds are host operations (spec §4) and
do not appear here.

Architectural numbers and their sources
---------------------------------------
The numbers are those of the public model configurations, quoted from the project engineers'
knowledge of them (the checkpoints themselves were not available offline to re-read):

- DiT-XL/2 (Peebles and Xie, ICCV 2023, Table 1 and ``models.py`` of facebookresearch/DiT):
  depth 28, hidden 1152, 16 heads (head dim 72), patch 2, MLP ratio 4, 4 latent channels, learned
  sigma (8 output channels); 256x256 images are 32x32 latents (256 tokens), 512x512 are 64x64
  latents (1024 tokens). Per block an adaLN-Zero ``Linear(1152, 6 * 1152)`` on the conditioning
  vector; the final layer has ``Linear(1152, 2 * 1152)`` adaLN and ``Linear(1152, 2 * 2 * 8)``.
  The same shapes are in :data:`golden.dit.DIT_XL_2_256`.
- PixArt-Sigma XL/2 1024 (Chen et al., ECCV 2024; ``PixArt-Sigma-XL-2-1024-MS`` config): depth 28,
  hidden 1152, 16 heads, patch 2, MLP ratio 4, 4 latent channels, learned sigma; 128x128 latents
  (4096 tokens); cross-attention to T5-XXL caption tokens (4096 wide, at most 300 tokens) projected
  to 1152 by ``caption_projection`` (``Linear(4096, 1152)``, GELU, ``Linear(1152, 1152)``); adaLN
  *single*: one ``t_block`` ``Linear(1152, 6 * 1152)`` per model evaluation, per-block
  modulation is a learned table (no GEMM). Each block: self-attention (``qkv``, ``proj``),
  cross-attention (``q_linear`` on image tokens, ``kv_linear`` on the 300 caption tokens,
  ``proj``), MLP. KV token compression is off in the 1024 model (it is used for 4K).
  Diffusers runs the 300-token caption padded, with a mask, so all 300 are computed.
- SD3-medium (Esser et al., ICML 2024; ``stabilityai/stable-diffusion-3-medium`` transformer
  config): MMDiT with 24 joint blocks, 24 heads of 64 (hidden 1536), patch 2, 16 latent channels;
  128x128 latents (4096 image tokens); 154 text tokens (77 CLIP + 77 T5, the reference
  implementation's lengths) embedded by ``context_embedder`` ``Linear(4096, 1536)``. Each block
  has separate weights for the image and the text stream: adaLN-Zero ``Linear(1536, 6 * 1536)``
  each, Q, K, V projections ``1536 -> 1536`` each, output projections, and a GELU MLP
  ``1536 -> 6144 -> 1536``; attention is joint over the 4250 concatenated tokens. The last block
  is ``context_pre_only``: its text stream has a ``Linear(1536, 2 * 1536)`` adaLN and only the K,
  V (and Q) projections, no text output projection and no text MLP. Time and pooled-text
  embedders: ``256 -> 1536 -> 1536`` and ``2048 -> 1536 -> 1536``; output ``Linear(1536, 2 * 1536)``
  adaLN and ``Linear(1536, 2 * 2 * 16)``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Gemm", "Workload", "dit_xl_2", "pixart_sigma_1024", "sd3_medium_1024", "WORKLOADS",
           "workload", "from_dit_config"]

#: Sampler steps of the paper's evaluation (paper §IV).
STEPS = 25
#: Batch rows per model evaluation: classifier-free guidance runs the conditional and the
#: unconditional input together (paper §IV; batch size 1 image).
CFG_BATCH = 2


@dataclass(frozen=True)
class Gemm:
    """One GEMM shape of a model evaluation, ``[M, K] x [K, N]``, repeated ``count`` times.

    Attributes
    ----------
    name : str
        Layer name (``"qkv"``, ``"qk"``), for tables.
    kind : str
        ``"linear"`` or ``"attention"`` (see the module docstring).
    m, k, n : int
        Rows of A (tokens), reduction length, columns of the result (output channels).
    count : int
        Repetitions that run one after the other (the blocks of the model).
    parallel : int
        Independent instances within one repetition that may run side by side (batch rows times
        heads for attention; 1 for linears, whose batch rows are already stacked in ``m``).
    heads : int
        For attention, the heads per layer (the unit that p2 selects); 0 for linears.
    a_in_dram, out_in_dram : bool
        Whether A is read from and the result written to off-chip memory. Attention keeps the
        score matrix on chip (Q K^T's result and P V's A), as a fused attention kernel does on a
        GPU; the perf model charges both sides the same way.
    """

    name: str
    kind: str
    m: int
    k: int
    n: int
    count: int = 1
    parallel: int = 1
    heads: int = 0
    a_in_dram: bool = True
    out_in_dram: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "attention"):
            raise ValueError(f"GEMM kind must be 'linear' or 'attention', not {self.kind!r}")
        if min(self.m, self.k, self.n, self.count, self.parallel) < 1:
            raise ValueError(f"GEMM {self.name}: sizes must be positive, got m={self.m} "
                             f"k={self.k} n={self.n} count={self.count} parallel={self.parallel}")
        if self.kind == "attention" and (self.heads < 1 or self.parallel % self.heads):
            raise ValueError(f"Attention GEMM {self.name}: parallel {self.parallel} must be a "
                             f"multiple of heads {self.heads}")

    @property
    def instances(self) -> int:
        """All instances of the GEMM in one model evaluation."""
        return self.count * self.parallel

    @property
    def macs(self) -> int:
        """Multiply-accumulates of all instances."""
        return self.m * self.k * self.n * self.instances


@dataclass(frozen=True)
class Workload:
    """The GEMMs of one model evaluation (one sampler step) of a model at one resolution.

    Attributes
    ----------
    name : str
        ``"DiT-XL/2-256"`` and so on, as the paper's Fig. 11 labels them.
    gemms : tuple of Gemm
        In execution order within one step.
    steps : int
        Sampler steps per image (25, paper §IV).
    source : str
        Where the architecture comes from (see the module docstring).
    """

    name: str
    gemms: tuple[Gemm, ...]
    steps: int = STEPS
    source: str = ""

    @property
    def macs_per_step(self) -> int:
        """Multiply-accumulates of one model evaluation."""
        return sum(g.macs for g in self.gemms)

    @property
    def weight_params(self) -> int:
        """Weight elements the linear GEMMs read once per step (``K * N`` per layer instance)."""
        return sum(g.k * g.n * g.instances for g in self.gemms if g.kind == "linear")


def _attention(prefix: str, q_tokens: int, kv_tokens: int, head_dim: int, heads: int,
               layers: int, batch: int) -> list[Gemm]:
    """Q K^T and P V of ``heads`` heads in ``layers`` layers for ``batch`` rows."""
    par = batch * heads
    return [Gemm(f"{prefix}qk", "attention", q_tokens, head_dim, kv_tokens, layers, par, heads,
                 out_in_dram=False),
            Gemm(f"{prefix}pv", "attention", q_tokens, kv_tokens, head_dim, layers, par, heads,
                 a_in_dram=False)]


def dit_xl_2(resolution: int, batch: int = CFG_BATCH) -> Workload:
    """DiT-XL/2 at 256 or 512 pixels (latent side ``resolution / 8``, patch 2)."""
    if resolution not in (256, 512):
        raise ValueError(f"DiT-XL/2 exists at 256 and 512 pixels, not {resolution}")
    depth, h, heads, mlp = 28, 1152, 16, 4 * 1152
    t = (resolution // 8 // 2) ** 2
    m = batch * t
    gemms = [
        Gemm("patch_embed", "linear", m, 4 * 2 * 2, h),
        Gemm("t_embed.fc1", "linear", batch, 256, h),
        Gemm("t_embed.fc2", "linear", batch, h, h),
        Gemm("adaLN", "linear", batch, h, 6 * h, depth),
        Gemm("qkv", "linear", m, h, 3 * h, depth),
        *_attention("", t, t, h // heads, heads, depth, batch),
        Gemm("proj", "linear", m, h, h, depth),
        Gemm("fc1", "linear", m, h, mlp, depth),
        Gemm("fc2", "linear", m, mlp, h, depth),
        Gemm("final.adaLN", "linear", batch, h, 2 * h),
        Gemm("final.linear", "linear", m, h, 2 * 2 * 8),
    ]
    return Workload(f"DiT-XL/2-{resolution}", tuple(gemms),
                    source="DiT-XL/2 (Peebles and Xie 2023, facebookresearch/DiT models.py)")


def pixart_sigma_1024(batch: int = CFG_BATCH, text_tokens: int = 300) -> Workload:
    """PixArt-Sigma XL/2 at 1024 pixels: 4096 image tokens, cross-attention to T5 tokens."""
    depth, h, heads, mlp = 28, 1152, 16, 4 * 1152
    t = (1024 // 8 // 2) ** 2
    m, mt = batch * t, batch * text_tokens
    gemms = [
        Gemm("patch_embed", "linear", m, 4 * 2 * 2, h),
        Gemm("t_embed.fc1", "linear", batch, 256, h),
        Gemm("t_embed.fc2", "linear", batch, h, h),
        Gemm("t_block", "linear", batch, h, 6 * h),
        Gemm("caption.fc1", "linear", mt, 4096, h),
        Gemm("caption.fc2", "linear", mt, h, h),
        Gemm("qkv", "linear", m, h, 3 * h, depth),
        *_attention("self.", t, t, h // heads, heads, depth, batch),
        Gemm("proj", "linear", m, h, h, depth),
        Gemm("cross.q", "linear", m, h, h, depth),
        Gemm("cross.kv", "linear", mt, h, 2 * h, depth),
        *_attention("cross.", t, text_tokens, h // heads, heads, depth, batch),
        Gemm("cross.proj", "linear", m, h, h, depth),
        Gemm("fc1", "linear", m, h, mlp, depth),
        Gemm("fc2", "linear", m, mlp, h, depth),
        Gemm("final.linear", "linear", m, h, 2 * 2 * 8),
    ]
    return Workload("PixArt-Sigma-1024", tuple(gemms),
                    source="PixArt-Sigma-XL-2-1024-MS (Chen et al. 2024), T5 300 tokens")


def sd3_medium_1024(batch: int = CFG_BATCH, text_tokens: int = 154) -> Workload:
    """SD3-medium at 1024 pixels: MMDiT, 4096 image and 154 text tokens in joint attention."""
    depth, h, heads, mlp = 24, 1536, 24, 4 * 1536
    t = (1024 // 8 // 2) ** 2
    m, mt = batch * t, batch * text_tokens
    full = depth - 1          # blocks whose text stream has an output projection and an MLP
    gemms = [
        Gemm("patch_embed", "linear", m, 16 * 2 * 2, h),
        Gemm("t_embed.fc1", "linear", batch, 256, h),
        Gemm("t_embed.fc2", "linear", batch, h, h),
        Gemm("pooled.fc1", "linear", batch, 2048, h),
        Gemm("pooled.fc2", "linear", batch, h, h),
        Gemm("context_embed", "linear", mt, 4096, h),
        Gemm("adaLN.x", "linear", batch, h, 6 * h, depth),
        Gemm("adaLN.ctx", "linear", batch, h, 6 * h, full),
        Gemm("adaLN.ctx.last", "linear", batch, h, 2 * h),
        Gemm("qkv.x", "linear", m, h, 3 * h, depth),
        Gemm("qkv.ctx", "linear", mt, h, 3 * h, depth),
        *_attention("joint.", t + text_tokens, t + text_tokens, h // heads, heads, depth, batch),
        Gemm("proj.x", "linear", m, h, h, depth),
        Gemm("proj.ctx", "linear", mt, h, h, full),
        Gemm("fc1.x", "linear", m, h, mlp, depth),
        Gemm("fc2.x", "linear", m, mlp, h, depth),
        Gemm("fc1.ctx", "linear", mt, h, mlp, full),
        Gemm("fc2.ctx", "linear", mt, mlp, h, full),
        Gemm("final.adaLN", "linear", batch, h, 2 * h),
        Gemm("final.linear", "linear", m, h, 2 * 2 * 16),
    ]
    return Workload("SD3-medium-1024", tuple(gemms),
                    source="stable-diffusion-3-medium MMDiT (Esser et al. 2024), 77+77 tokens")


#: The paper's Fig. 11 workloads, in its order, by name.
WORKLOADS = {
    "DiT-XL/2-256": lambda: dit_xl_2(256),
    "DiT-XL/2-512": lambda: dit_xl_2(512),
    "SD3-medium-1024": sd3_medium_1024,
    "PixArt-Sigma-1024": pixart_sigma_1024,
}


def workload(name: str) -> Workload:
    """The workload called ``name`` (a key of :data:`WORKLOADS`)."""
    if name not in WORKLOADS:
        raise ValueError(f"Unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    return WORKLOADS[name]()


def from_dit_config(cfg, batch: int = CFG_BATCH, name: str = "shipped DiT") -> Workload:
    """The accelerator GEMMs of a :class:`golden.dit.DiTConfig` model (qkv, Q K^T, P V, proj,
    fc1, fc2 per block: the layers :mod:`golden.quality` quantizes), for ``batch`` rows."""
    t, h, heads = cfg.num_tokens, cfg.hidden_size, cfg.num_heads
    m = batch * t
    gemms = [
        Gemm("qkv", "linear", m, h, 3 * h, cfg.depth),
        *_attention("", t, t, h // heads, heads, cfg.depth, batch),
        Gemm("proj", "linear", m, h, h, cfg.depth),
        Gemm("fc1", "linear", m, h, cfg.mlp_hidden, cfg.depth),
        Gemm("fc2", "linear", m, cfg.mlp_hidden, h, cfg.depth),
    ]
    return Workload(name, tuple(gemms), source="golden.dit config")
