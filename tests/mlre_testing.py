"""Helpers shared by the test modules. They live here, not in conftest.py,
because test folders have conftest files of their own and ``from conftest
import`` would pick whichever one pytest put on sys.path first."""
import os
from pathlib import Path

from spacy_mlre import Relation

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("MLRE_DATASETS", ROOT.parent / "shared" / "datasets"))


def make_doc(nlp, text, ents, rels, lang=None):
    """A doc from character-offset entities (start, end, label) and relations
    given as (head entity index, tail entity index, label)."""
    doc = nlp.make_doc(text)
    spans = [doc.char_span(a, b, label=label) for a, b, label in ents]
    assert all(span is not None for span in spans), ents
    doc.ents = spans
    doc._.relations = [Relation(spans[h], spans[t], label) for h, t, label in rels]
    if lang:
        doc._.lang = lang
    return doc
