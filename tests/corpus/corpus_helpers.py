"""Helpers of the converter tests: the shared datasets (skipped when absent),
converting, and reading the DocBins back."""
import os
from itertools import islice
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from spacy.tokens import Doc, DocBin

import spacy_mlre  # noqa: F401  (Doc extensions)
from spacy_mlre.corpus import get_converter
from spacy_mlre.corpus.converter import convert, msgpack_registries_cached
from spacy_mlre.corpus.sources import find_sources
from spacy_mlre.corpus.stats import SplitStats
from spacy_mlre.corpus.text import shared_vocab

ROOT = Path(__file__).resolve().parents[2]
DATASETS = Path(os.environ.get("MLRE_DATASETS", ROOT.parent / "shared" / "datasets"))

Results = Dict[str, Dict[str, SplitStats]]


def dataset_path(*parts: str) -> Path:
    """A path under the shared datasets, or skip the test when it is absent."""
    path = DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"dataset not available: {path}")
    return path


def run(
    fmt: str, input_path: Path, out: Path, lang: Optional[str] = None, split: Optional[str] = None,
    skip_invalid: bool = False, **options: Any,
) -> Results:
    conv = get_converter(fmt)
    sources = find_sources(conv, input_path, lang, split, options)
    return convert(conv, sources, out, shared_vocab(), skip_invalid)


def load_docs(path: Path, limit: Optional[int] = None) -> List[Doc]:
    """The docs of a DocBin (the first `limit` ones)."""
    with msgpack_registries_cached():
        return list(islice(DocBin().from_disk(path).get_docs(shared_vocab()), limit))


def triples(doc: Doc) -> List[Tuple[str, str, str]]:
    """(head text, label, tail text) of the doc's relations."""
    return [(r.head.text, r.label, r.tail.text) for r in doc._.relations]
