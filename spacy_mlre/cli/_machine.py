"""The machine a figure was measured on, stored next to the figure (the
benchmark and results commands), since speeds mean little without it."""
import os
import platform
from typing import Any, Dict, Optional


def _threads() -> Optional[int]:
    """OMP_NUM_THREADS as a number, None when unset or not a plain count."""
    try:
        return int(os.environ.get("OMP_NUM_THREADS", "")) or None
    except ValueError:
        return None


def machine_info() -> Dict[str, Any]:
    """Cores, threads, processor, GPU and the versions of the libraries that
    set the speed. The torch fields are None without torch, `gpu` also
    without CUDA."""
    import spacy
    import thinc

    info: Dict[str, Any] = {
        "cores": os.cpu_count(),
        "threads": _threads(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "spacy": spacy.__version__,
        "thinc": thinc.__version__,
        "torch": None,
        "torch_threads": None,
        "gpu": None,
    }
    try:
        import torch
    except ImportError:
        return info
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info
