"""Bit-exact NumPy golden model of the MixDiT accelerator (spec §1, §2, §4).

Modules
-------
formats   MX format parameters and the packed group word layout (spec §1.1, §1.2)
fp32      FP32 accumulation with flush-to-zero and canonical NaN (spec §1.3)
mx        quantization, dequantization, packing and ``$readmemh`` images (spec §1.1, §1.2)
gemm      the PE's group dot product and the MX GEMM (spec §2.1)
mixdit    the MixDiT mixed-precision scheme: channel reordering, p1 and p2 (spec §4)

Beside it, not bit-exact hardware: ``golden.dit`` (the DiT, its training and activations),
``golden.quality`` (sampling under quantization, error metrics, baseline quantizers) and
``golden.perf`` (the cycle and latency model at scale, GEMM shapes, the GPU roofline).
"""
