"""Roofline model of the RTX 3090, the paper's speedup baseline (paper §IV, §V, Fig. 11).

Each GEMM takes ``max(2 * MACs / (peak * compute_eff), bytes / (bandwidth * memory_eff))``; a
step is the sum over its GEMMs (the same GEMM list as the accelerator, :mod:`golden.perf.workloads`).
Host-side operations (softmax, layer norm, GELU, residuals) are left out on both sides, so the
speedups are GEMM-only: the accelerator's offload changes only GEMMs (spec §4).

Published figures (NVIDIA Ampere GA102 GPU architecture whitepaper, appendix A, GeForce RTX 3090;
quoted from the project engineers' knowledge of it, dense figures, sparsity doubles them):

- FP16 tensor with FP16 accumulate 142 TFLOPS, **with FP32 accumulate 71 TFLOPS**; TF32 35.6;
- INT8 tensor 284 TOPS;
- GDDR6X 936 GB/s.

The FP16 baseline uses 71 TFLOPS: PyTorch's half-precision GEMMs (cuBLAS ``GemmEx`` with
``CUBLAS_COMPUTE_32F``) accumulate in FP32, and GeForce Ampere runs that at half the FP16-accumulate
rate. The INT8 baseline (ViDiT-Q W8A8, paper §IV) uses 284 TOPS for linear layers; its attention
stays in FP16, as ViDiT-Q's W8A8 kernels quantize linear layers.

Efficiencies are assumptions, stated and adjustable (``mixdit perf --gpu-eff``): 70% of the tensor
peak for large GEMMs and 80% of the memory bandwidth are typical of cuBLAS on Ampere. The paper's
own measurement (§II-A: SD3 takes 18.75 s for one 1024 x 1024 image on the RTX 3090) is a check:
:func:`implied_efficiency` gives the compute efficiency that this model needs to match it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .workloads import Gemm, Workload

__all__ = ["GpuConfig", "RTX_3090", "gemm_time", "step_time", "image_time",
           "implied_efficiency", "SD3_MEASURED_S"]

#: Paper §II-A: Stable Diffusion 3, one 1024 x 1024 image on an RTX 3090.
SD3_MEASURED_S = 18.75


@dataclass(frozen=True)
class GpuConfig:
    """A GPU as peak throughputs, a bandwidth and the fractions of them that GEMMs reach.

    Attributes
    ----------
    name : str
    fp16_flops : float
        Dense FP16 tensor throughput with FP32 accumulate, FLOP/s.
    int8_ops : float
        Dense INT8 tensor throughput, OP/s.
    dram_bytes_per_s : float
        Memory bandwidth.
    compute_eff, memory_eff : float
        Fractions of the peaks a GEMM reaches (assumptions; see the module docstring).
    """

    name: str = "RTX 3090"
    fp16_flops: float = 71e12
    int8_ops: float = 284e12
    dram_bytes_per_s: float = 936e9
    compute_eff: float = 0.70
    memory_eff: float = 0.80

    def __post_init__(self) -> None:
        for what in ("compute_eff", "memory_eff"):
            v = getattr(self, what)
            if not 0.0 < v <= 1.0:
                raise ValueError(f"{what} must lie in (0, 1], not {v!r}")


RTX_3090 = GpuConfig()

_PRECISIONS = ("fp16", "int8")


def _gemm_parts(g: Gemm, gpu: GpuConfig, precision: str) -> tuple[float, float]:
    """Seconds of ``g`` at 100% of the compute peak, and its memory time at ``memory_eff``."""
    if precision not in _PRECISIONS:
        raise ValueError(f"GPU precision must be one of {_PRECISIONS}, not {precision!r}")
    int8 = precision == "int8" and g.kind == "linear"
    peak = gpu.int8_ops if int8 else gpu.fp16_flops
    op_bytes = 1 if int8 else 2
    n = g.instances
    b_elems = g.k * g.n * (n if g.kind == "attention" else g.count)
    elems_in = (g.m * g.k * n if g.a_in_dram else 0) + b_elems
    elems_out = g.m * g.n * n if g.out_in_dram else 0
    bytes_ = elems_in * op_bytes + elems_out * 2
    return 2 * g.macs / peak, bytes_ / (gpu.dram_bytes_per_s * gpu.memory_eff)


def gemm_time(g: Gemm, gpu: GpuConfig = RTX_3090, precision: str = "fp16") -> float:
    """Seconds for all instances of ``g`` on ``gpu`` in ``"fp16"`` or ``"int8"`` (W8A8 linears).

    Bytes: A (when it is in DRAM), B and the result (when written), 2 bytes per element in FP16,
    1 per operand element and 2 per result element in INT8 (the output is dequantized to FP16).
    """
    compute, memory = _gemm_parts(g, gpu, precision)
    return max(compute / gpu.compute_eff, memory)


def step_time(w: Workload, gpu: GpuConfig = RTX_3090, precision: str = "fp16") -> float:
    """Seconds of one model evaluation (one sampler step with both guidance rows)."""
    return sum(gemm_time(g, gpu, precision) for g in w.gemms)


def image_time(w: Workload, gpu: GpuConfig = RTX_3090, precision: str = "fp16") -> float:
    """Seconds of one image: ``w.steps`` model evaluations."""
    return step_time(w, gpu, precision) * w.steps


def implied_efficiency(w: Workload, target_s: float, gpu: GpuConfig = RTX_3090,
                       precision: str = "fp16") -> float:
    """Compute efficiency at which :func:`image_time` would equal ``target_s`` (bisection).

    Values above 1 (capped at 4) say that even the peak is slower than ``target_s`` needs; the
    floor 1e-4 says that the memory bound alone exceeds it.
    """
    parts = [_gemm_parts(g, gpu, precision) for g in w.gemms]

    def t(eff: float) -> float:
        return w.steps * sum(max(c / eff, m) for c, m in parts)

    lo, hi = 1e-4, 4.0
    if t(hi) > target_s:
        return hi
    if t(lo) <= target_s:
        return lo
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t(mid) > target_s else (lo, mid)
    return hi
