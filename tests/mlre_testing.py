"""Helpers shared by the test modules. They live here, not in conftest.py,
because test folders have conftest files of their own and ``from conftest
import`` would pick whichever one pytest put on sys.path first."""
import os
from pathlib import Path

import numpy

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


def numeric_grad(f, X, eps=1e-5):
    """Central-difference gradient of the scalar function f at X (float64)."""
    X = X.astype("float64").copy()
    grad = numpy.zeros_like(X)
    for idx in numpy.ndindex(*X.shape):
        old = X[idx]
        X[idx] = old + eps
        up = f(X)
        X[idx] = old - eps
        down = f(X)
        X[idx] = old
        grad[idx] = (up - down) / (2 * eps)
    return grad


# Run with `python -c LOAD_SCRIPT PIPELINE_DIR`: loads a trained pipeline in a
# process that never imported spacy_mlre and prints its relations as JSON.
LOAD_SCRIPT = """
import json, sys
import spacy
from spacy.tokens import Span
assert "spacy_mlre" not in sys.modules
nlp = spacy.load(sys.argv[1])
doc = nlp.make_doc("Zofia works for Acme .")
doc.ents = [Span(doc, 0, 1, "PER"), Span(doc, 3, 4, "ORG")]
doc = nlp(doc)
print(json.dumps([[r.head.text, r.label, r.tail.text] for r in doc._.relations]))
"""
