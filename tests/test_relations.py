import pickle

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span

from spacy_mlre import Relation
from spacy_mlre.relations import RELATIONS_KEY, relation_keys

from mlre_testing import make_doc


def _summary(doc):
    return [(r.head.text, r.head.label_, r.label, r.tail.text, r.tail.label_, r.score, r.bag_key) for r in doc._.relations]


def test_relations_are_plain_data_in_user_data(gold_docs):
    doc = gold_docs[0]
    rows = doc.user_data[RELATIONS_KEY]
    assert all(isinstance(v, (int, str, float, type(None))) for row in rows for v in row)
    # deterministic order: head, tail, label
    assert relation_keys(doc) == [(0, 1, 3, 4, "member_of"), (0, 1, 3, 4, "works_for"), (3, 4, 5, 6, "located_in")]
    rel = doc._.relations[0]
    assert (rel.head.text, rel.head.label_, rel.tail.label_) == ("Alice", "PER", "ORG")
    assert isinstance(rel.score, float)


def test_docbin_round_trip(nlp, gold_docs):
    data = DocBin(store_user_data=True, docs=gold_docs).to_bytes()
    docs = list(DocBin().from_bytes(data).get_docs(nlp.vocab))
    assert [_summary(d) for d in docs] == [_summary(d) for d in gold_docs]
    assert [d._.lang for d in docs] == ["en", "en", "de", "en"]


def test_to_bytes_and_pickle_round_trip(nlp, gold_docs):
    doc = gold_docs[2]
    doc._.relations = [Relation(doc.ents[0], doc.ents[1], "works_for", 0.25, "bag-7")]
    restored = Doc(nlp.vocab).from_bytes(doc.to_bytes())
    assert _summary(restored) == _summary(doc) == [("Dieter", "PER", "works_for", "Siemens", "ORG", 0.25, "bag-7")]
    assert restored._.lang == "de"
    unpickled = pickle.loads(pickle.dumps(doc))
    assert _summary(unpickled) == _summary(doc)
    assert unpickled._.lang == "de"


@Language.component("_test_fixed_relations")
def _fixed_relations(doc):
    if len(doc.ents) >= 2:
        doc._.relations = [Relation(doc.ents[0], doc.ents[1], "rel", 0.5)]
    doc._.lang = "pl"
    return doc


@Language.component("_test_ents")
def _set_ents(doc):
    doc.ents = [Span(doc, 0, 1, "A"), Span(doc, 2, 3, "B")]
    return doc


def test_n_process_2_round_trip():
    nlp = spacy.blank("xx")
    nlp.add_pipe("_test_ents")
    nlp.add_pipe("_test_fixed_relations")
    texts = [f"x{i} and y{i} ." for i in range(8)]
    docs = list(nlp.pipe(texts, n_process=2, batch_size=2))
    assert [_summary(d) for d in docs] == [[(f"x{i}", "A", "rel", f"y{i}", "B", 0.5, None)] for i in range(8)]
    assert all(d._.lang == "pl" for d in docs)


def test_setter_accepts_tuples_and_validates(nlp):
    doc = make_doc(nlp, "Alice met Bob .", [(0, 5, "PER"), (10, 13, "PER")], [])
    doc._.relations = [(doc.ents[0], doc.ents[1], "met")]
    assert _summary(doc) == [("Alice", "PER", "met", "Bob", "PER", 1.0, None)]
    other = nlp.make_doc("Alice met Bob .")
    with pytest.raises(ValueError, match="belongs to another doc"):
        doc._.relations = [(doc.ents[0], other[2:3], "met")]
    with pytest.raises(ValueError, match="Duplicate relation 'met' from 'Alice'"):
        doc._.relations = [(doc.ents[0], doc.ents[1], "met"), (doc.ents[0], doc.ents[1], "met")]
    with pytest.raises(ValueError, match="non-empty string"):
        doc._.relations = [(doc.ents[0], doc.ents[1], "")]


def test_language_fallbacks():
    nlp = spacy.blank("xx")
    doc = nlp("Hallo Welt")
    assert doc._.lang == "xx"  # the pipeline's language
    if not Doc.has_extension("language"):
        Doc.set_extension("language", default=None)
    doc._.language = {"language": "de", "score": 0.99}  # spacy-langdetect style
    assert doc._.lang == "de"
    doc._.language = "nl"  # spacy_fastlang style
    assert doc._.lang == "nl"
    doc._.lang = "pt-BR"  # explicit wins, normalised to ISO 639-1
    assert doc._.lang == "pt"
    doc._.language = None
    doc._.lang = None
    assert doc._.lang == "xx"
