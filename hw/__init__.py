"""Amaranth HDL description of the MixDiT accelerator (spec §2, §3, §5)."""
