"""Amaranth HDL description of the MixDiT accelerator (DESIGN §2, §3, §5)."""
