"""Converters from the field's data formats to DocBin, and spaCy corpus readers.

One module per source format (crossre, semeval for SemEval-2010 / KBP37 / RELX,
casrel, smiler, jsonl), each parsing its records into a `record.Record`; the
shared parts are the converter interface and driver (`converter`), file and
split discovery (`sources`), Record -> Doc rules (`build`), the counts
(`stats`) and the text helpers (`text`); `reader` reads the DocBins back for
training. `python -m spacy_mlre convert FORMAT INPUT OUTPUT_DIR` is the command
line; docs/data-formats.md documents every rule.
"""
from typing import Dict, Type

from .converter import Converter

FORMATS = ("crossre", "semeval2010", "kbp37", "casrel", "smiler", "jsonl")


def get_converter(name: str) -> Converter:
    """The converter of a format name (imported on demand)."""
    from .casrel import CasRelConverter
    from .crossre import CrossREConverter
    from .jsonl import JsonlConverter
    from .semeval import KBP37Converter, SemEvalConverter
    from .smiler import SMiLERConverter

    classes: Dict[str, Type[Converter]] = {
        "crossre": CrossREConverter,
        "semeval2010": SemEvalConverter,
        "kbp37": KBP37Converter,
        "casrel": CasRelConverter,
        "smiler": SMiLERConverter,
        "jsonl": JsonlConverter,
    }
    if name not in classes:
        raise ValueError(f"Unknown format {name!r}; choose one of {', '.join(FORMATS)}.")
    return classes[name]()
