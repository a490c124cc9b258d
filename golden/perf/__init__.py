"""Performance at the paper's scale: cycle and latency model, real GEMM shapes, a GPU roofline.

Modules
-------
accelerator  the accelerator's cycle and latency model built on the array's exact cycle formula
workloads    the GEMM shapes of DiT-XL/2, SD3-medium and PixArt-Sigma
gpu          the RTX 3090 roofline the speedups are measured against
"""
