"""Matplotlib for the package's plots (evaluate, benchmark, crosslingual, the
paper metrics).

Plots are extras: matplotlib is not a dependency, so every caller asks
`pyplot()` and skips its plot on None instead of failing. The backend is
always Agg: the plots are written to files, on servers and in tests, never
shown.
"""
from types import ModuleType
from typing import Optional


def pyplot() -> Optional[ModuleType]:
    """`matplotlib.pyplot` on the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt
