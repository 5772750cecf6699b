import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import spacy
from spacy.tokens import Doc, Span

import spacy_mlre  # noqa: F401  (registers the Doc extensions)
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


@pytest.fixture
def nlp():
    return spacy.blank("xx")


@pytest.fixture
def gold_docs(nlp):
    """Several relations, two labels on one pair, both directions of a pair, a
    doc without entities: the cases the pipe must learn exactly."""
    return [
        make_doc(nlp, "Alice works for Acme in Paris .", [(0, 5, "PER"), (16, 20, "ORG"), (24, 29, "LOC")],
                 [(0, 1, "works_for"), (0, 1, "member_of"), (1, 2, "located_in")], "en"),
        make_doc(nlp, "Bob and Carol are siblings .", [(0, 3, "PER"), (8, 13, "PER")],
                 [(0, 1, "sibling"), (1, 0, "sibling")], "en"),
        make_doc(nlp, "Dieter arbeitet für Siemens in München .", [(0, 6, "PER"), (20, 27, "ORG"), (31, 38, "LOC")],
                 [(0, 1, "works_for"), (1, 2, "located_in")], "de"),
        make_doc(nlp, "Nothing here .", [], [], "en"),
    ]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    pytest.importorskip("spacy_transformers")
    from tiny_bert import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
