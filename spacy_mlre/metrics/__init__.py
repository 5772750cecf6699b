"""Paper-specific metrics for the evaluate CLI.

A metric takes the evaluated examples (predictions on `eg.predicted`, gold on
`eg.reference`) and returns a flat-ish dict that is JSON-serialisable. Each is
registered under `spacy_mlre.metrics.<name>.v1` in spaCy's `misc` registry, so
a module of its own adds one without touching the CLI:

    @registry.misc("spacy_mlre.metrics.semeval.v1")
    def make_semeval_metric() -> Metric: ...
"""
from typing import Any, Callable, Dict, List

from spacy.training import Example
from spacy.util import registry

Metric = Callable[[List[Example]], Dict[str, Any]]

# modules that register metrics; imported lazily by get_metric
_MODULES = ("semeval", "overlap", "joint", "bags")


def get_metric(name: str) -> Metric:
    """The metric registered as `spacy_mlre.metrics.<name>.v1`."""
    import importlib

    for module in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{module}":
                raise
    key = f"spacy_mlre.metrics.{name}.v1"
    if key not in registry.misc:
        known = sorted(k.split(".")[2] for k in registry.misc.get_all() if k.startswith("spacy_mlre.metrics."))
        raise ValueError(f"Unknown metric {name!r}. Available: {', '.join(known) or 'none'}.")
    return registry.misc.get(key)()
