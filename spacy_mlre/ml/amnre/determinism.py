"""Bit-reproducible training of torch models on CPU.

With more than one thread, some of torch's CPU kernels (the backward of
advanced indexing, oneDNN convolutions) sum in an order that depends on the
memory layout, which differs between processes even with the same seed, so
two `spacy train` runs of the same config drifted apart. AMNRE's training
amplifies such differences into different results (bag AUC 1.59 vs 1.20 in
two runs), so its updates run with torch's deterministic algorithms.
"""
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def deterministic_torch(enabled: bool = True) -> Iterator[None]:
    """Turn on torch's deterministic algorithms inside the block and restore
    the caller's setting after it. Ops without a deterministic version warn
    instead of failing (warn_only), so this never stops a run."""
    import torch

    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)
