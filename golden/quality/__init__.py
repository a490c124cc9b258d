"""Image quality of the DiT under quantization: not bit-exact hardware, accuracy only.

Modules
-------
sampling   sampling the DiT with every GEMM quantized, the scheme registry, calibration
fidelity   PSNR, SSIM, FD vs FP32 and vs real, label agreement of samples against FP32 twins
metrics    error of a quantized result against its FP32 reference
baselines  the INT-n and FP4 quantizers the paper compares MixDiT with
ocp_mx     the OCP MX formats of GPUs (MXFP8/6/4, MXINT8), accuracy-only baselines
methods    the published methods as schemes: vidit_q, q_dit, hq_dit
hadamard, smoothing, uniform, minifloat, clipping, operands
           their building blocks: rotation, SmoothQuant scales, dynamic INT, FP4 grids,
           clipping search, calibration operands
"""
