"""SHAC, SHAC+ and SHAC++ for TorchRL and BenchMARL."""

__version__ = "0.1.0"
