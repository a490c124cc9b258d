"""Simulation side of the MixDiT generator: cocotb testbenches, runners, the fast layer harness
and the ``mixdit`` command line."""
