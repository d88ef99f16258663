"""``toymodels-bench`` (``sweeps.bench.cli``) and the PyTorch reference of the TMS notebook it is
timed against (``sweeps.bench.reference_torch``, the only module that imports torch)."""

from sweeps.bench.cli import main

__all__ = ["main"]
