"""Bit-exact NumPy golden model of the MixDiT accelerator (DESIGN §1, §2, §4).

Modules
-------
formats   MX format parameters and the packed group word layout (DESIGN §1.1, §1.2)
fp32      FP32 accumulation with flush-to-zero and canonical NaN (DESIGN §1.3)
mx        quantization, dequantization, packing and ``$readmemh`` images (DESIGN §1.1, §1.2)
gemm      the PE's group dot product and the MX GEMM (DESIGN §2.1)
mixdit    the MixDiT mixed-precision scheme: channel reordering, p1 and p2 (DESIGN §4)
baselines INT-n and FP4 quantizers for quality comparisons (not bit-exact hardware)
metrics   error against FP32 references
"""
